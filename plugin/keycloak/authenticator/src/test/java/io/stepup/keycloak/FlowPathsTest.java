package io.stepup.keycloak;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.keycloak.services.resources.LoginActionsService;

/** The step runs where a browser comes back to a login-actions path, and nowhere else. */
class FlowPathsTest {

    @Test
    void browserFlowsAreSupported() {
        for (String path : new String[] {LoginActionsService.AUTHENTICATE_PATH,
                LoginActionsService.RESET_CREDENTIALS_PATH, LoginActionsService.REGISTRATION_PATH,
                LoginActionsService.FIRST_BROKER_LOGIN_PATH, LoginActionsService.POST_BROKER_LOGIN_PATH}) {
            assertTrue(FlowPaths.supported(path), path);
        }
    }

    @Test
    void flowsWithoutABrowserAreNot() {
        assertFalse(FlowPaths.supported("token"));  // direct grant (ResourceOwnerPasswordCredentialsGrantType)
        assertFalse(FlowPaths.supported(null));
        String message = FlowPaths.unsupportedMessage("token", "direct grant");
        assertTrue(message.contains("'direct grant'") && message.contains("refused"), message);
    }
}
