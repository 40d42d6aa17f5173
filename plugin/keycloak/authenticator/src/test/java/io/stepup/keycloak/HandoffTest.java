package io.stepup.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.ServerSocket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.keycloak.common.crypto.CryptoIntegration;
import org.keycloak.jose.jwk.JSONWebKeySet;
import org.keycloak.jose.jws.Algorithm;

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
    private MovableClock clock;
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
        clock = new MovableClock(Instant.ofEpochSecond(NOW));
        handoff = new Handoff(new BridgeClient(clock), new IdTokenVerifier(clock), clock);
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

    /** The bridge's id_token for this login: right issuer, audience, nonce and subject, issued now. */
    private Map<String, Object> claimsFor(Handoff.Pending pending) {
        long now = clock.instant().getEpochSecond();
        Map<String, Object> claims = IdTokenVerifierTest.claims();
        claims.put("iss", bridge.issuer());
        claims.put("aud", config.clientId());
        claims.put("nonce", pending.nonce());
        claims.put("iat", now);
        claims.put("exp", now + IdTokenVerifier.MAX_LIFETIME_SECONDS);
        claims.put("auth_time", pending.pushedAt());
        return claims;
    }

    private void bridgeIssuesTokenFor(Handoff.Pending pending) {
        Map<String, Object> claims = claimsFor(pending);
        bridge.idToken = () -> EC.sign(claims);
    }

    private Handoff.Callback codeCallback(Handoff.Pending pending) {
        return new Handoff.Callback(pending.state(), bridge.issuer(), "the-code", null);
    }

    /** A whole login: push, then the bridge's id_token comes back. */
    private Assertion logIn() throws Exception {
        Handoff.Pending pending = begin();
        bridgeIssuesTokenFor(pending);
        return handoff.complete(config, pending, codeCallback(pending), USER_ID);
    }

    /** A whole login whose id_token is signed with {@code key}. */
    private Assertion logInSignedBy(TestKeys key) throws Exception {
        Handoff.Pending pending = begin();
        Map<String, Object> claims = claimsFor(pending);
        bridge.idToken = () -> key.sign(claims);
        return handoff.complete(config, pending, codeCallback(pending), USER_ID);
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
    void aClosedClientWindowIsARefusalSoTheLoginFailsClosed() {
        // 429 is no outage: onBridgeUnavailable=skip must never let it through.
        bridge.parStatus = 429;
        bridge.parBody = "{\"error\":\"temporarily_unavailable\"}";
        HandoffException e = assertThrows(HandoffException.class, this::begin);
        assertEquals("pushed authorization request refused: HTTP 429 temporarily_unavailable", e.getMessage());
    }

    @Test
    void aPushedRequestAnswerIs201WithARequestUriAndExpiresIn() {
        // RFC 9126 §2.2, as the Python client checks it.
        bridge.parStatus = 200;
        HandoffException e = assertThrows(HandoffException.class, this::begin);
        assertEquals("pushed authorization request answered HTTP 200, not 201", e.getMessage());
        bridge.parStatus = 201;
        for (String body : new String[] {"{\"request_uri\":\"" + FakeBridge.REQUEST_URI + "\"}",
                "{\"request_uri\":\"" + FakeBridge.REQUEST_URI + "\",\"expires_in\":0}",
                "{\"request_uri\":\"" + FakeBridge.REQUEST_URI + "\",\"expires_in\":\"60\"}"}) {
            bridge.parBody = body;
            e = assertThrows(HandoffException.class, this::begin);
            assertEquals("pushed authorization response has no valid expires_in", e.getMessage());
        }
        bridge.parBody = "{\"request_uri\":7,\"expires_in\":60}";
        e = assertThrows(HandoffException.class, this::begin);
        assertEquals("pushed authorization response has no request_uri", e.getMessage());
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

    @Test
    void assertionFromBeforeThePushedRequestIsRejected() throws Exception {
        Handoff.Pending pending = begin();
        Map<String, Object> claims = claimsFor(pending);
        claims.put("auth_time", pending.pushedAt() - IdTokenVerifier.LEEWAY_SECONDS - 1);
        bridge.idToken = () -> EC.sign(claims);
        HandoffException e = assertThrows(HandoffException.class,
                () -> handoff.complete(config, pending, codeCallback(pending), USER_ID));
        assertEquals("id_token auth_time is before this login's pushed request", e.getMessage());
    }

    @Test
    void aCallbackUnderAnotherConfigurationIsRefusedBeforeItsCodeIsSent() throws Exception {
        for (Map<String, String> changed : List.of(Map.of(StepupConfig.CLIENT_ID, "another-client"),
                Map.of(StepupConfig.ACR_VALUES, "mfa"),
                Map.of(StepupConfig.ISSUER, bridge.issuer() + "/other"))) {
            Handoff.Pending pending = begin();
            bridgeIssuesTokenFor(pending);
            StepupConfig now = config(changed);
            HandoffException e = assertThrows(HandoffException.class,
                    () -> handoff.complete(now, pending, codeCallback(pending), USER_ID), changed.toString());
            assertEquals("the step's bridge, client id or acr values changed during this login", e.getMessage());
        }
        assertTrue(bridge.received.stream().noneMatch(r -> r.path.equals("/token")));
        // The same configuration still completes: the binding is what was refused.
        Handoff.Pending pending = begin();
        bridgeIssuesTokenFor(pending);
        assertEquals(USER_ID, handoff.complete(config(Map.of()), pending, codeCallback(pending), USER_ID).subject());
    }

    @Test
    void aLoginWithoutItsBindingIsRefused() throws Exception {
        Handoff.Pending pushed = begin();
        bridgeIssuesTokenFor(pushed);
        Handoff.Pending restored = new Handoff.Pending(pushed.state(), pushed.nonce(), pushed.codeVerifier(),
                pushed.redirectUri(), pushed.pushedAt(), null, null);
        HandoffException e = assertThrows(HandoffException.class,
                () -> handoff.complete(config, restored, codeCallback(pushed), USER_ID));
        assertEquals("the step's bridge, client id or acr values changed during this login", e.getMessage());
    }

    @Test
    void loginWithoutThePushTimeIsRejected() throws Exception {
        Handoff.Pending pushed = begin();
        bridgeIssuesTokenFor(pushed);
        Handoff.Pending restored = new Handoff.Pending(pushed.state(), pushed.nonce(), pushed.codeVerifier(),
                pushed.redirectUri(), null, pushed.binding(), null);
        HandoffException e = assertThrows(HandoffException.class,
                () -> handoff.complete(config, restored, codeCallback(pushed), USER_ID));
        assertEquals("this login has no time of its pushed request", e.getMessage());
    }

    @Test
    void oversizedAnswersAreRefusedNotRead() throws Exception {
        bridge.parBody = "{\"request_uri\":\"" + FakeBridge.REQUEST_URI + "\",\"expires_in\":60,\"pad\":\""
                + "x".repeat(BridgeClient.MAX_ANSWER_BYTES) + "\"}";
        HandoffException par = assertThrows(HandoffException.class, this::begin);
        assertEquals("pushed authorization request answer is larger than 16384 bytes", par.getMessage());

        bridge.parBody = "{\"request_uri\":\"" + FakeBridge.REQUEST_URI + "\",\"expires_in\":60}";
        String keys = TestKeys.jwksJson(EC);
        bridge.jwks = () -> keys.substring(0, keys.length() - 1) + ",\"pad\":\""
                + "x".repeat(BridgeClient.MAX_METADATA_BYTES) + "\"}";
        HandoffException jwks = assertThrows(HandoffException.class, this::logIn);
        assertEquals(HandoffException.Reason.REJECTED, jwks.reason());
        assertEquals("JWKS answer is larger than 65536 bytes", jwks.getMessage());
    }

    @Test
    void oversizedErrorPageIsStillUnavailable() {
        bridge.parStatus = 502;
        bridge.parBody = "<html>" + "x".repeat(BridgeClient.MAX_METADATA_BYTES) + "</html>";
        BridgeUnavailableException e = assertThrows(BridgeUnavailableException.class, this::begin);
        assertEquals("pushed authorization request answered HTTP 502", e.getMessage());
    }

    /** Entries keycloak-core cannot read: not an object, members of the wrong JSON type, a point off the curve. */
    static final String UNREADABLE_KEYS = "null,\"ec\",{\"kid\":{}},{\"kty\":\"EC\",\"use\":[\"sig\"]},"
            + "{\"kty\":\"RSA\",\"kid\":\"r\",\"x5c\":\"abc\"},"
            + "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ec-1\",\"x\":\"AA\",\"y\":\"AA\"}";

    @Test
    void keysThisClientCannotReadAreSkipped() throws Exception {
        String good = TestKeys.jwksJson(EC);
        bridge.jwks = () -> "{\"keys\":[" + UNREADABLE_KEYS + "," + good.substring(good.indexOf('[') + 1);
        assertEquals("otp", logIn().amrJoined());
    }

    @Test
    void keySetWithNoReadableKeyIsRejectedAndNotCached() throws Exception {
        bridge.jwks = () -> "{\"keys\":[" + UNREADABLE_KEYS + "]}";
        HandoffException e = assertThrows(HandoffException.class, this::logIn);
        assertEquals(HandoffException.Reason.REJECTED, e.reason());
        assertEquals("JWKS holds no usable key", e.getMessage());

        bridge.jwks = () -> TestKeys.jwksJson(EC);
        clock.advance(BridgeClient.FAILURE_TTL.plusSeconds(1));
        assertEquals("otp", logIn().amrJoined());
    }

    @Test
    void bridgeErrorIsMadePrintableBeforeItIsLogged() {
        bridge.parStatus = 400;
        bridge.parBody = "{\"error\":\"invalid_client\\r\\n2030-01-01 INFO forged line\"}";
        HandoffException e = assertThrows(HandoffException.class, this::begin);
        assertEquals("pushed authorization request refused: HTTP 400 invalid_client??2030-01-01 INFO forged line",
                e.getMessage());
        bridge.parBody = "{\"error\":{\"nested\":true}}";
        e = assertThrows(HandoffException.class, this::begin);
        assertEquals("pushed authorization request refused: HTTP 400", e.getMessage());
    }

    @Test
    void timedOutDiscoveryIsRememberedForAFewSeconds() throws Exception {
        config = config(Map.of(StepupConfig.READ_TIMEOUT_MS, "1000"));
        bridge.discoveryStallMs = 3000;
        assertThrows(BridgeUnavailableException.class, this::begin);
        long start = System.nanoTime();
        BridgeUnavailableException again = assertThrows(BridgeUnavailableException.class, this::begin);
        // The request's timeout or the overall deadline, whichever fires first.
        assertTrue(again.getMessage().startsWith("recently timed out: discovery "), again.getMessage());
        assertTrue(System.nanoTime() - start < 500_000_000L, "failed at once");
        assertEquals(1, bridge.discoveryHits.get(), "no second wait on a bridge that just timed out");

        bridge.discoveryStallMs = 0;
        clock.advance(BridgeClient.FAILURE_TTL);
        begin();
        assertEquals(2, bridge.discoveryHits.get());
    }

    @Test
    void aTimeoutIsRememberedOnlyForTheTimeoutsItRanUnder() throws Exception {
        // Another step (another flow's copy, another realm's) on the same bridge with a short read timeout: its
        // timeout must not fail this step's logins, which wait longer, without asking the bridge.
        StepupConfig patient = config;
        config = config(Map.of(StepupConfig.READ_TIMEOUT_MS, "200"));
        bridge.discoveryStallMs = 600;
        assertThrows(BridgeUnavailableException.class, this::begin);
        assertThrows(BridgeUnavailableException.class, this::begin);
        assertEquals(1, bridge.discoveryHits.get(), "remembered for the short timeout");
        config = patient;
        begin();
        assertEquals(2, bridge.discoveryHits.get(), "asked again, and waited for");
    }

    @Test
    void quickFailuresAreNotRemembered() throws Exception {
        // A refused connection or a 5xx costs no wait; a bridge back up is used at once.
        bridge.discoveryStatus = 503;
        assertThrows(BridgeUnavailableException.class, this::begin);
        bridge.discoveryStatus = 200;
        begin();
        assertEquals(2, bridge.discoveryHits.get());
    }

    @Test
    void timedOutKeySetFetchIsRememberedForAFewSeconds() throws Exception {
        config = config(Map.of(StepupConfig.READ_TIMEOUT_MS, "1000"));
        bridge.jwksStallMs = 3000;
        assertThrows(BridgeUnavailableException.class, this::logIn);
        BridgeUnavailableException again = assertThrows(BridgeUnavailableException.class, this::logIn);
        // The request's timeout or the overall deadline, whichever fires first.
        assertTrue(again.getMessage().startsWith("recently timed out: JWKS "), again.getMessage());
        assertEquals(1, bridge.jwksHits.get());

        bridge.jwksStallMs = 0;
        clock.advance(BridgeClient.FAILURE_TTL);
        assertEquals("otp", logIn().amrJoined());
        assertEquals(2, bridge.jwksHits.get());
    }

    @Test
    void unknownKidRefetchesTheKeySetAtMostEveryThirtySeconds() throws Exception {
        TestKeys stranger = TestKeys.es256("stranger");
        assertThrows(HandoffException.class, () -> logInSignedBy(stranger));
        assertEquals(2, bridge.jwksHits.get(), "the key set, then one refetch for the unknown kid");
        assertThrows(HandoffException.class, () -> logInSignedBy(stranger));
        assertEquals(2, bridge.jwksHits.get(), "no refetch within the interval");

        TestKeys rotated = TestKeys.es256("ec-2");
        bridge.jwks = () -> TestKeys.jwksJson(EC, rotated);
        clock.advance(BridgeClient.JWKS_REFRESH_INTERVAL);
        assertEquals("otp", logInSignedBy(rotated).amrJoined());
        assertEquals(3, bridge.jwksHits.get());
    }

    @Test
    void keySetIsReusedNoLongerThanTheBridgesJwksMaxAge() throws Exception {
        logIn();
        // The bridge publishes a new key its JWKS max-age (300 s) before signing with it.
        clock.advance(Duration.ofSeconds(300));
        logIn();
        assertEquals(2, bridge.jwksHits.get());
    }

    @Test
    void loginsMeetingARotatedKeyTogetherShareOneRefetchAndAllGetTheNewKey() throws Exception {
        // Found by a review: the refetch was marked done as it started, so a second login with the new kid got
        // the cached set, without it, while the first login's refetch was still on its way.
        BridgeClient client = new BridgeClient(clock);
        URI jwksUri = URI.create(bridge.issuer() + "/jwks");
        client.keys(config, jwksUri, false);
        TestKeys rotated = TestKeys.es256("ec-2");
        bridge.jwks = () -> TestKeys.jwksJson(EC, rotated);
        bridge.jwksStallMs = 800;
        CompletableFuture<JSONWebKeySet> first = CompletableFuture.supplyAsync(() -> {
            try {
                return client.keys(config, jwksUri, true);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        for (int waited = 0; bridge.jwksHits.get() < 2 && waited < 500; waited++) {
            Thread.sleep(10);  // until the first login's refetch has reached the bridge
        }
        JSONWebKeySet second = client.keys(config, jwksUri, true);
        assertNotNull(IdTokenVerifier.select(second, "ec-2", Algorithm.ES256), "the second login got the old set");
        assertNotNull(IdTokenVerifier.select(first.get(), "ec-2", Algorithm.ES256));
        assertEquals(2, bridge.jwksHits.get(), "one refetch for both");
    }
}
