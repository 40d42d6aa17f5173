package io.stepup.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;
import org.keycloak.common.Version;

/**
 * The direct grant's refusal after a right password has the status of Keycloak's own answer to a wrong one, which
 * Keycloak 26.6 moved from 401 to 400: answered with the other, the grant tells a right password from a wrong one.
 * The end-to-end tests compare the two answers on a running Keycloak.
 */
class DirectGrantRefusalTest {

    @Test
    void keycloakUpTo26Point5AnswersAWrongPasswordWith401() {
        for (String version : new String[] {"26.5.6", "26.5.0", "26.0.0", "25.0.6", "24.0.5"}) {
            assertEquals(401, StepupAuthenticator.wrongPasswordStatus(version), version);
        }
    }

    @Test
    void keycloakFrom26Point6AnswersAWrongPasswordWith400() {
        for (String version : new String[] {"26.6.0", "26.7.3", "26.10.1", "27.0.0", "999.0.0-SNAPSHOT"}) {
            assertEquals(400, StepupAuthenticator.wrongPasswordStatus(version), version);
        }
    }

    @Test
    void aVersionThatCannotBeReadIsTakenAsANewerOne() {
        for (String version : new String[] {null, "", "26", "nightly", "26.x.1"}) {
            assertEquals(400, StepupAuthenticator.wrongPasswordStatus(version), String.valueOf(version));
        }
    }

    @Test
    void theRefusalFollowsTheKeycloakItRunsIn() {
        assertEquals(StepupAuthenticator.wrongPasswordStatus(Version.VERSION), StepupAuthenticator.WRONG_PASSWORD_STATUS);
    }
}
