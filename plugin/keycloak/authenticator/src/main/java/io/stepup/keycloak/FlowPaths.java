package io.stepup.keycloak;

import java.util.Set;

/**
 * Which Keycloak flows the step-up can run in. It sends the browser to the bridge and back to
 * {@code context.getRefreshUrl()}, so it needs a flow that a browser walks through a login-actions path:
 * the browser flow ({@code authenticate}), the password reset ({@code reset-credentials}), self-registration
 * ({@code registration}, after the form that creates the account) and the flows after an external identity
 * provider ({@code first-broker-login}, {@code post-broker-login}). The direct grant flow
 * ({@code token}) has no browser: there the step refuses the login, which is also how an administrator closes
 * the password grant of a realm.
 */
final class FlowPaths {

    /** Login-actions paths (LoginActionsService's *_PATH constants) whose callback the bridge must accept. */
    static final Set<String> SUPPORTED = Set.of("authenticate", "reset-credentials", "registration",
            "first-broker-login", "post-broker-login");

    private FlowPaths() {
    }

    static boolean supported(String flowPath) {
        return flowPath != null && SUPPORTED.contains(flowPath);
    }

    /** One log line naming the flow and what to do, for a flow the step cannot run in. */
    static String unsupportedMessage(String flowPath, String flowAlias) {
        return String.format("Stepup Bridge MFA cannot run in flow '%s' (path '%s'): it needs a browser flow "
                + "(browser, reset credentials, registration, first or post broker login); the login is refused. "
                + "Remove the step from that flow, or keep it there to refuse every login through it.",
                flowAlias, flowPath);
    }
}
