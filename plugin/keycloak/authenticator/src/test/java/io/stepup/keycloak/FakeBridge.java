package io.stepup.keycloak;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

/**
 * A stand-in for the bridge's back channel on 127.0.0.1: discovery, PAR, token and JWKS endpoints that record what
 * they receive and answer what the test sets.
 */
final class FakeBridge implements AutoCloseable {

    /** One request as the fake received it. */
    static final class Received {
        final String method;
        final String path;
        final String authorization;
        final String contentType;
        final Map<String, String> form;

        Received(String method, String path, String authorization, String contentType, Map<String, String> form) {
            this.method = method;
            this.path = path;
            this.authorization = authorization;
            this.contentType = contentType;
            this.form = form;
        }
    }

    static final String REQUEST_URI = "urn:ietf:params:oauth:request_uri:fake-123";

    private final HttpServer server;
    final List<Received> received = new CopyOnWriteArrayList<>();
    final AtomicInteger jwksHits = new AtomicInteger();
    final AtomicInteger discoveryHits = new AtomicInteger();

    volatile int parStatus = 201;
    volatile String parBody = "{\"request_uri\":\"" + REQUEST_URI + "\",\"expires_in\":60}";
    volatile int tokenStatus = 200;
    volatile Supplier<String> idToken = () -> "not-set";
    volatile Supplier<String> jwks = () -> "{\"keys\":[]}";
    volatile int jwksStatus = 200;
    volatile int discoveryStatus = 200;
    /** How long discovery and the JWKS keep the client waiting before they answer. */
    volatile long discoveryStallMs = 0;
    volatile long jwksStallMs = 0;
    private final ExecutorService executor = Executors.newCachedThreadPool();
    volatile boolean issParameterSupported = true;

    FakeBridge() throws IOException {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/.well-known/openid-configuration", exchange -> {
            discoveryHits.incrementAndGet();
            stall(discoveryStallMs);
            answer(exchange, discoveryStatus, discovery());
        });
        server.createContext("/par", exchange -> {
            record(exchange);
            answer(exchange, parStatus, parBody);
        });
        server.createContext("/token", exchange -> {
            record(exchange);
            String body = tokenStatus == 200
                    ? "{\"access_token\":\"at\",\"token_type\":\"Bearer\",\"id_token\":\"" + idToken.get() + "\"}"
                    : "{\"error\":\"invalid_grant\"}";
            answer(exchange, tokenStatus, body);
        });
        server.createContext("/jwks", exchange -> {
            jwksHits.incrementAndGet();
            stall(jwksStallMs);
            answer(exchange, jwksStatus, jwks.get());
        });
        server.setExecutor(executor);  // a stalled answer does not hold up the others
        server.start();
    }

    String issuer() {
        return "http://127.0.0.1:" + server.getAddress().getPort();
    }

    private String discovery() {
        String issuer = issuer();
        return "{\"issuer\":\"" + issuer + "\","
                + "\"authorization_endpoint\":\"" + issuer + "/authorize\","
                + "\"token_endpoint\":\"" + issuer + "/token\","
                + "\"pushed_authorization_request_endpoint\":\"" + issuer + "/par\","
                + "\"require_pushed_authorization_requests\":true,"
                + "\"authorization_response_iss_parameter_supported\":" + issParameterSupported + ","
                + "\"jwks_uri\":\"" + issuer + "/jwks\"}";
    }

    Received last(String path) {
        for (int i = received.size() - 1; i >= 0; i--) {
            if (received.get(i).path.equals(path)) {
                return received.get(i);
            }
        }
        throw new AssertionError("no request to " + path);
    }

    private void record(HttpExchange exchange) throws IOException {
        String body = new String(exchange.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
        received.add(new Received(exchange.getRequestMethod(), exchange.getRequestURI().getPath(),
                exchange.getRequestHeaders().getFirst("Authorization"),
                exchange.getRequestHeaders().getFirst("Content-Type"), parseForm(body)));
    }

    static Map<String, String> parseForm(String body) {
        Map<String, String> form = new LinkedHashMap<>();
        if (body.isEmpty()) {
            return form;
        }
        for (String pair : body.split("&")) {
            int eq = pair.indexOf('=');
            String name = URLDecoder.decode(pair.substring(0, eq), StandardCharsets.UTF_8);
            String value = URLDecoder.decode(pair.substring(eq + 1), StandardCharsets.UTF_8);
            if (form.put(name, value) != null) {
                throw new AssertionError("parameter sent twice: " + name);
            }
        }
        return form;
    }

    private static void stall(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void answer(HttpExchange exchange, int status, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().set("Content-Type", "application/json");
        exchange.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(bytes);
        }
    }

    @Override
    public void close() {
        server.stop(0);
        executor.shutdownNow();
    }
}
