package io.stepup.keycloak;

import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Clock;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The hand-off to the bridge in two halves, free of Keycloak types so it can be tested against a fake bridge:
 * {@link #begin} pushes the authorization request (RFC 9126) and gives the browser redirect;
 * {@link #complete} checks the callback (state, RFC 9207 {@code iss}, error), redeems the code and verifies the
 * id_token. What {@code begin} returns must be kept (Keycloak auth notes) and handed to {@code complete}.
 */
public class Handoff {

    /** The OAuth error the bridge sends when the user cancelled or is locked out. */
    public static final String ACCESS_DENIED = "access_denied";

    private final BridgeClient bridge;
    private final IdTokenVerifier verifier;
    private final Clock clock;

    public Handoff(BridgeClient bridge, IdTokenVerifier verifier, Clock clock) {
        this.bridge = bridge;
        this.verifier = verifier;
        this.clock = clock;
    }

    /** The user being stepped up, as Keycloak knows them. */
    public static final class User {
        final String id;
        final String username;
        final String locale;
        final String email;

        /**
         * @param id       the stable Keycloak user id, sent as {@code login_hint}; the id_token's {@code sub}
         * @param username display name for the bridge ({@code preferred_username}); may be {@code null}
         * @param locale   BCP 47 tag for {@code ui_locales}; may be {@code null}
         * @param email    verified address for the bridge's security notices ({@code email}); may be {@code null}
         */
        public User(String id, String username, String locale, String email) {
            this.id = id;
            this.username = username;
            this.locale = locale;
            this.email = email;
        }

        public User(String id, String username, String locale) {
            this(id, username, locale, null);
        }
    }

    /** Per-login secrets kept between the two passes, and where to send the browser. */
    public static final class Pending {
        private final String state;
        private final String nonce;
        private final String codeVerifier;
        private final String redirectUri;
        private final Long pushedAt;
        private final String binding;
        private final URI browserRedirect;

        public Pending(String state, String nonce, String codeVerifier, String redirectUri, Long pushedAt,
                       String binding, URI browserRedirect) {
            this.state = state;
            this.nonce = nonce;
            this.codeVerifier = codeVerifier;
            this.redirectUri = redirectUri;
            this.pushedAt = pushedAt;
            this.binding = binding;
            this.browserRedirect = browserRedirect;
        }

        public String state() {
            return state;
        }

        public String nonce() {
            return nonce;
        }

        public String codeVerifier() {
            return codeVerifier;
        }

        /** Exactly the string sent in the pushed request; the token request repeats it. */
        public String redirectUri() {
            return redirectUri;
        }

        /** When the pushed request was sent, epoch seconds: the id_token's {@code auth_time} cannot be earlier. */
        public Long pushedAt() {
            return pushedAt;
        }

        /** {@link StepupConfig#binding()} of the configuration that pushed the request. */
        public String binding() {
            return binding;
        }

        /** {@code {authorization_endpoint}?client_id=…&request_uri=…}; {@code null} once restored from notes. */
        public URI browserRedirect() {
            return browserRedirect;
        }
    }

    /** The bridge's answer on the browser channel: the query of the request to {@code redirect_uri}. */
    public static final class Callback {
        final String state;
        final String iss;
        final String code;
        final String error;

        public Callback(String state, String iss, String code, String error) {
            this.state = state;
            this.iss = iss;
            this.code = code;
            this.error = error;
        }
    }

    /** First pass: fresh state, nonce and PKCE verifier, the pushed request, and the browser redirect. */
    public Pending begin(StepupConfig config, User user, String redirectUri)
            throws BridgeUnavailableException, HandoffException {
        Discovery discovery = bridge.discovery(config);
        String state = Pkce.randomValue();
        String nonce = Pkce.randomValue();
        String verifier = Pkce.randomValue();
        Map<String, String> params = parParameters(config, user, redirectUri, state, nonce, verifier);
        long pushedAt = clock.instant().getEpochSecond();
        BridgeClient.PushedRequest pushed = bridge.pushAuthorizationRequest(config, discovery, params);
        URI browser = authorizationRedirect(discovery.authorizationEndpoint(), config.clientId(), pushed.requestUri());
        return new Pending(state, nonce, verifier, redirectUri, pushedAt, config.binding(), browser);
    }

    /** The pushed authorization request's form fields, in a stable order. */
    static Map<String, String> parParameters(StepupConfig config, User user, String redirectUri,
                                             String state, String nonce, String verifier) {
        Map<String, String> params = new LinkedHashMap<>();
        params.put("response_type", "code");
        params.put("scope", "openid");
        params.put("client_id", config.clientId());
        params.put("redirect_uri", redirectUri);
        params.put("state", state);
        params.put("nonce", nonce);
        params.put("code_challenge", Pkce.challenge(verifier));
        params.put("code_challenge_method", Pkce.METHOD);
        params.put("login_hint", user.id);
        putIfPresent(params, "preferred_username", user.username);
        putIfPresent(params, "ui_locales", user.locale);
        putIfPresent(params, "email", user.email);
        putIfPresent(params, "acr_values", config.acrValues());
        if (!config.allowEnrollment()) {
            params.put("stepup_allow_enrollment", "false");
        }
        return params;
    }

    private static void putIfPresent(Map<String, String> params, String name, String value) {
        if (value != null && !value.isBlank()) {
            params.put(name, value);
        }
    }

    static URI authorizationRedirect(URI authorizationEndpoint, String clientId, String requestUri) {
        String base = authorizationEndpoint.toString();
        String separator = authorizationEndpoint.getRawQuery() == null ? "?" : "&";
        return URI.create(base + separator + "client_id=" + BridgeClient.formEncode(clientId)
                + "&request_uri=" + BridgeClient.formEncode(requestUri));
    }

    /**
     * Second pass: checks the callback against {@code pending}, redeems the code, verifies the id_token.
     *
     * @param userId the Keycloak user id; the id_token's {@code sub} must equal it
     */
    public Assertion complete(StepupConfig config, Pending pending, Callback callback, String userId)
            throws BridgeUnavailableException, HandoffException {
        if (!constantTimeEquals(pending.state(), callback.state)) {
            throw HandoffException.rejected("state does not match this login");
        }
        if (!config.binding().equals(pending.binding())) {
            throw HandoffException.rejected("the step's bridge, client id or acr values changed during this login");
        }
        Discovery discovery = bridge.discovery(config);
        if (callback.iss != null ? !discovery.issuer().equals(callback.iss) : discovery.issParameterSupported()) {
            throw HandoffException.rejected("authorization response iss is missing or not the bridge issuer");
        }
        if (callback.error != null) {
            if (ACCESS_DENIED.equals(callback.error)) {
                throw new HandoffException(HandoffException.Reason.DENIED, "bridge answered error=access_denied");
            }
            throw HandoffException.rejected("bridge answered error=" + printable(callback.error));
        }
        if (callback.code == null || callback.code.isEmpty()) {
            throw HandoffException.rejected("authorization response has no code");
        }
        if (pending.pushedAt() == null) {
            throw HandoffException.rejected("this login has no time of its pushed request");
        }
        String idToken = bridge.redeemCode(config, discovery, callback.code, pending.redirectUri(),
                pending.codeVerifier());
        IdTokenVerifier.Expected expected = new IdTokenVerifier.Expected(
                discovery.issuer(), config.clientId(), pending.nonce(), userId, config.acrValues(), pending.pushedAt());
        return verifier.verify(idToken, expected,
                refresh -> bridge.keys(config, discovery.jwksUri(), refresh));
    }

    private static boolean constantTimeEquals(String expected, String actual) {
        if (expected == null || actual == null) {
            return false;
        }
        return MessageDigest.isEqual(expected.getBytes(StandardCharsets.UTF_8), actual.getBytes(StandardCharsets.UTF_8));
    }

    /** An error code from the browser or the bridge: keep it short and to printable ASCII before logging. */
    static String printable(String error) {
        String cleaned = error.replaceAll("[^\\x20-\\x7E]", "?");
        return cleaned.length() > 64 ? cleaned.substring(0, 64) + "…" : cleaned;
    }
}
