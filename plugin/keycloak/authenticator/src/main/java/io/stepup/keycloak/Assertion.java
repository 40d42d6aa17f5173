package io.stepup.keycloak;

import java.util.List;

/**
 * What a verified id_token from the bridge asserts about the second factor (OpenID Connect Core §2):
 * {@code acr}, {@code amr} (RFC 8176 values, e.g. {@code otp}) and {@code auth_time}.
 */
public final class Assertion {

    private final String subject;
    private final String acr;
    private final List<String> amr;
    private final Long authTime;

    Assertion(String subject, String acr, List<String> amr, Long authTime) {
        this.subject = subject;
        this.acr = acr;
        this.amr = List.copyOf(amr);
        this.authTime = authTime;
    }

    public String subject() {
        return subject;
    }

    /** @return the {@code acr} claim, or {@code null} when absent */
    public String acr() {
        return acr;
    }

    /** @return the {@code amr} values in token order; empty when absent */
    public List<String> amr() {
        return amr;
    }

    /** @return {@code amr} joined with commas (the user-session note format), or {@code null} when absent */
    public String amrJoined() {
        return amr.isEmpty() ? null : String.join(",", amr);
    }

    /** @return {@code auth_time} in seconds since the epoch, or {@code null} when absent */
    public Long authTime() {
        return authTime;
    }
}
