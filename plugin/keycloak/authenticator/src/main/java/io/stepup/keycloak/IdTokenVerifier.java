package io.stepup.keycloak;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import org.keycloak.common.VerificationException;
import org.keycloak.crypto.AsymmetricSignatureVerifierContext;
import org.keycloak.crypto.ECDSASignatureVerifierContext;
import org.keycloak.crypto.KeyType;
import org.keycloak.crypto.KeyWrapper;
import org.keycloak.crypto.SignatureVerifierContext;
import org.keycloak.jose.jwk.JSONWebKeySet;
import org.keycloak.jose.jwk.JWK;
import org.keycloak.jose.jws.Algorithm;
import org.keycloak.jose.jws.JWSHeader;
import org.keycloak.jose.jws.JWSInput;
import org.keycloak.jose.jws.JWSInputException;
import org.keycloak.representations.IDToken;
import org.keycloak.util.JWKSUtils;
import org.keycloak.util.JsonSerialization;

/**
 * Checks the bridge's id_token as OpenID Connect Core §3.1.3.7 asks: the JWS signature against the bridge's JWKS
 * (ES256 or RS256 only; {@code none} and HMAC are refused; RFC 8725 §3.1), the header ({@code typ} {@code JWT} or
 * absent, no {@code crit}: RFC 7515 §4.1.11), {@code iss}, {@code aud} (this client alone), {@code azp}, {@code exp}
 * and {@code iat} (with {@link #LEEWAY_SECONDS}, at most {@link #MAX_LIFETIME_SECONDS} apart), {@code nbf} where
 * present, {@code nonce},
 * {@code sub} against the Keycloak user id sent as login_hint, {@code auth_time} not before the pushed request, and
 * {@code amr} values the bridge issues. Any other failure while checking is a rejection too.
 */
public class IdTokenVerifier {

    /** Clock skew tolerated on {@code exp}, {@code iat} and {@code auth_time}. */
    public static final long LEEWAY_SECONDS = 30;
    /** The bridge's id_tokens live at most 5 min ({@code STEPUP_ID_TOKEN_TTL} ≤ 300, docs/security.md). */
    public static final long MAX_LIFETIME_SECONDS = 300;
    /** The {@code amr} values the bridge issues: TOTP and the recovery code (bridge/factors/__init__.py). */
    static final Set<String> BRIDGE_AMR = Set.of("otp", "rc");

    private static final Set<Algorithm> ACCEPTED = Set.of(Algorithm.ES256, Algorithm.RS256);
    /** Claims that are JSON numbers (OpenID Connect Core §2: seconds since the epoch). */
    private static final List<String> NUMERIC_CLAIMS = List.of("exp", "iat", "nbf", "auth_time");
    /** Claims that are JSON strings. */
    private static final List<String> TEXT_CLAIMS = List.of("iss", "sub", "nonce", "acr", "azp");

    private final Clock clock;

    public IdTokenVerifier(Clock clock) {
        this.clock = clock;
    }

    /** Where the bridge's keys come from; {@code refresh} asks for a fresh copy instead of a cached one. */
    @FunctionalInterface
    public interface KeySource {
        JSONWebKeySet keys(boolean refresh) throws BridgeUnavailableException, HandoffException;
    }

    /** What the token must say. */
    public static final class Expected {
        final String issuer;
        final String clientId;
        final String nonce;
        final String subject;
        /** Space-separated {@code acr_values} that were requested, or null (any acr). */
        final String acrValues;
        /** When the pushed request was sent, epoch seconds; {@code auth_time} cannot be earlier. */
        final long requestedAt;

        public Expected(String issuer, String clientId, String nonce, String subject, String acrValues,
                        long requestedAt) {
            this.issuer = issuer;
            this.clientId = clientId;
            this.nonce = nonce;
            this.subject = subject;
            this.acrValues = acrValues;
            this.requestedAt = requestedAt;
        }
    }

    /**
     * Verifies the token and returns its assertion.
     *
     * @throws HandoffException (REJECTED) on any failed check; the message names the check, never the token
     * @throws BridgeUnavailableException when the JWKS cannot be fetched
     */
    public Assertion verify(String idToken, Expected expected, KeySource keys)
            throws HandoffException, BridgeUnavailableException {
        try {
            return check(idToken, expected, keys);
        } catch (RuntimeException e) {
            // A key set or token Keycloak's JOSE code chokes on: refused like any other bad token.
            throw HandoffException.rejected("id_token could not be verified (" + e.getClass().getSimpleName() + ")");
        }
    }

    private Assertion check(String idToken, Expected expected, KeySource keys)
            throws HandoffException, BridgeUnavailableException {
        JWSInput jws;
        try {
            jws = new JWSInput(idToken);
        } catch (JWSInputException e) {
            throw HandoffException.rejected("id_token is not a valid JWS");
        }
        Algorithm alg = jws.getHeader().getAlgorithm();
        if (alg == null || !ACCEPTED.contains(alg)) {
            throw HandoffException.rejected("id_token alg " + alg + " is not accepted (ES256 or RS256 only)");
        }
        if (jws.getSignature() == null || jws.getSignature().length == 0) {
            throw HandoffException.rejected("id_token is not signed");
        }
        checkHeader(jws.getHeader());
        String kid = jws.getHeader().getKeyId();
        if (kid == null || kid.isEmpty()) {
            // The bridge always names its key (DESIGN.md); the Python client refuses it too.
            throw HandoffException.rejected("id_token header has no kid");
        }
        KeyWrapper key = findKey(kid, alg, keys);
        checkSignature(jws, alg, key);
        IDToken token;
        JsonNode claims;
        try {
            token = jws.readJsonContent(IDToken.class);
            claims = JsonSerialization.mapper.readTree(jws.getContent());
        } catch (JWSInputException | IOException e) {
            throw HandoffException.rejected("id_token claims are not valid JSON");
        }
        checkTypes(claims);
        checkClaims(token, expected);
        List<String> amr = amr(claims);
        if (!BRIDGE_AMR.containsAll(amr)) {
            throw HandoffException.rejected("id_token amr has a value the bridge does not issue");
        }
        // The bridge always asserts how and when the user was checked; without these the
        // session notes would keep describing an earlier assertion.
        if (token.getAcr() == null || token.getAcr().isEmpty() || amr.isEmpty() || token.getAuth_time() == null) {
            throw HandoffException.rejected("id_token lacks acr, amr or auth_time");
        }
        if (token.getAuth_time() < expected.requestedAt - LEEWAY_SECONDS) {
            throw HandoffException.rejected("id_token auth_time is before this login's pushed request");
        }
        if (token.getAuth_time() > clock.instant().getEpochSecond() + LEEWAY_SECONDS) {
            throw HandoffException.rejected("id_token auth_time lies in the future");
        }
        if (expected.acrValues != null && !List.of(expected.acrValues.trim().split("\\s+")).contains(token.getAcr())) {
            throw HandoffException.rejected("id_token acr is not one of the requested acr_values");
        }
        return new Assertion(token.getSubject(), token.getAcr(), amr, token.getAuth_time());
    }

    /**
     * Each claim of the JSON type OpenID Connect Core §2 gives it, as the bridge signs it: Jackson would read
     * {@code "exp": "1800000300"} as a number and {@code "acr": 2} as text, and so accept what no conforming issuer
     * sends.
     */
    private static void checkTypes(JsonNode claims) throws HandoffException {
        if (!claims.isObject()) {
            throw HandoffException.rejected("id_token claims are not a JSON object");
        }
        for (String name : NUMERIC_CLAIMS) {
            JsonNode value = claims.get(name);
            if (value != null && !value.isNumber()) {
                throw HandoffException.rejected("id_token " + name + " is not a number");
            }
        }
        for (String name : TEXT_CLAIMS) {
            JsonNode value = claims.get(name);
            if (value != null && !value.isTextual()) {
                throw HandoffException.rejected("id_token " + name + " is not a string");
            }
        }
        JsonNode aud = claims.get("aud");
        if (aud != null && !aud.isTextual() && !(aud.isArray() && allText(aud))) {
            throw HandoffException.rejected("id_token aud is not a string or an array of strings");
        }
    }

    private static boolean allText(JsonNode array) {
        for (JsonNode item : array) {
            if (!item.isTextual()) {
                return false;
            }
        }
        return true;
    }

    /** {@code typ} absent or {@code JWT} (what the bridge sets), and no {@code crit} extension we would ignore. */
    private static void checkHeader(JWSHeader header) throws HandoffException {
        if (header.getType() != null && !"JWT".equalsIgnoreCase(header.getType())) {
            throw HandoffException.rejected("id_token typ is not JWT");
        }
        if (header.getOtherClaims().containsKey("crit")) {
            throw HandoffException.rejected("id_token has a crit header");
        }
    }

    /** The key named by {@code kid}; on a miss the key set is fetched again once (key rotation). */
    private KeyWrapper findKey(String kid, Algorithm alg, KeySource keys)
            throws HandoffException, BridgeUnavailableException {
        KeyWrapper key = select(keys.keys(false), kid, alg);
        if (key == null) {
            key = select(keys.keys(true), kid, alg);
        }
        if (key == null) {
            throw HandoffException.rejected("no " + alg + " key in the bridge's JWKS for kid "
                    + Handoff.printable(kid));
        }
        return key;
    }

    /** The key named {@code kid}, if exactly one of that kid fits {@code alg}. */
    static KeyWrapper select(JSONWebKeySet keySet, String kid, Algorithm alg) {
        List<KeyWrapper> fitting = new ArrayList<>();
        for (KeyWrapper key : JWKSUtils.getKeyWrappersForUse(keySet, JWK.Use.SIG, true).getKeys()) {
            if (kid.equals(key.getKid()) && fits(key, alg)) {
                fitting.add(key);
            }
        }
        if (fitting.size() != 1) {
            return null;
        }
        KeyWrapper key = fitting.get(0).cloneKey();
        key.setAlgorithm(alg.name());
        return key;
    }

    private static boolean fits(KeyWrapper key, Algorithm alg) {
        if (key.getAlgorithm() != null && !key.getAlgorithm().equals(alg.name())) {
            return false;
        }
        if (alg == Algorithm.ES256) {
            return KeyType.EC.equals(key.getType()) && "P-256".equals(key.getCurve());
        }
        return KeyType.RSA.equals(key.getType());
    }

    private static void checkSignature(JWSInput jws, Algorithm alg, KeyWrapper key) throws HandoffException {
        SignatureVerifierContext verifier = alg == Algorithm.ES256
                ? new ECDSASignatureVerifierContext(key)
                : new AsymmetricSignatureVerifierContext(key);
        boolean valid;
        try {
            byte[] signed = jws.getEncodedSignatureInput().getBytes(StandardCharsets.US_ASCII);
            valid = verifier.verify(signed, jws.getSignature());
        } catch (VerificationException | RuntimeException e) {
            valid = false;
        }
        if (!valid) {
            throw HandoffException.rejected("id_token signature is invalid");
        }
    }

    private void checkClaims(IDToken token, Expected expected) throws HandoffException {
        long now = clock.instant().getEpochSecond();
        if (!expected.issuer.equals(token.getIssuer())) {
            throw HandoffException.rejected("id_token iss does not match the bridge issuer");
        }
        if (!token.hasAudience(expected.clientId)) {
            throw HandoffException.rejected("id_token aud does not contain the client id");
        }
        if (token.getAudience().length != 1) {
            throw HandoffException.rejected("id_token has audiences besides the client id");
        }
        if (token.getIssuedFor() != null && !expected.clientId.equals(token.getIssuedFor())) {
            throw HandoffException.rejected("id_token azp does not name the client id");
        }
        // RFC 7519 §4.1.4: now must be before exp (plus the leeway). The Python client (joserfc) still
        // accepts at exactly exp + leeway: one second apart, the stricter reading here.
        if (token.getExp() == null || now >= token.getExp() + LEEWAY_SECONDS) {
            throw HandoffException.rejected("id_token is expired");
        }
        if (token.getNbf() != null && token.getNbf() > now + LEEWAY_SECONDS) {  // §4.1.5, optional
            throw HandoffException.rejected("id_token is not valid yet (nbf)");
        }
        if (token.getIat() == null) {
            throw HandoffException.rejected("id_token has no iat");
        }
        if (token.getIat() > now + LEEWAY_SECONDS) {
            throw HandoffException.rejected("id_token iat is in the future");
        }
        if (token.getIat() < now - MAX_LIFETIME_SECONDS - LEEWAY_SECONDS) {
            throw HandoffException.rejected("id_token iat is too old");
        }
        if (token.getExp() - token.getIat() > MAX_LIFETIME_SECONDS + LEEWAY_SECONDS) {
            throw HandoffException.rejected("id_token lives longer than " + MAX_LIFETIME_SECONDS + " s");
        }
        if (expected.nonce == null || !expected.nonce.equals(token.getNonce())) {
            throw HandoffException.rejected("id_token nonce does not match");
        }
        if (expected.subject == null || !expected.subject.equals(token.getSubject())) {
            throw HandoffException.rejected("id_token sub is not the Keycloak user");
        }
    }

    /** {@code amr} is a JSON array of strings (OpenID Connect Core §2), as the Python client requires. */
    private static List<String> amr(JsonNode claims) throws HandoffException {
        JsonNode claim = claims.path("amr");
        List<String> values = new ArrayList<>();
        if (claim.isMissingNode()) {
            return values;
        }
        if (!claim.isArray()) {
            throw HandoffException.rejected("id_token amr is not an array of strings");
        }
        for (JsonNode value : claim) {
            if (!value.isTextual()) {
                throw HandoffException.rejected("id_token amr is not an array of strings");
            }
            values.add(value.asText());
        }
        return values;
    }
}
