package io.stepup.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;

import org.junit.jupiter.api.Test;

class StepupConfigTest {

    static Map<String, String> minimal() {
        Map<String, String> map = new HashMap<>();
        map.put(StepupConfig.ISSUER, "https://mfa.example.com");
        map.put(StepupConfig.CLIENT_ID, "keycloak");
        map.put(StepupConfig.CLIENT_SECRET, "s3cret");
        return map;
    }

    private static String rejection(Map<String, String> map) {
        return assertThrows(IllegalArgumentException.class, () -> StepupConfig.from(map)).getMessage();
    }

    @Test
    void minimalConfigGetsTheDocumentedDefaults() {
        StepupConfig config = StepupConfig.from(minimal());
        assertEquals("https://mfa.example.com", config.issuer());
        assertEquals("keycloak", config.clientId());
        assertEquals("s3cret", config.clientSecret());
        assertNull(config.acrValues());
        assertTrue(config.allowEnrollment());
        assertEquals(Duration.ofMillis(3000), config.connectTimeout());
        assertEquals(Duration.ofMillis(5000), config.readTimeout());
        assertEquals(StepupConfig.OnUnavailable.FAIL, config.onUnavailable());
    }

    @Test
    void everyOptionIsRead() {
        Map<String, String> map = minimal();
        map.put(StepupConfig.ACR_VALUES, "  urn:mfa  ");
        map.put(StepupConfig.ALLOW_ENROLLMENT, "FALSE");
        map.put(StepupConfig.CONNECT_TIMEOUT_MS, "1500");
        map.put(StepupConfig.READ_TIMEOUT_MS, "2500");
        map.put(StepupConfig.ON_BRIDGE_UNAVAILABLE, "skip");
        StepupConfig config = StepupConfig.from(map);
        assertEquals("urn:mfa", config.acrValues());
        assertFalse(config.allowEnrollment());
        assertEquals(Duration.ofMillis(1500), config.connectTimeout());
        assertEquals(Duration.ofMillis(2500), config.readTimeout());
        assertEquals(StepupConfig.OnUnavailable.SKIP, config.onUnavailable());
    }

    @Test
    void notConfiguredAtAllNamesTheRequiredKeys() {
        String message = assertThrows(IllegalArgumentException.class, () -> StepupConfig.from(null)).getMessage();
        assertTrue(message.contains(StepupConfig.ISSUER) && message.contains(StepupConfig.CLIENT_SECRET), message);
    }

    @Test
    void missingRequiredValuesAreNamed() {
        for (String key : new String[] {StepupConfig.ISSUER, StepupConfig.CLIENT_ID, StepupConfig.CLIENT_SECRET}) {
            Map<String, String> map = minimal();
            map.put(key, "   ");
            assertTrue(rejection(map).startsWith(key + " is required"), key);
        }
    }

    @Test
    void issuerMustBeHttpsExceptOnLoopback() {
        Map<String, String> map = minimal();
        map.put(StepupConfig.ISSUER, "http://mfa.example.com");
        assertTrue(rejection(map).contains("https"));
        map.put(StepupConfig.ISSUER, "http://127.0.0.1:5000");
        assertEquals("http://127.0.0.1:5000", StepupConfig.from(map).issuer());
        map.put(StepupConfig.ISSUER, "http://localhost:5000/");
        assertEquals("http://localhost:5000/", StepupConfig.from(map).issuer());
    }

    @Test
    void loopbackIsWhatThePythonClientCallsLoopback() {
        // stepup_handoff.discovery.is_loopback: localhost, 127.0.0.0/8, ::1; never a name looked up.
        for (String host : new String[] {"localhost", "LocalHost", "127.0.0.1", "127.1.2.3", "127.255.255.254",
                "[::1]", "[0:0:0:0:0:0:0:1]"}) {
            assertTrue(StepupConfig.loopback(URI.create("http://" + host + ":5000/")), host);
        }
        for (String host : new String[] {"128.0.0.1", "127.0.0.256", "127.000.0.1", "10.0.0.1", "[::2]",
                "[::ffff:127.0.0.1]", "[::1%25lo]", "localhost.example.com", "127.0.0.1.nip.io",
                "mfa.example.com"}) {
            assertFalse(StepupConfig.loopback(URI.create("http://" + host + ":5000/")), host);
        }
    }

    @Test
    void issuerMustBeAnAbsoluteUrlWithoutQueryOrFragment() {
        Map<String, String> map = minimal();
        for (String bad : new String[] {"mfa.example.com", "https://mfa.example.com/?x=1", "https://mfa.example.com/#a",
                "https://exa mple.com", "ftp://mfa.example.com"}) {
            map.put(StepupConfig.ISSUER, bad);
            assertTrue(rejection(map).startsWith(StepupConfig.ISSUER), bad);
        }
    }

    @Test
    void issuerWithAUserNameOrPasswordIsRefusedWithoutShowingThem() {
        Map<String, String> map = minimal();
        for (String bad : new String[] {"https://kc:s3cret@mfa.example.com", "https://s3cret@mfa.example.com/",
                "http://kc:s3cret@127.0.0.1:5000", "https://kc:s3cret@mfa.example.com/?x=1",
                "https://kc:s3cret@exa mple.com"}) {
            map.put(StepupConfig.ISSUER, bad);
            String message = rejection(map);
            assertTrue(message.startsWith(StepupConfig.ISSUER), bad);
            assertFalse(message.contains("s3cret"), message);
        }
    }

    @Test
    void booleansAreTrueOrFalseOnly() {
        Map<String, String> map = minimal();
        map.put(StepupConfig.ALLOW_ENROLLMENT, "yes");
        assertEquals(StepupConfig.ALLOW_ENROLLMENT + " must be true or false, not: yes", rejection(map));
    }

    @Test
    void timeoutsArePositiveWholeMillisecondsUpToAMinute() {
        Map<String, String> map = minimal();
        for (String bad : new String[] {"abc", "0", "-5", "60001", "1.5"}) {
            map.put(StepupConfig.READ_TIMEOUT_MS, bad);
            assertTrue(rejection(map).startsWith(StepupConfig.READ_TIMEOUT_MS + " must be"), bad);
        }
        map.put(StepupConfig.READ_TIMEOUT_MS, "60000");
        assertEquals(Duration.ofMinutes(1), StepupConfig.from(map).readTimeout());
    }

    @Test
    void onBridgeUnavailableIsFailOrSkip() {
        Map<String, String> map = minimal();
        map.put(StepupConfig.ON_BRIDGE_UNAVAILABLE, "open");
        assertEquals(StepupConfig.ON_BRIDGE_UNAVAILABLE + " must be fail or skip, not: open", rejection(map));
    }

    @Test
    void toStringNeverShowsTheSecret() {
        assertFalse(StepupConfig.from(minimal()).toString().contains("s3cret"));
    }
}
