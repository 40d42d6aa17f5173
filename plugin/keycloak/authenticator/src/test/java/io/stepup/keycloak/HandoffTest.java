package io.stepup.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.ServerSocket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.Base64;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.keycloak.common.crypto.CryptoIntegration;

/**
 * Both passes of the hand-off against a fake bridge on 127.0.0.1: the pushed authorization request (RFC 9126),
 * the callback checks (state, RFC 9207 iss, error), the code redemption and the id_token check.
 */
class HandoffTest {

    static final long NOW = IdTokenVerifierTest.NOW;
    static final String USER_ID = IdTokenVerifierTest.USER_ID;
    static final String REDIRECT_URI = "http://127.0.0.1:8080/realms/demo/login-actions/authenticate"
            + "?client_id=account&tab_id=abc&client_data=eyJ9";
    static final TestKeys EC = TestKeys.es256("ec-1");

    private FakeBridge bridge;
    private Handoff handoff;
    private StepupConfig config;

    @BeforeAll
    static void installKeycloakCrypto() {
        CryptoIntegration.init(HandoffTest.class.getClassLoader());
    }

    @BeforeEach
    void startBridge() throws Exception {
        bridge = new FakeBridge();
        bridge.jwks = () -> TestKeys.jwksJson(EC);
        Clock clock = Clock.fixed(Instant.ofEpochSecond(NOW), ZoneOffset.UTC);
        handoff = new Handoff(new BridgeClient(clock), new IdTokenVerifier(clock));
        config = config(Map.of());
    }

    @AfterEach
    void stopBridge() {
        bridge.close();
    }

    private StepupConfig config(Map<String, String> extra) {
        Map<String, String> map = StepupConfigTest.minimal();
        map.put(StepupConfig.ISSUER, bridge.issuer());
        map.put(StepupConfig.CLIENT_ID, "keycloak idp");
        map.put(StepupConfig.CLIENT_SECRET, "s3cret:with+chars");
        map.putAll(extra);
        return StepupConfig.from(map);
    }

    private Handoff.Pending begin() throws Exception {
        return handoff.begin(config, new Handoff.User(USER_ID, "alice", "de-CH", "alice@example.org"),
                REDIRECT_URI);
    }

    /** The bridge's id_token for this login: right issuer, audience, nonce and subject. */
    private void bridgeIssuesTokenFor(Handoff.Pending pending) {
        Map<String, Object> claims = IdTokenVerifierTest.claims();
        claims.put("iss", bridge.issuer());
        claims.put("aud", config.clientId());
        claims.put("nonce", pending.nonce());
        bridge.idToken = () -> EC.sign(claims);
    }

    private Handoff.Callback codeCallback(Handoff.Pending pending) {
        return new Handoff.Callback(pending.state(), bridge.issuer(), "the-code", null);
    }

    @Test
    void pushedRequestCarriesEveryField() throws Exception {
        Handoff.Pending pending = begin();
        FakeBridge.Received par = bridge.last("/par");
        assertEquals("POST", par.method);
        assertEquals("application/x-www-form-urlencoded", par.contentType);
        assertEquals(List.of("response_type", "scope", "client_id", "redirect_uri", "state", "nonce",
                "code_challenge", "code_challenge_method", "login_hint", "preferred_username", "ui_locales",
                "email"), List.copyOf(par.form.keySet()));
        assertEquals("alice@example.org", par.form.get("email"));
        assertEquals("code", par.form.get("response_type"));
        assertEquals("openid", par.form.get("scope"));
        assertEquals("keycloak idp", par.form.get("client_id"));
        assertEquals(REDIRECT_URI, par.form.get("redirect_uri"));
        assertEquals(pending.state(), par.form.get("state"));
        assertEquals(pending.nonce(), par.form.get("nonce"));
        assertEquals("S256", par.form.get("code_challenge_method"));
        assertEquals(Pkce.challenge(pending.codeVerifier()), par.form.get("code_challenge"));
        assertEquals(USER_ID, par.form.get("login_hint"));
        assertEquals("alice", par.form.get("preferred_username"));
        assertEquals("de-CH", par.form.get("ui_locales"));
        assertEquals(REDIRECT_URI, pending.redirectUri());
    }

    @Test
    void pushedRequestAuthenticatesWithClientSecretBasic() throws Exception {
        begin();
        String header = bridge.last("/par").authorization;
        assertTrue(header.startsWith("Basic "), header);
        String decoded = new String(Base64.getDecoder().decode(header.substring(6)), StandardCharsets.UTF_8);
        // RFC 6749 §2.3.1: both parts form-encoded first, so ':' and '+' in the secret survive.
        assertEquals("keycloak%20idp:s3cret%3Awith%2Bchars", decoded);
        assertFalse(bridge.last("/par").form.containsKey("client_secret"));
    }

    @Test
    void stateNonceAndVerifierAreFreshPerLogin() throws Exception {
        Handoff.Pending first = begin();
        Handoff.Pending second = begin();
        assertFalse(first.state().equals(second.state()) || first.nonce().equals(second.nonce())
                || first.codeVerifier().equals(second.codeVerifier()));
        assertEquals(1, bridge.discoveryHits.get(), "discovery is cached per issuer");
    }

    @Test
    void browserGoesToTheAuthorizationEndpointWithTheRequestUriOnly() throws Exception {
        URI redirect = begin().browserRedirect();
        assertEquals(bridge.issuer() + "/authorize?client_id=keycloak%20idp"
                + "&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Afake-123", redirect.toString());
    }

    @Test
    void optionalFieldsFollowTheConfiguration() throws Exception {
        config = config(Map.of(StepupConfig.ACR_VALUES, "urn:stepup:mfa", StepupConfig.ALLOW_ENROLLMENT, "false"));
        handoff.begin(config, new Handoff.User(USER_ID, null, null), REDIRECT_URI);
        Map<String, String> form = bridge.last("/par").form;
        assertEquals("urn:stepup:mfa", form.get("acr_values"));
        assertEquals("false", form.get("stepup_allow_enrollment"));
        assertFalse(form.containsKey("preferred_username") || form.containsKey("ui_locales")
                || form.containsKey("email"));
    }

    @Test
    void enrollmentAllowedSendsNothing() throws Exception {
        begin();
        assertFalse(bridge.last("/par").form.containsKey("stepup_allow_enrollment"));
        assertFalse(bridge.last("/par").form.containsKey("acr_values"));
    }

    @Test
    void parRefusedByTheBridgeIsRejectedNotUnavailable() {
        bridge.parStatus = 401;
        bridge.parBody = "{\"error\":\"invalid_client\"}";
        HandoffException e = assertThrows(HandoffException.class, this::begin);
        assertEquals("pushed authorization request refused: HTTP 401 invalid_client", e.getMessage());
    }

    @Test
    void bridge5xxIsUnavailable() {
        bridge.parStatus = 503;
        BridgeUnavailableException e = assertThrows(BridgeUnavailableException.class, this::begin);
        assertEquals("pushed authorization request answered HTTP 503", e.getMessage());
    }

    @Test
    void bridgeNotListeningIsUnavailable() throws Exception {
        int closedPort;
        try (ServerSocket socket = new ServerSocket(0)) {
            closedPort = socket.getLocalPort();
        }
        Map<String, String> map = StepupConfigTest.minimal();
        map.put(StepupConfig.ISSUER, "http://127.0.0.1:" + closedPort);
        StepupConfig down = StepupConfig.from(map);
        assertThrows(BridgeUnavailableException.class,
                () -> handoff.begin(down, new Handoff.User(USER_ID, "alice", null), REDIRECT_URI));
    }

    @Test
    void codeIsRedeemedWithTheSameRedirectUriAndTheVerifier() throws Exception {
        Handoff.Pending pending = begin();
        bridgeIssuesTokenFor(pending);
        Assertion assertion = handoff.complete(config, pending, codeCallback(pending), USER_ID);
        assertEquals("otp", assertion.amrJoined());
        FakeBridge.Received token = bridge.last("/token");
        assertEquals(Map.of("grant_type", "authorization_code", "code", "the-code", "redirect_uri", REDIRECT_URI,
                "code_verifier", pending.codeVerifier()), token.form);
        assertEquals(bridge.last("/par").authorization, token.authorization);
        assertEquals(1, bridge.jwksHits.get());
    }

    @Test
    void stateMismatchIsRejectedBeforeAnyRedemption() throws Exception {
        Handoff.Pending pending = begin();
        Handoff.Callback forged = new Handoff.Callback("other-state", bridge.issuer(), "the-code", null);
        HandoffException e = assertThrows(HandoffException.class,
                () -> handoff.complete(config, pending, forged, USER_ID));
        assertEquals("state does not match this login", e.getMessage());
        assertTrue(bridge.received.stream().noneMatch(r -> r.path.equals("/token")));
    }

    @Test
    void issFromAnotherServerOrMissingIsRejected() throws Exception {
        Handoff.Pending pending = begin();
        for (String iss : new String[] {"https://evil.example.com", null}) {
            Handoff.Callback callback = new Handoff.Callback(pending.state(), iss, "the-code", null);
            HandoffException e = assertThrows(HandoffException.class,
                    () -> handoff.complete(config, pending, callback, USER_ID));
            assertTrue(e.getMessage().startsWith("authorization response iss"), e.getMessage());
        }
    }

    @Test
    void accessDeniedMeansCancelledOrLockedOut() throws Exception {
        Handoff.Pending pending = begin();
        Handoff.Callback denied = new Handoff.Callback(pending.state(), bridge.issuer(), null, "access_denied");
        HandoffException e = assertThrows(HandoffException.class,
                () -> handoff.complete(config, pending, denied, USER_ID));
        assertEquals(HandoffException.Reason.DENIED, e.reason());
    }

    @Test
    void otherErrorsAreRejectedNeverUnavailable() throws Exception {
        Handoff.Pending pending = begin();
        Handoff.Callback error = new Handoff.Callback(pending.state(), bridge.issuer(), null,
                "temporarily_unavailable");
        HandoffException e = assertThrows(HandoffException.class,
                () -> handoff.complete(config, pending, error, USER_ID));
        assertEquals(HandoffException.Reason.REJECTED, e.reason());
        assertEquals("bridge answered error=temporarily_unavailable", e.getMessage());
    }

    @Test
    void refusedCodeIsRejected() throws Exception {
        Handoff.Pending pending = begin();
        bridge.tokenStatus = 400;
        HandoffException e = assertThrows(HandoffException.class,
                () -> handoff.complete(config, pending, codeCallback(pending), USER_ID));
        assertEquals("token request refused: HTTP 400 invalid_grant", e.getMessage());
    }

    @Test
    void tokenForAnotherUserIsRejected() throws Exception {
        Handoff.Pending pending = begin();
        bridgeIssuesTokenFor(pending);
        HandoffException e = assertThrows(HandoffException.class,
                () -> handoff.complete(config, pending, codeCallback(pending), "another-user"));
        assertEquals("id_token sub is not the Keycloak user", e.getMessage());
    }
}
