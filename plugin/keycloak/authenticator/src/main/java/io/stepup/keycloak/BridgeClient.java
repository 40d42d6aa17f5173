package io.stepup.keycloak;

import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Duration;
import java.util.Base64;
import java.util.Map;
import java.util.StringJoiner;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import com.fasterxml.jackson.databind.JsonNode;
import org.keycloak.jose.jwk.JSONWebKeySet;
import org.keycloak.util.JsonSerialization;

/**
 * The back channel to the bridge: discovery, pushed authorization requests (RFC 9126), the token endpoint and the
 * JWKS, with {@code java.net.http.HttpClient}. Thread-safe; one instance is shared by all logins and caches the
 * discovery documents and key sets. Never logs or puts codes, tokens, verifiers or secrets in exception messages.
 */
public class BridgeClient {

    /** How long a discovery document is reused. */
    static final Duration DISCOVERY_TTL = Duration.ofMinutes(5);
    /** How long a key set is reused (an unknown {@code kid} refetches it earlier). */
    static final Duration JWKS_TTL = Duration.ofMinutes(10);

    private static final String FORM = "application/x-www-form-urlencoded";
    private static final String USER_AGENT = "stepup-keycloak-authenticator";

    private final ConcurrentMap<Duration, HttpClient> clients = new ConcurrentHashMap<>();
    private final TtlCache<String, Discovery> discoveries;
    private final TtlCache<URI, JSONWebKeySet> keySets;

    public BridgeClient(Clock clock) {
        this.discoveries = new TtlCache<>(DISCOVERY_TTL, clock);
        this.keySets = new TtlCache<>(JWKS_TTL, clock);
    }

    /** The answer to a pushed authorization request (RFC 9126 §2.2). */
    public static final class PushedRequest {
        private final String requestUri;
        private final long expiresIn;

        PushedRequest(String requestUri, long expiresIn) {
            this.requestUri = requestUri;
            this.expiresIn = expiresIn;
        }

        public String requestUri() {
            return requestUri;
        }

        public long expiresIn() {
            return expiresIn;
        }
    }

    /** The bridge's metadata from {@code {issuer}/.well-known/openid-configuration}, cached per issuer. */
    public Discovery discovery(StepupConfig config) throws BridgeUnavailableException, HandoffException {
        Discovery cached = discoveries.get(config.issuer());
        if (cached != null) {
            return cached;
        }
        String base = config.issuer().endsWith("/")
                ? config.issuer().substring(0, config.issuer().length() - 1) : config.issuer();
        URI uri = URI.create(base + "/.well-known/openid-configuration");
        HttpRequest request = get(config, uri);
        Discovery discovery = Discovery.parse(expectOk("discovery", send(config, request, "discovery")),
                config.issuer());
        discoveries.put(config.issuer(), discovery);
        return discovery;
    }

    /** POSTs the authorization request parameters to the PAR endpoint, authenticated with client_secret_basic. */
    public PushedRequest pushAuthorizationRequest(StepupConfig config, Discovery discovery, Map<String, String> params)
            throws BridgeUnavailableException, HandoffException {
        HttpRequest request = post(config, discovery.parEndpoint(), params);
        JsonNode body = expectOk("pushed authorization request", send(config, request, "pushed authorization request"));
        String requestUri = body.path("request_uri").asText(null);
        if (requestUri == null || requestUri.isBlank()) {
            throw HandoffException.rejected("pushed authorization response has no request_uri");
        }
        return new PushedRequest(requestUri, body.path("expires_in").asLong(0));
    }

    /**
     * Redeems an authorization code (RFC 6749 §4.1.3 with the PKCE verifier, RFC 7636 §4.5).
     *
     * @return the compact-serialized id_token, not yet verified
     */
    public String redeemCode(StepupConfig config, Discovery discovery, String code, String redirectUri,
                             String codeVerifier) throws BridgeUnavailableException, HandoffException {
        Map<String, String> form = Map.of(
                "grant_type", "authorization_code",
                "code", code,
                "redirect_uri", redirectUri,
                "code_verifier", codeVerifier);
        HttpRequest request = post(config, discovery.tokenEndpoint(), form);
        JsonNode body = expectOk("token request", send(config, request, "token request"));
        String idToken = body.path("id_token").asText(null);
        if (idToken == null || idToken.isBlank()) {
            throw HandoffException.rejected("token response has no id_token");
        }
        return idToken;
    }

    /**
     * The bridge's signing keys, cached per URL.
     *
     * @param refresh bypass the cache (used once when an id_token names an unknown {@code kid})
     */
    public JSONWebKeySet keys(StepupConfig config, URI jwksUri, boolean refresh)
            throws BridgeUnavailableException, HandoffException {
        JSONWebKeySet cached = refresh ? null : keySets.get(jwksUri);
        if (cached != null) {
            return cached;
        }
        JsonNode body = expectOk("JWKS", send(config, get(config, jwksUri), "JWKS"));
        JSONWebKeySet keySet;
        try {
            keySet = JsonSerialization.mapper.treeToValue(body, JSONWebKeySet.class);
        } catch (IOException | IllegalArgumentException e) {
            throw HandoffException.rejected("JWKS is not a valid key set");
        }
        if (keySet == null || keySet.getKeys() == null) {
            throw HandoffException.rejected("JWKS has no keys");
        }
        keySets.put(jwksUri, keySet);
        return keySet;
    }

    /** application/x-www-form-urlencoded, the encoding of RFC 6749 Appendix B, spaces as %20. */
    static String formEncode(String value) {
        return URLEncoder.encode(value, StandardCharsets.UTF_8).replace("+", "%20");
    }

    /** client_secret_basic: id and secret form-encoded before Base64 (RFC 6749 §2.3.1). */
    static String basicAuthorization(String clientId, String clientSecret) {
        String pair = formEncode(clientId) + ":" + formEncode(clientSecret);
        return "Basic " + Base64.getEncoder().encodeToString(pair.getBytes(StandardCharsets.UTF_8));
    }

    static String formBody(Map<String, String> params) {
        StringJoiner body = new StringJoiner("&");
        params.forEach((name, value) -> body.add(formEncode(name) + "=" + formEncode(value)));
        return body.toString();
    }

    private HttpRequest get(StepupConfig config, URI uri) {
        return HttpRequest.newBuilder(uri)
                .timeout(config.readTimeout())
                .header("Accept", "application/json")
                .header("User-Agent", USER_AGENT)
                .GET()
                .build();
    }

    private HttpRequest post(StepupConfig config, URI uri, Map<String, String> form) {
        return HttpRequest.newBuilder(uri)
                .timeout(config.readTimeout())
                .header("Accept", "application/json")
                .header("User-Agent", USER_AGENT)
                .header("Content-Type", FORM)
                .header("Authorization", basicAuthorization(config.clientId(), config.clientSecret()))
                .POST(HttpRequest.BodyPublishers.ofString(formBody(form), StandardCharsets.UTF_8))
                .build();
    }

    /** Sends with an overall deadline of the read timeout; network trouble and 5xx are "unavailable". */
    private HttpResponse<byte[]> send(StepupConfig config, HttpRequest request, String what)
            throws BridgeUnavailableException {
        HttpClient client = clients.computeIfAbsent(config.connectTimeout(), timeout -> HttpClient.newBuilder()
                .connectTimeout(timeout)
                .followRedirects(HttpClient.Redirect.NEVER)
                .build());
        HttpResponse<byte[]> response;
        var future = client.sendAsync(request, HttpResponse.BodyHandlers.ofByteArray());
        try {
            response = future.get(config.readTimeout().toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            future.cancel(true);
            Thread.currentThread().interrupt();
            throw new BridgeUnavailableException(what + " interrupted", e);
        } catch (TimeoutException e) {
            future.cancel(true);
            throw new BridgeUnavailableException(what + " timed out after " + config.readTimeout().toMillis() + " ms");
        } catch (ExecutionException e) {
            Throwable cause = e.getCause() == null ? e : e.getCause();
            throw new BridgeUnavailableException(what + " failed: " + cause.getClass().getSimpleName()
                    + (cause.getMessage() == null ? "" : ": " + cause.getMessage()), cause);
        }
        if (response.statusCode() >= 500) {
            throw new BridgeUnavailableException(what + " answered HTTP " + response.statusCode());
        }
        return response;
    }

    /** 2xx with a JSON object body, or a {@link HandoffException} naming the OAuth {@code error} code. */
    private static JsonNode expectOk(String what, HttpResponse<byte[]> response) throws HandoffException {
        JsonNode body;
        try {
            body = JsonSerialization.mapper.readTree(response.body());
        } catch (IOException e) {
            body = null;
        }
        int status = response.statusCode();
        if (status < 200 || status > 299) {
            String error = body == null ? null : body.path("error").asText(null);
            throw HandoffException.rejected(what + " refused: HTTP " + status + (error == null ? "" : " " + error));
        }
        if (body == null || !body.isObject()) {
            throw HandoffException.rejected(what + " answer is not a JSON object");
        }
        return body;
    }
}
