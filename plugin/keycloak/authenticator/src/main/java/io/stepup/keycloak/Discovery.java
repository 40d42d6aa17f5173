package io.stepup.keycloak;

import java.net.URI;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * The parts of the bridge's OpenID Provider metadata (OpenID Connect Discovery 1.0 §3, RFC 9126 §5,
 * RFC 9207 §3) the hand-off uses.
 */
public final class Discovery {

    private final String issuer;
    private final URI authorizationEndpoint;
    private final URI tokenEndpoint;
    private final URI parEndpoint;
    private final URI jwksUri;
    private final boolean issParameterSupported;

    private Discovery(String issuer, URI authorization, URI token, URI par, URI jwks, boolean issSupported) {
        this.issuer = issuer;
        this.authorizationEndpoint = authorization;
        this.tokenEndpoint = token;
        this.parEndpoint = par;
        this.jwksUri = jwks;
        this.issParameterSupported = issSupported;
    }

    /**
     * Reads and checks a discovery document.
     *
     * @param expectedIssuer the configured issuer; the document's {@code issuer} must equal it exactly (§4.3)
     * @throws HandoffException when the document is unusable
     */
    static Discovery parse(JsonNode doc, String expectedIssuer) throws HandoffException {
        String issuer = doc.path("issuer").asText(null);
        if (!expectedIssuer.equals(issuer)) {
            throw HandoffException.rejected("discovery issuer " + (issuer == null ? null : Handoff.printable(issuer))
                    + " does not match configured " + expectedIssuer);
        }
        JsonNode methods = doc.path("token_endpoint_auth_methods_supported");
        if (methods.isArray() && !containsText(methods, "client_secret_basic")) {
            throw HandoffException.rejected("the bridge does not accept client_secret_basic");
        }
        // Plain http only when the configured issuer is itself on this machine (local testing),
        // as the Python client rules: a bridge elsewhere that names http://127.0.0.1 would have
        // Keycloak send the secret, the code and the verifier in clear to whatever listens there.
        boolean plainAllowed = StepupConfig.loopback(URI.create(expectedIssuer));
        return new Discovery(issuer,
                endpoint(doc, "authorization_endpoint", plainAllowed),
                endpoint(doc, "token_endpoint", plainAllowed),
                endpoint(doc, "pushed_authorization_request_endpoint", plainAllowed),
                endpoint(doc, "jwks_uri", plainAllowed),
                doc.path("authorization_response_iss_parameter_supported").asBoolean(false));
    }

    private static URI endpoint(JsonNode doc, String name, boolean plainAllowed) throws HandoffException {
        String value = doc.path(name).asText(null);
        if (value == null || value.isBlank()) {
            throw HandoffException.rejected("discovery document has no " + name);
        }
        URI uri;
        try {
            uri = URI.create(value);
        } catch (IllegalArgumentException e) {
            throw HandoffException.rejected("discovery " + name + " is not a valid URL");
        }
        boolean https = "https".equalsIgnoreCase(uri.getScheme());
        if (uri.getHost() == null || !StepupConfig.secureOrLoopback(uri) || !(https || plainAllowed)) {
            // The client secret, the code and the PKCE verifier travel to these endpoints.
            throw HandoffException.rejected("discovery " + name
                    + " is not https (http only on localhost, for a bridge on localhost)");
        }
        if (uri.getRawFragment() != null) {
            // The query this client appends would end up inside the fragment.
            throw HandoffException.rejected("discovery " + name + " has a fragment");
        }
        return uri;
    }

    private static boolean containsText(JsonNode array, String value) {
        for (JsonNode item : array) {
            if (item.isTextual() && item.asText().equals(value)) {
                return true;
            }
        }
        return false;
    }

    public String issuer() {
        return issuer;
    }

    public URI authorizationEndpoint() {
        return authorizationEndpoint;
    }

    public URI tokenEndpoint() {
        return tokenEndpoint;
    }

    public URI parEndpoint() {
        return parEndpoint;
    }

    public URI jwksUri() {
        return jwksUri;
    }

    /** RFC 9207: when true, an authorization response without {@code iss} is refused. */
    public boolean issParameterSupported() {
        return issParameterSupported;
    }
}
