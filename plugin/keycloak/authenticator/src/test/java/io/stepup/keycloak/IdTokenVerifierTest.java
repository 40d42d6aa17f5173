package io.stepup.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.keycloak.common.crypto.CryptoIntegration;
import org.keycloak.jose.jwk.JSONWebKeySet;
import org.keycloak.jose.jwk.JWK;

/** OpenID Connect Core §3.1.3.7, ID Token validation, as the authenticator applies it. */
class IdTokenVerifierTest {

    static final long NOW = 1_800_000_000L;
    static final String ISSUER = "https://mfa.example.com";
    static final String CLIENT_ID = "keycloak";
    static final String NONCE = "n-0S6_WzA2Mj";
    static final String USER_ID = "3f2c1a7e-0b5d-4c47-9d7e-1b2f7a9c0d11";
    /** When this login's pushed request was sent. */
    static final long PUSHED_AT = NOW - 60;

    static final TestKeys EC = TestKeys.es256("ec-1");
    static final TestKeys RSA = TestKeys.rs256("rsa-1");

    private final IdTokenVerifier verifier =
            new IdTokenVerifier(Clock.fixed(Instant.ofEpochSecond(NOW), ZoneOffset.UTC));
    private final IdTokenVerifier.Expected expected =
            new IdTokenVerifier.Expected(ISSUER, CLIENT_ID, NONCE, USER_ID, null, PUSHED_AT);

    @BeforeAll
    static void installKeycloakCrypto() {
        // The server does this at start-up; keycloak-core's JWK and ECDSA helpers need it.
        CryptoIntegration.init(IdTokenVerifierTest.class.getClassLoader());
    }

    static Map<String, Object> claims() {
        Map<String, Object> claims = new LinkedHashMap<>();
        claims.put("iss", ISSUER);
        claims.put("sub", USER_ID);
        claims.put("aud", CLIENT_ID);
        claims.put("exp", NOW + 300);
        claims.put("iat", NOW);
        claims.put("auth_time", NOW - 5);
        claims.put("nonce", NONCE);
        claims.put("acr", "http://schemas.openid.net/pape/policies/2007/06/multi-factor");
        claims.put("amr", List.of("otp"));
        return claims;
    }

    /** A key source that counts fetches and can answer differently once refreshed. */
    static final class Keys implements IdTokenVerifier.KeySource {
        final JSONWebKeySet cached;
        final JSONWebKeySet fresh;
        final List<Boolean> calls = new ArrayList<>();

        Keys(JSONWebKeySet cached, JSONWebKeySet fresh) {
            this.cached = cached;
            this.fresh = fresh;
        }

        @Override
        public JSONWebKeySet keys(boolean refresh) {
            calls.add(refresh);
            return refresh ? fresh : cached;
        }
    }

    static Keys keys(TestKeys... published) {
        return new Keys(TestKeys.jwks(published), TestKeys.jwks(published));
    }

    private Assertion verify(String token, Keys keys) throws Exception {
        return verifier.verify(token, expected, keys);
    }

    private String rejection(String token, Keys keys) {
        HandoffException e = assertThrows(HandoffException.class, () -> verify(token, keys));
        assertEquals(HandoffException.Reason.REJECTED, e.reason());
        return e.getMessage();
    }

    private String rejection(Map<String, Object> claims) {
        return rejection(EC.sign(claims), keys(EC, RSA));
    }

    @Test
    void goodEs256Token() throws Exception {
        Keys keys = keys(EC, RSA);
        Assertion assertion = verify(EC.sign(claims()), keys);
        assertEquals(USER_ID, assertion.subject());
        assertEquals("http://schemas.openid.net/pape/policies/2007/06/multi-factor", assertion.acr());
        assertEquals(List.of("otp"), assertion.amr());
        assertEquals("otp", assertion.amrJoined());
        assertEquals(NOW - 5, assertion.authTime());
        assertEquals(List.of(false), keys.calls);
    }

    @Test
    void goodRs256Token() throws Exception {
        Map<String, Object> claims = claims();
        claims.put("aud", List.of(CLIENT_ID));
        claims.put("azp", CLIENT_ID);
        claims.put("amr", List.of("rc", "otp"));
        Assertion assertion = verify(RSA.sign(claims), keys(EC, RSA));
        assertEquals("rc,otp", assertion.amrJoined());
    }

    @Test
    void acrAmrAndAuthTimeAreRequired() {
        for (String claim : List.of("acr", "amr", "auth_time")) {
            Map<String, Object> claims = claims();
            claims.remove(claim);
            assertEquals("id_token lacks acr, amr or auth_time", rejection(claims));
        }
        Map<String, Object> claims = claims();
        claims.put("amr", List.of());
        assertEquals("id_token lacks acr, amr or auth_time", rejection(claims));
        claims = claims();
        claims.put("acr", "");  // the Python client refuses it too
        assertEquals("id_token lacks acr, amr or auth_time", rejection(claims));
    }

    @Test
    void acrMustBeOneOfTheRequestedValues() throws Exception {
        IdTokenVerifier.Expected asking = new IdTokenVerifier.Expected(
                ISSUER, CLIENT_ID, NONCE, USER_ID, "urn:acme:mfa  urn:acme:strong", PUSHED_AT);
        Map<String, Object> claims = claims();
        HandoffException e = assertThrows(HandoffException.class,
                () -> verifier.verify(EC.sign(claims), asking, keys(EC)));
        assertEquals("id_token acr is not one of the requested acr_values", e.getMessage());
        claims.put("acr", "urn:acme:strong");
        assertEquals("urn:acme:strong", verifier.verify(EC.sign(claims), asking, keys(EC)).acr());
    }

    @Test
    void eachClaimHasItsJsonType() {
        // Jackson would read these as the right type; the bridge never signs them so.
        Map<String, Object> wrong = new LinkedHashMap<>();
        wrong.put("exp", String.valueOf(NOW + 300));
        wrong.put("iat", String.valueOf(NOW));
        wrong.put("auth_time", String.valueOf(NOW - 5));
        wrong.put("nbf", String.valueOf(NOW));
        wrong.put("acr", 2);
        wrong.put("nonce", 12345);
        wrong.put("sub", 42);
        wrong.put("azp", true);
        wrong.put("iss", 1.5);
        wrong.forEach((name, value) -> {
            Map<String, Object> claims = claims();
            claims.put(name, value);
            String kind = value instanceof String ? "a number" : "a string";
            assertEquals("id_token " + name + " is not " + kind, rejection(claims), name);
        });
        Map<String, Object> claims = claims();
        claims.put("aud", List.of(CLIENT_ID, 7));
        assertEquals("id_token aud is not a string or an array of strings", rejection(claims));
    }

    @Test
    void audienceIsThisClientAlone() {
        // The bridge issues one audience; another one is a token meant for someone else too (RFC 8725 §3.9).
        Map<String, Object> claims = claims();
        claims.put("aud", List.of(CLIENT_ID, "other"));
        assertEquals("id_token has audiences besides the client id", rejection(claims));
        claims.put("azp", CLIENT_ID);
        assertEquals("id_token has audiences besides the client id", rejection(claims));
    }

    @Test
    void iatIsRequired() {
        Map<String, Object> claims = claims();
        claims.remove("iat");
        assertEquals("id_token has no iat", rejection(claims));
    }

    @Test
    void iatOlderThanTheLifetimeIsRefused() throws Exception {
        long oldest = NOW - IdTokenVerifier.MAX_LIFETIME_SECONDS - IdTokenVerifier.LEEWAY_SECONDS;
        Map<String, Object> claims = claims();
        claims.put("iat", oldest);
        // The longest life allowed, so exp is still ahead of now (with the leeway).
        claims.put("exp", oldest + IdTokenVerifier.MAX_LIFETIME_SECONDS + IdTokenVerifier.LEEWAY_SECONDS);
        claims.put("auth_time", PUSHED_AT);
        verify(EC.sign(claims), keys(EC));
        claims.put("iat", oldest - 1);
        assertEquals("id_token iat is too old", rejection(claims));
    }

    @Test
    void lifetimeOverFiveMinutesIsRefused() throws Exception {
        Map<String, Object> claims = claims();
        claims.put("exp", NOW + IdTokenVerifier.MAX_LIFETIME_SECONDS + IdTokenVerifier.LEEWAY_SECONDS);
        verify(EC.sign(claims), keys(EC));
        claims.put("exp", NOW + IdTokenVerifier.MAX_LIFETIME_SECONDS + IdTokenVerifier.LEEWAY_SECONDS + 1);
        assertEquals("id_token lives longer than 300 s", rejection(claims));
    }

    @Test
    void authTimeBeforeThePushedRequestIsRefused() throws Exception {
        Map<String, Object> claims = claims();
        claims.put("auth_time", PUSHED_AT - IdTokenVerifier.LEEWAY_SECONDS);
        verify(EC.sign(claims), keys(EC));
        claims.put("auth_time", PUSHED_AT - IdTokenVerifier.LEEWAY_SECONDS - 1);
        assertEquals("id_token auth_time is before this login's pushed request", rejection(claims));
    }

    @Test
    void authTimeInTheFutureIsRefused() throws Exception {
        Map<String, Object> claims = claims();
        claims.put("auth_time", NOW + IdTokenVerifier.LEEWAY_SECONDS);
        verify(EC.sign(claims), keys(EC));
        claims.put("auth_time", NOW + IdTokenVerifier.LEEWAY_SECONDS + 1);
        assertEquals("id_token auth_time lies in the future", rejection(claims));
    }

    @Test
    void amrValuesAreThoseTheBridgeIssues() {
        Map<String, Object> claims = claims();
        claims.put("amr", List.of("otp", "pwd"));
        assertEquals("id_token amr has a value the bridge does not issue", rejection(claims));
        claims.put("amr", List.of("otp", 1));
        assertEquals("id_token amr is not an array of strings", rejection(claims));
    }

    @Test
    void amrIsAnArrayNotALoneString() {
        // OpenID Connect Core §2; the Python client refuses it too.
        Map<String, Object> claims = claims();
        claims.put("amr", "otp");
        assertEquals("id_token amr is not an array of strings", rejection(claims));
    }

    @Test
    void critHeaderIsRefused() {
        // RFC 7515 §4.1.11: an extension we do not understand must not be ignored.
        Map<String, Object> header =
                headerOf("alg", "ES256", "kid", EC.kid, "crit", List.of("b64"), "b64", true);
        Keys keys = keys(EC);
        assertEquals("id_token has a crit header", rejection(EC.sign(header, claims()), keys));
        assertTrue(keys.calls.isEmpty(), "no key lookup for a refused header");
    }

    @Test
    void typIsJwtOrAbsent() throws Exception {
        // The bridge sets typ JWT (bridge/oidc/assertion.py).
        Map<String, Object> header = headerOf("alg", "ES256", "kid", EC.kid, "typ", "at+jwt");
        assertEquals("id_token typ is not JWT", rejection(EC.sign(header, claims()), keys(EC)));
        verify(EC.sign(headerOf("alg", "ES256", "kid", EC.kid), claims()), keys(EC));
    }

    @Test
    void anyOtherFailureWhileCheckingIsARejection() {
        // keycloak-core's JWKSUtils throws a NullPointerException on a null entry in a key set.
        JSONWebKeySet broken = new JSONWebKeySet();
        broken.setKeys(new JWK[] {null});
        assertEquals("id_token could not be verified (NullPointerException)",
                rejection(EC.sign(claims()), new Keys(broken, broken)));
    }

    @Test
    void wrongSubject() {
        Map<String, Object> claims = claims();
        claims.put("sub", "someone-else");
        assertEquals("id_token sub is not the Keycloak user", rejection(claims));
    }

    @Test
    void wrongNonce() {
        Map<String, Object> claims = claims();
        claims.put("nonce", "replayed");
        assertEquals("id_token nonce does not match", rejection(claims));
        claims.remove("nonce");
        assertEquals("id_token nonce does not match", rejection(claims));
    }

    @Test
    void wrongIssuer() {
        Map<String, Object> claims = claims();
        claims.put("iss", "https://evil.example.com");
        assertEquals("id_token iss does not match the bridge issuer", rejection(claims));
    }

    @Test
    void wrongAudience() {
        Map<String, Object> claims = claims();
        claims.put("aud", "another-client");
        assertEquals("id_token aud does not contain the client id", rejection(claims));
        claims.remove("aud");
        assertEquals("id_token aud does not contain the client id", rejection(claims));
    }

    @Test
    void azpNamingAnotherClient() {
        Map<String, Object> claims = claims();
        claims.put("azp", "another-client");
        assertEquals("id_token azp does not name the client id", rejection(claims));
    }

    @Test
    void expiredBeyondTheLeeway() {
        Map<String, Object> claims = claims();
        claims.put("exp", NOW - IdTokenVerifier.LEEWAY_SECONDS - 1);
        assertEquals("id_token is expired", rejection(claims));
        claims.remove("exp");
        assertEquals("id_token is expired", rejection(claims));
    }

    @Test
    void expiredAtTheLeewaysEdge() {
        Map<String, Object> claims = claims();
        claims.put("exp", NOW - IdTokenVerifier.LEEWAY_SECONDS);  // now must be before exp + leeway
        assertEquals("id_token is expired", rejection(claims));
    }

    @Test
    void expiredWithinTheLeewayIsAccepted() throws Exception {
        Map<String, Object> claims = claims();
        claims.put("exp", NOW - IdTokenVerifier.LEEWAY_SECONDS + 1);
        verify(EC.sign(claims), keys(EC));
    }

    @Test
    void notValidYetBeyondTheLeeway() {
        Map<String, Object> claims = claims();
        claims.put("nbf", NOW + IdTokenVerifier.LEEWAY_SECONDS + 1);
        assertEquals("id_token is not valid yet (nbf)", rejection(claims));
    }

    @Test
    void notBeforeWithinTheLeewayIsAccepted() throws Exception {
        Map<String, Object> claims = claims();
        claims.put("nbf", NOW + IdTokenVerifier.LEEWAY_SECONDS);
        verify(EC.sign(claims), keys(EC));
    }

    @Test
    void issuedInTheFuture() {
        Map<String, Object> claims = claims();
        claims.put("iat", NOW + 600);
        assertEquals("id_token iat is in the future", rejection(claims));
    }

    @Test
    void badSignature() {
        TestKeys impostor = TestKeys.es256(EC.kid);
        assertEquals("id_token signature is invalid", rejection(impostor.sign(claims()), keys(EC)));
        String token = EC.sign(claims());
        String tampered = token.substring(0, token.lastIndexOf('.')) + "." + "A".repeat(86);
        assertEquals("id_token signature is invalid", rejection(tampered, keys(EC)));
    }

    @Test
    void tamperedClaimsBreakTheSignature() {
        String token = EC.sign(claims());
        String[] parts = token.split("\\.");
        Map<String, Object> claims = claims();
        claims.put("sub", "admin");
        String forged = parts[0] + "." + TestKeys.encodeJson(claims) + "." + parts[2];
        assertEquals("id_token signature is invalid", rejection(forged, keys(EC)));
    }

    @Test
    void unknownKidIsRefetchedOnceThenAccepted() throws Exception {
        TestKeys rotated = TestKeys.es256("ec-2");
        Keys keys = new Keys(TestKeys.jwks(EC), TestKeys.jwks(EC, rotated));
        verify(rotated.sign(claims()), keys);
        assertEquals(List.of(false, true), keys.calls);
    }

    @Test
    void unknownKidAfterTheRefetchIsRefused() {
        TestKeys stranger = TestKeys.es256("nobody");
        Keys keys = keys(EC);
        assertEquals("no ES256 key in the bridge's JWKS for kid nobody", rejection(stranger.sign(claims()), keys));
        assertEquals(List.of(false, true), keys.calls);
    }

    @Test
    void algNoneIsRefused() {
        Map<String, Object> header = headerOf("alg", "none");
        String unsigned = TestKeys.encodeJson(header) + "." + TestKeys.encodeJson(claims()) + ".";
        Keys keys = keys(EC);
        assertTrue(rejection(unsigned, keys).startsWith("id_token alg none is not accepted"));
        assertTrue(keys.calls.isEmpty(), "no key lookup for a refused alg");
    }

    @Test
    void hmacIsRefused() {
        Map<String, Object> header = headerOf("alg", "HS256", "kid", EC.kid);
        String token = TestKeys.encodeJson(header) + "." + TestKeys.encodeJson(claims()) + ".c2ln";
        assertTrue(rejection(token, keys(EC)).startsWith("id_token alg HS256 is not accepted"));
    }

    @Test
    void algMustFitTheKeyType() {
        // RS256 header naming the EC key: no RS256 key with that kid exists.
        Map<String, Object> header = headerOf("alg", "RS256", "kid", EC.kid);
        String token = RSA.sign(header, claims());
        assertEquals("no RS256 key in the bridge's JWKS for kid ec-1", rejection(token, keys(EC, RSA)));
    }

    @Test
    void missingKidIsRefusedBeforeAnyKeyLookup() {
        // The bridge always names its key (DESIGN.md), and the Python client requires it.
        Map<String, Object> header = headerOf("alg", "ES256");
        Keys keys = keys(EC);
        assertEquals("id_token header has no kid", rejection(EC.sign(header, claims()), keys));
        assertTrue(keys.calls.isEmpty(), "no key lookup without a kid");
    }

    @Test
    void aKidWithControlCharactersIsMadePrintableBeforeItIsLogged() {
        Map<String, Object> header = headerOf("alg", "ES256", "kid", "x\r\nINFO forged");
        assertEquals("no ES256 key in the bridge's JWKS for kid x??INFO forged",
                rejection(EC.sign(header, claims()), keys(EC)));
    }

    @Test
    void garbageIsNotAJws() {
        assertEquals("id_token is not a valid JWS", rejection("not-a-token", keys(EC)));
    }

    /** A JWS header of name, value pairs, in order. */
    private static Map<String, Object> headerOf(Object... nameValue) {
        Map<String, Object> header = new LinkedHashMap<>();
        for (int i = 0; i < nameValue.length; i += 2) {
            header.put((String) nameValue[i], nameValue[i + 1]);
        }
        return header;
    }
}
