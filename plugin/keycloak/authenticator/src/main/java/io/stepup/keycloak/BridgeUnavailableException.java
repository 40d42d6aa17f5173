package io.stepup.keycloak;

/**
 * The bridge could not be reached over the back channel: connection refused, timeout, or a 5xx answer.
 * Only this failure may be turned into {@code attempted()} by {@code stepup.onBridgeUnavailable=skip};
 * anything the bridge (or the browser) says is a {@link HandoffException}.
 * Messages are safe to log: they never carry codes, tokens or secrets.
 */
public class BridgeUnavailableException extends Exception {

    private static final long serialVersionUID = 1L;

    public BridgeUnavailableException(String message, Throwable cause) {
        super(message, cause);
    }

    public BridgeUnavailableException(String message) {
        super(message);
    }
}
