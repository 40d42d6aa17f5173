package io.stepup.keycloak;

/**
 * The hand-off did not produce a valid assertion. {@link Reason#DENIED} is the bridge's
 * {@code error=access_denied} (the user cancelled or is locked out); {@link Reason#REJECTED} is every other failed
 * check (state, {@code iss}, an error answer, the token response, the id_token).
 * Messages are safe to log: they never carry codes, tokens or secrets.
 */
public class HandoffException extends Exception {

    private static final long serialVersionUID = 1L;

    /** Why the hand-off ended without an assertion. */
    public enum Reason {
        /** The bridge answered {@code error=access_denied}: cancelled by the user, or locked out. */
        DENIED,
        /** A protocol check failed. */
        REJECTED
    }

    private final Reason reason;

    public HandoffException(Reason reason, String message) {
        super(message);
        this.reason = reason;
    }

    public HandoffException(Reason reason, String message, Throwable cause) {
        super(message, cause);
        this.reason = reason;
    }

    /** A failed protocol check. */
    public static HandoffException rejected(String message) {
        return new HandoffException(Reason.REJECTED, message);
    }

    public Reason reason() {
        return reason;
    }
}
