package io.stepup.keycloak;

import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.URI;
import java.net.URISyntaxException;
import java.time.Duration;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * The authenticator's settings, typed and checked once, built from the execution's
 * {@code AuthenticatorConfigModel} map. Immutable; every option's default is defined here.
 */
public final class StepupConfig {

    /** Bridge issuer URL, e.g. {@code https://mfa.example.com}. Required. */
    public static final String ISSUER = "stepup.issuer";
    /** Client id Keycloak is registered under at the bridge. Required. */
    public static final String CLIENT_ID = "stepup.clientId";
    /** Client secret (client_secret_basic). Required. */
    public static final String CLIENT_SECRET = "stepup.clientSecret";
    /** Space-separated {@code acr_values} sent in the pushed request. Optional. */
    public static final String ACR_VALUES = "stepup.acrValues";
    /** {@code false} sends {@code stepup_allow_enrollment=false}. Default {@code true} (send nothing). */
    public static final String ALLOW_ENROLLMENT = "stepup.allowEnrollment";
    /** TCP connect timeout towards the bridge, milliseconds. Default 3000. */
    public static final String CONNECT_TIMEOUT_MS = "stepup.connectTimeoutMs";
    /** Timeout for a whole back-channel response, milliseconds. Default 5000. */
    public static final String READ_TIMEOUT_MS = "stepup.readTimeoutMs";
    /** {@code fail} (default, fail closed) or {@code skip} (the step counts as attempted). */
    public static final String ON_BRIDGE_UNAVAILABLE = "stepup.onBridgeUnavailable";
    /**
     * Not read here: {@code stepup keycloak install} keeps the bridge's keyed digest of the client secret in it, to
     * tell on a re-run whether a secret Keycloak shows only masked is the one the bridge holds.
     */
    public static final String SECRET_CHECK = "stepup.clientSecretCheck";

    static final int DEFAULT_CONNECT_TIMEOUT_MS = 3000;
    static final int DEFAULT_READ_TIMEOUT_MS = 5000;
    static final int MAX_TIMEOUT_MS = 60_000;
    /** 127.0.0.0/8 written as four decimal octets (no leading zeros), as Python's ipaddress reads them. */
    private static final Pattern LOOPBACK_IPV4 = Pattern.compile(
            "127(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}");

    /** What to do when the bridge cannot be reached over the back channel. */
    public enum OnUnavailable {
        /** Refuse the login (fail closed). */
        FAIL,
        /** Let the flow continue without the second factor ({@code context.attempted()}). */
        SKIP
    }

    private final String issuer;
    private final String clientId;
    private final String clientSecret;
    private final String acrValues;
    private final boolean allowEnrollment;
    private final Duration connectTimeout;
    private final Duration readTimeout;
    private final OnUnavailable onUnavailable;

    private StepupConfig(Map<String, String> map) {
        this.issuer = issuer(map.get(ISSUER));
        this.clientId = required(map, CLIENT_ID);
        this.clientSecret = required(map, CLIENT_SECRET);
        this.acrValues = optional(map.get(ACR_VALUES));
        this.allowEnrollment = bool(map, ALLOW_ENROLLMENT, true);
        this.connectTimeout = millis(map, CONNECT_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS);
        this.readTimeout = millis(map, READ_TIMEOUT_MS, DEFAULT_READ_TIMEOUT_MS);
        this.onUnavailable = onUnavailable(map.get(ON_BRIDGE_UNAVAILABLE));
    }

    /**
     * Builds and checks the configuration.
     *
     * @param map the execution's config map; {@code null} means "not configured"
     * @throws IllegalArgumentException naming the first bad or missing key
     */
    public static StepupConfig from(Map<String, String> map) {
        if (map == null) {
            throw new IllegalArgumentException("Stepup Bridge authenticator is not configured: set " + ISSUER
                    + ", " + CLIENT_ID + " and " + CLIENT_SECRET);
        }
        return new StepupConfig(map);
    }

    private static String issuer(String raw) {
        String value = optional(raw);
        if (value == null) {
            throw new IllegalArgumentException(ISSUER + " is required (the bridge's issuer URL)");
        }
        String shown = withoutUserInfo(value);
        URI uri;
        try {
            uri = new URI(value);
        } catch (URISyntaxException e) {
            throw new IllegalArgumentException(ISSUER + " is not a valid URL: " + shown);
        }
        if (uri.getRawUserInfo() != null) {
            // The bridge's issuer never holds one, so every login would fail, each logging
            // the configured issuer, password and all (as the Python client, refused first).
            throw new IllegalArgumentException(ISSUER + " must have no user name or password: " + shown);
        }
        if (uri.getHost() == null || uri.getRawQuery() != null || uri.getRawFragment() != null) {
            throw new IllegalArgumentException(ISSUER + " must be an absolute URL without query or fragment: " + shown);
        }
        if (!secureOrLoopback(uri)) {
            throw new IllegalArgumentException(
                    ISSUER + " must use https (http only for localhost, 127.0.0.0/8 or ::1): " + shown);
        }
        return value;
    }

    /** A URL as an error message may show it: a user name and password in it left out. */
    static String withoutUserInfo(String url) {
        return url.replaceFirst("^([^:/?#]*://)[^/?#]*@", "$1…@");
    }

    /** https, or plain http to this machine only (local testing). */
    static boolean secureOrLoopback(URI uri) {
        String scheme = uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT);
        return scheme.equals("https") || (scheme.equals("http") && loopback(uri));
    }

    /**
     * Whether the URL's host is this machine: localhost, 127.0.0.0/8 or ::1 (any spelling), as the Python client
     * judges it. Only address literals are parsed, so no name is ever looked up.
     */
    static boolean loopback(URI uri) {
        String host = uri.getHost() == null ? "" : uri.getHost().toLowerCase(Locale.ROOT);
        if (host.equals("localhost") || LOOPBACK_IPV4.matcher(host).matches()) {
            return true;
        }
        if (!host.startsWith("[") || !host.endsWith("]") || host.contains("%")) {
            return false;  // a zone (fe80::1%eth0) names an interface: never this machine's issuer
        }
        try {  // an IPv4-mapped address parses to an Inet4Address: not ::1, as in Python 3.11
            InetAddress address = InetAddress.getByName(host.substring(1, host.length() - 1));
            return address instanceof Inet6Address && address.isLoopbackAddress();
        } catch (java.net.UnknownHostException e) {
            return false;
        }
    }

    private static String required(Map<String, String> map, String key) {
        String value = optional(map.get(key));
        if (value == null) {
            throw new IllegalArgumentException(key + " is required");
        }
        return value;
    }

    private static String optional(String raw) {
        if (raw == null || raw.isBlank()) {
            return null;
        }
        return raw.trim();
    }

    private static boolean bool(Map<String, String> map, String key, boolean fallback) {
        String value = optional(map.get(key));
        if (value == null) {
            return fallback;
        }
        switch (value.toLowerCase(Locale.ROOT)) {
            case "true":
                return true;
            case "false":
                return false;
            default:
                throw new IllegalArgumentException(key + " must be true or false, not: " + value);
        }
    }

    private static Duration millis(Map<String, String> map, String key, int fallback) {
        String value = optional(map.get(key));
        if (value == null) {
            return Duration.ofMillis(fallback);
        }
        int ms;
        try {
            ms = Integer.parseInt(value);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(key + " must be a whole number of milliseconds, not: " + value);
        }
        if (ms <= 0 || ms > MAX_TIMEOUT_MS) {
            throw new IllegalArgumentException(key + " must be between 1 and " + MAX_TIMEOUT_MS + " ms, not: " + ms);
        }
        return Duration.ofMillis(ms);
    }

    private static OnUnavailable onUnavailable(String raw) {
        String value = optional(raw);
        if (value == null) {
            return OnUnavailable.FAIL;
        }
        switch (value.toLowerCase(Locale.ROOT)) {
            case "fail":
                return OnUnavailable.FAIL;
            case "skip":
                return OnUnavailable.SKIP;
            default:
                throw new IllegalArgumentException(ON_BRIDGE_UNAVAILABLE + " must be fail or skip, not: " + value);
        }
    }

    public String issuer() {
        return issuer;
    }

    public String clientId() {
        return clientId;
    }

    public String clientSecret() {
        return clientSecret;
    }

    /** @return the configured {@code acr_values}, or {@code null} when none */
    public String acrValues() {
        return acrValues;
    }

    /**
     * What a hand-off in progress is bound to: the bridge, this client at it and the levels asked for. A callback
     * checked under other values (the step's configuration edited, or another step's, mid-login) is refused before
     * its code goes anywhere: sent with this secret to another bridge than the one that issued it, it would be the
     * mix-up RFC 9207 guards against. The Python client keeps the same three in its pending hand-off.
     */
    public String binding() {
        return String.join("\n", issuer, clientId, acrValues == null ? "" : acrValues);
    }

    public boolean allowEnrollment() {
        return allowEnrollment;
    }

    public Duration connectTimeout() {
        return connectTimeout;
    }

    public Duration readTimeout() {
        return readTimeout;
    }

    public OnUnavailable onUnavailable() {
        return onUnavailable;
    }

    /** Never prints the secret. */
    @Override
    public String toString() {
        return "StepupConfig{issuer=" + issuer + ", clientId=" + clientId + ", acrValues=" + acrValues
                + ", allowEnrollment=" + allowEnrollment + ", connectTimeout=" + connectTimeout.toMillis()
                + "ms, readTimeout=" + readTimeout.toMillis() + "ms, onUnavailable=" + onUnavailable + "}";
    }
}
