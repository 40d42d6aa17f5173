package io.stepup.keycloak;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.StringJoiner;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Flow;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import com.fasterxml.jackson.databind.JsonNode;
import org.keycloak.jose.jwk.JSONWebKeySet;
import org.keycloak.jose.jwk.JWK;
import org.keycloak.util.JWKSUtils;
import org.keycloak.util.JsonSerialization;

/**
 * The back channel to the bridge: discovery, pushed authorization requests (RFC 9126), the token endpoint and the
 * JWKS, with {@code java.net.http.HttpClient}. Thread-safe; one instance is shared by all logins and caches the
 * discovery documents and key sets. Never logs or puts codes, tokens, verifiers or secrets in exception messages.
 */
public class BridgeClient {

    /** How long a discovery document is reused. */
    static final Duration DISCOVERY_TTL = Duration.ofMinutes(5);
    /**
     * How long a key set is reused (an unknown {@code kid} refetches it earlier): no longer than the bridge's JWKS
     * max-age (300 s), for which it publishes a new key before signing with it.
     */
    static final Duration JWKS_TTL = Duration.ofMinutes(5);
    /** An unknown {@code kid} refetches a key set at most this often: forged kids cannot make every login a fetch. */
    static final Duration JWKS_REFRESH_INTERVAL = Duration.ofSeconds(30);
    /** How long a timed-out discovery or JWKS fetch is remembered: logins meanwhile fail at once, not after a wait. */
    static final Duration FAILURE_TTL = Duration.ofSeconds(10);
    /** Largest discovery document or key set read (the bridge's are under 2 KiB); a larger one is refused. */
    static final int MAX_METADATA_BYTES = 64 * 1024;
    /** Largest PAR or token answer read; a larger one is refused. */
    static final int MAX_ANSWER_BYTES = 16 * 1024;

    private static final String FORM = "application/x-www-form-urlencoded";
    private static final String USER_AGENT = "stepup-keycloak-authenticator";

    private final ConcurrentMap<Duration, HttpClient> clients = new ConcurrentHashMap<>();
    private final TtlCache<String, Discovery> discoveries;
    private final TtlCache<URI, JSONWebKeySet> keySets;
    private final TtlCache<URI, Boolean> keyRefreshes;
    /** The key set fetch in flight per URL, which concurrent logins join. */
    private final ConcurrentMap<URI, CompletableFuture<JSONWebKeySet>> keyFetches = new ConcurrentHashMap<>();
    private final TtlCache<String, String> timeouts;

    public BridgeClient(Clock clock) {
        this.discoveries = new TtlCache<>(DISCOVERY_TTL, clock);
        this.keySets = new TtlCache<>(JWKS_TTL, clock);
        this.keyRefreshes = new TtlCache<>(JWKS_REFRESH_INTERVAL, clock);
        this.timeouts = new TtlCache<>(FAILURE_TTL, clock);
    }

    /** A back-channel fetch whose timeout is remembered for {@link #FAILURE_TTL}. */
    @FunctionalInterface
    private interface Fetch<T> {
        T get() throws BridgeUnavailableException, HandoffException;
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
        Discovery discovery = remembered(config, "discovery " + config.issuer(), () -> Discovery.parse(
                expectOk("discovery", send(config, get(config, uri), "discovery", MAX_METADATA_BYTES), 200),
                config.issuer()));
        discoveries.put(config.issuer(), discovery);
        return discovery;
    }

    /** POSTs the authorization request parameters to the PAR endpoint, authenticated with client_secret_basic. */
    public PushedRequest pushAuthorizationRequest(StepupConfig config, Discovery discovery, Map<String, String> params)
            throws BridgeUnavailableException, HandoffException {
        HttpRequest request = post(config, discovery.parEndpoint(), params);
        // RFC 9126 §2.2: 201 Created, a request_uri and a positive expires_in.
        JsonNode body = expectOk("pushed authorization request",
                send(config, request, "pushed authorization request", MAX_ANSWER_BYTES), 201);
        JsonNode requestUri = body.path("request_uri");
        if (!requestUri.isTextual() || requestUri.asText().isBlank()) {
            throw HandoffException.rejected("pushed authorization response has no request_uri");
        }
        JsonNode expiresIn = body.path("expires_in");
        if (!expiresIn.isIntegralNumber() || expiresIn.asLong() <= 0) {
            throw HandoffException.rejected("pushed authorization response has no valid expires_in");
        }
        return new PushedRequest(requestUri.asText(), expiresIn.asLong());
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
        JsonNode body = expectOk("token request", send(config, request, "token request", MAX_ANSWER_BYTES), 200);
        String idToken = body.path("id_token").asText(null);
        if (idToken == null || idToken.isBlank()) {
            throw HandoffException.rejected("token response has no id_token");
        }
        return idToken;
    }

    /**
     * The bridge's signing keys, cached per URL. One fetch per URL at a time: a login that needs the keys while
     * another's fetch is in flight waits for that fetch, so logins that meet a rotated key together all get the new
     * set, not the cached one the first login's refetch is replacing.
     *
     * @param refresh fetch again (an id_token names an unknown {@code kid}), unless that was done less than
     *                {@link #JWKS_REFRESH_INTERVAL} ago
     */
    public JSONWebKeySet keys(StepupConfig config, URI jwksUri, boolean refresh)
            throws BridgeUnavailableException, HandoffException {
        JSONWebKeySet cached = keySets.get(jwksUri);
        if (cached != null && !refresh) {
            return cached;
        }
        CompletableFuture<JSONWebKeySet> mine = new CompletableFuture<>();
        CompletableFuture<JSONWebKeySet> running = keyFetches.putIfAbsent(jwksUri, mine);
        if (running != null) {
            return joined(config, running);
        }
        try {
            // Read again now that no fetch is in flight: one that just ended has stored its set.
            JSONWebKeySet current = keySets.get(jwksUri);
            JSONWebKeySet keySet;
            if (current != null && (!refresh || !keyRefreshes.putIfAbsent(jwksUri, Boolean.TRUE))) {
                keySet = current;
            } else {
                keySet = remembered(config, "JWKS " + jwksUri, () -> parseKeys(
                        expectOk("JWKS", send(config, get(config, jwksUri), "JWKS", MAX_METADATA_BYTES), 200)));
                keySets.put(jwksUri, keySet);
            }
            mine.complete(keySet);
            return keySet;
        } catch (BridgeUnavailableException | HandoffException | RuntimeException e) {
            mine.completeExceptionally(e);
            throw e;
        } finally {
            keyFetches.remove(jwksUri, mine);
        }
    }

    /** The outcome of another login's key set fetch, waited for at most this step's read timeout. */
    private static JSONWebKeySet joined(StepupConfig config, CompletableFuture<JSONWebKeySet> fetch)
            throws BridgeUnavailableException, HandoffException {
        try {
            return fetch.get(config.readTimeout().toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new BridgeUnavailableException("JWKS interrupted", e);
        } catch (TimeoutException e) {
            throw new BridgeUnavailableException("JWKS timed out after " + config.readTimeout().toMillis() + " ms",
                    e);
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof BridgeUnavailableException unavailable) {
                throw unavailable;
            }
            if (cause instanceof HandoffException rejected) {
                throw rejected;
            }
            throw (RuntimeException) cause;
        }
    }

    /**
     * The bridge's signature keys that this client can read. An entry it cannot (not a JSON object, a member of the
     * wrong JSON type, a key that does not convert, one for encryption) is skipped, as RFC 7517 §5 asks and the
     * Python client does: one odd entry must not fail every login while the bridge's own key is there. Refused when
     * none is left.
     */
    static JSONWebKeySet parseKeys(JsonNode body) throws HandoffException {
        JsonNode entries = body.path("keys");
        if (!entries.isArray()) {
            throw HandoffException.rejected("JWKS has no keys");
        }
        List<JWK> usable = new ArrayList<>();
        for (JsonNode entry : entries) {
            JWK key = readable(entry);
            if (key != null) {
                usable.add(key);
            }
        }
        if (usable.isEmpty()) {
            throw HandoffException.rejected("JWKS holds no usable key");
        }
        JSONWebKeySet keySet = new JSONWebKeySet();
        keySet.setKeys(usable.toArray(JWK[]::new));
        return keySet;
    }

    /** {@code entry} as a signature key keycloak-core can convert, or {@code null}. */
    private static JWK readable(JsonNode entry) {
        if (!entry.isObject()) {
            return null;
        }
        try {
            JWK key = JsonSerialization.mapper.treeToValue(entry, JWK.class);
            JSONWebKeySet alone = new JSONWebKeySet();
            alone.setKeys(new JWK[] {key});
            // Throws on some keys it cannot convert, leaves others out (a point off the curve, use "enc").
            return JWKSUtils.getKeyWrappersForUse(alone, JWK.Use.SIG, true).getKeys().isEmpty() ? null : key;
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    /**
     * Runs {@code fetch}, unless it timed out less than {@link #FAILURE_TTL} ago: then the bridge is unavailable at
     * once. Only timeouts are remembered: other failures are quick, and a bridge back up is used at once. A timeout
     * is remembered for the timeouts it ran under: a step configured with shorter ones (another flow's, another
     * realm's) must not make every login with longer ones fail without asking the bridge.
     */
    private <T> T remembered(StepupConfig config, String what, Fetch<T> fetch)
            throws BridgeUnavailableException, HandoffException {
        String key = what + " within " + config.connectTimeout().toMillis() + "/" + config.readTimeout().toMillis()
                + " ms";
        String timedOut = timeouts.get(key);
        if (timedOut != null) {
            throw new BridgeUnavailableException("recently timed out: " + timedOut);
        }
        try {
            return fetch.get();
        } catch (TimedOutException e) {
            timeouts.put(key, e.getMessage());
            throw e;
        }
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

    /**
     * Sends with an overall deadline of the read timeout; network trouble and 5xx are "unavailable", an answer
     * longer than {@code limit} bytes is refused (and read no further).
     */
    private HttpResponse<byte[]> send(StepupConfig config, HttpRequest request, String what, int limit)
            throws BridgeUnavailableException, HandoffException {
        HttpClient client = clients.computeIfAbsent(config.connectTimeout(), timeout -> HttpClient.newBuilder()
                .connectTimeout(timeout)
                .followRedirects(HttpClient.Redirect.NEVER)
                .build());
        HttpResponse<byte[]> response;
        var future = client.sendAsync(request, info -> info.statusCode() >= 500
                ? HttpResponse.BodySubscribers.replacing(new byte[0]) : new LimitedBody(limit));
        try {
            response = future.get(config.readTimeout().toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            future.cancel(true);
            Thread.currentThread().interrupt();
            throw new BridgeUnavailableException(what + " interrupted", e);
        } catch (TimeoutException e) {
            future.cancel(true);
            throw new TimedOutException(what + " timed out after " + config.readTimeout().toMillis() + " ms", e);
        } catch (ExecutionException e) {
            for (Throwable c = e; c != null; c = c.getCause()) {
                if (c instanceof TooLargeException) {
                    throw HandoffException.rejected(what + " answer is larger than " + limit + " bytes");
                }
            }
            Throwable cause = e.getCause() == null ? e : e.getCause();
            String message = what + " failed: " + cause.getClass().getSimpleName()
                    + (cause.getMessage() == null ? "" : ": " + cause.getMessage());
            throw cause instanceof HttpTimeoutException  // connect timeout included
                    ? new TimedOutException(message, cause) : new BridgeUnavailableException(message, cause);
        }
        if (response.statusCode() >= 500) {
            throw new BridgeUnavailableException(what + " answered HTTP " + response.statusCode());
        }
        return response;
    }

    /**
     * The {@code expected} status (RFC 6749 §5.1: 200; RFC 9126 §2.2: 201) with a JSON object body, or a
     * {@link HandoffException} naming the OAuth {@code error} code.
     */
    private static JsonNode expectOk(String what, HttpResponse<byte[]> response, int expected)
            throws HandoffException {
        JsonNode body;
        try {
            body = JsonSerialization.mapper.readTree(response.body());
        } catch (IOException e) {
            body = null;
        }
        int status = response.statusCode();
        if (status < 200 || status > 299) {
            JsonNode error = body == null ? null : body.path("error");
            throw HandoffException.rejected(what + " refused: HTTP " + status
                    + (error != null && error.isTextual() ? " " + Handoff.printable(error.asText()) : ""));
        }
        if (status != expected) {
            throw HandoffException.rejected(what + " answered HTTP " + status + ", not " + expected);
        }
        if (body == null || !body.isObject()) {
            throw HandoffException.rejected(what + " answer is not a JSON object");
        }
        return body;
    }

    /** The bridge did not answer in time: the slow kind of unavailable, remembered for {@link #FAILURE_TTL}. */
    private static final class TimedOutException extends BridgeUnavailableException {
        private static final long serialVersionUID = 1L;

        TimedOutException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** A response body too long to read. */
    private static final class TooLargeException extends IOException {
        private static final long serialVersionUID = 1L;
    }

    /** Collects a body of at most {@code limit} bytes; at the first byte over, stops reading and fails. */
    private static final class LimitedBody implements HttpResponse.BodySubscriber<byte[]> {
        private final int limit;
        private final ByteArrayOutputStream body = new ByteArrayOutputStream();
        private final CompletableFuture<byte[]> result = new CompletableFuture<>();
        private Flow.Subscription subscription;

        LimitedBody(int limit) {
            this.limit = limit;
        }

        @Override
        public CompletionStage<byte[]> getBody() {
            return result;
        }

        @Override
        public void onSubscribe(Flow.Subscription subscription) {
            this.subscription = subscription;
            subscription.request(Long.MAX_VALUE);
        }

        @Override
        public void onNext(List<ByteBuffer> buffers) {
            for (ByteBuffer buffer : buffers) {
                if (result.isDone()) {
                    return;
                }
                if (buffer.remaining() > limit - body.size()) {
                    subscription.cancel();
                    result.completeExceptionally(new TooLargeException());
                    return;
                }
                byte[] chunk = new byte[buffer.remaining()];
                buffer.get(chunk);
                body.writeBytes(chunk);
            }
        }

        @Override
        public void onError(Throwable error) {
            result.completeExceptionally(error);
        }

        @Override
        public void onComplete() {
            result.complete(body.toByteArray());
        }
    }
}
