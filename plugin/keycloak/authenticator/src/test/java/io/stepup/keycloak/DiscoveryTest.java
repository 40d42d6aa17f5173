package io.stepup.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;
import org.keycloak.util.JsonSerialization;

import com.fasterxml.jackson.databind.JsonNode;

/** The secret, the code and the PKCE verifier go to the discovered endpoints: https only. */
class DiscoveryTest {

    static final String ISSUER = "https://mfa.example.com";

    static JsonNode doc(String tokenEndpoint) throws Exception {
        return JsonSerialization.mapper.readTree("{\"issuer\":\"" + ISSUER + "\","
                + "\"authorization_endpoint\":\"" + ISSUER + "/authorize\","
                + "\"token_endpoint\":\"" + tokenEndpoint + "\","
                + "\"pushed_authorization_request_endpoint\":\"" + ISSUER + "/par\","
                + "\"jwks_uri\":\"" + ISSUER + "/jwks\"}");
    }

    @Test
    void httpsEndpointsAreAccepted() throws Exception {
        assertEquals(ISSUER + "/token", Discovery.parse(doc(ISSUER + "/token"), ISSUER).tokenEndpoint().toString());
    }

    @Test
    void plainHttpEndpointOnAnotherHostIsRefused() throws Exception {
        JsonNode doc = doc("http://mfa.example.com/token");
        HandoffException e = assertThrows(HandoffException.class, () -> Discovery.parse(doc, ISSUER));
        assertEquals("discovery token_endpoint is not https (http only on localhost)", e.getMessage());
    }

    @Test
    void plainHttpOnLoopbackIsAllowedForLocalTesting() throws Exception {
        assertEquals("http://127.0.0.1:5000/token",
                Discovery.parse(doc("http://127.0.0.1:5000/token"), ISSUER).tokenEndpoint().toString());
    }

    @Test
    void issuerOfAnotherServerIsMadePrintableBeforeItIsLogged() throws Exception {
        JsonNode doc = JsonSerialization.mapper.readTree("{\"issuer\":\"https://evil\\r\\nINFO forged\"}");
        HandoffException e = assertThrows(HandoffException.class, () -> Discovery.parse(doc, ISSUER));
        assertEquals("discovery issuer https://evil??INFO forged does not match configured " + ISSUER, e.getMessage());
    }
}
