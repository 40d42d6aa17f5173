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
        return doc(ISSUER, tokenEndpoint);
    }

    static JsonNode doc(String issuer, String tokenEndpoint) throws Exception {
        return JsonSerialization.mapper.readTree("{\"issuer\":\"" + issuer + "\","
                + "\"authorization_endpoint\":\"" + issuer + "/authorize\","
                + "\"token_endpoint\":\"" + tokenEndpoint + "\","
                + "\"pushed_authorization_request_endpoint\":\"" + issuer + "/par\","
                + "\"jwks_uri\":\"" + issuer + "/jwks\"}");
    }

    @Test
    void httpsEndpointsAreAccepted() throws Exception {
        assertEquals(ISSUER + "/token", Discovery.parse(doc(ISSUER + "/token"), ISSUER).tokenEndpoint().toString());
    }

    @Test
    void plainHttpEndpointOnAnotherHostIsRefused() throws Exception {
        JsonNode doc = doc("http://mfa.example.com/token");
        HandoffException e = assertThrows(HandoffException.class, () -> Discovery.parse(doc, ISSUER));
        assertEquals("discovery token_endpoint is not https (http only on localhost, for a bridge on localhost)",
                e.getMessage());
    }

    @Test
    void plainHttpOnLoopbackIsRefusedForAnHttpsBridge() throws Exception {
        // The secret, the code and the verifier would go in clear to whatever listens there.
        JsonNode doc = doc("http://127.0.0.1:5000/token");
        HandoffException e = assertThrows(HandoffException.class, () -> Discovery.parse(doc, ISSUER));
        assertEquals("discovery token_endpoint is not https (http only on localhost, for a bridge on localhost)",
                e.getMessage());
    }

    @Test
    void plainHttpOnLoopbackIsAllowedForABridgeOnLoopback() throws Exception {
        String local = "http://127.0.0.1:5000";
        assertEquals(local + "/token", Discovery.parse(doc(local, local + "/token"), local).tokenEndpoint().toString());
    }

    @Test
    void anEndpointWithAFragmentIsRefused() throws Exception {
        JsonNode doc = doc(ISSUER + "/token#x");
        HandoffException e = assertThrows(HandoffException.class, () -> Discovery.parse(doc, ISSUER));
        assertEquals("discovery token_endpoint has a fragment", e.getMessage());
    }

    @Test
    void aBridgeThatDoesNotTakeClientSecretBasicIsRefused() throws Exception {
        JsonNode doc = JsonSerialization.mapper.readTree("{\"issuer\":\"" + ISSUER + "\","
                + "\"token_endpoint_auth_methods_supported\":[\"private_key_jwt\"]}");
        HandoffException e = assertThrows(HandoffException.class, () -> Discovery.parse(doc, ISSUER));
        assertEquals("the bridge does not accept client_secret_basic", e.getMessage());
    }

    @Test
    void issuerOfAnotherServerIsMadePrintableBeforeItIsLogged() throws Exception {
        JsonNode doc = JsonSerialization.mapper.readTree("{\"issuer\":\"https://evil\\r\\nINFO forged\"}");
        HandoffException e = assertThrows(HandoffException.class, () -> Discovery.parse(doc, ISSUER));
        assertEquals("discovery issuer https://evil??INFO forged does not match configured " + ISSUER, e.getMessage());
    }
}
