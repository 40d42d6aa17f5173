package io.stepup.keycloak;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.util.Base64;

/**
 * PKCE (RFC 7636) with the S256 method, plus the random values the hand-off needs (state, nonce).
 */
public final class Pkce {

    /** The only method we send (RFC 7636 §4.2); {@code plain} is never used. */
    public static final String METHOD = "S256";

    private static final SecureRandom RANDOM = new SecureRandom();
    private static final Base64.Encoder B64URL = Base64.getUrlEncoder().withoutPadding();

    private Pkce() {
    }

    /**
     * A fresh high-entropy value: 32 random bytes, base64url without padding (43 characters).
     * Used for the code verifier (RFC 7636 §4.1: 43–128 unreserved characters), {@code state} and {@code nonce}.
     */
    public static String randomValue() {
        byte[] bytes = new byte[32];
        RANDOM.nextBytes(bytes);
        return B64URL.encodeToString(bytes);
    }

    /** {@code BASE64URL(SHA256(ASCII(verifier)))}, RFC 7636 §4.2. */
    public static String challenge(String verifier) {
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(verifier.getBytes(StandardCharsets.US_ASCII));
            return B64URL.encodeToString(digest);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is not available", e);
        }
    }
}
