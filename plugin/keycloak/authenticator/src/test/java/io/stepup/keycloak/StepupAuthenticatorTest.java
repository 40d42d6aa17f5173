package io.stepup.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import jakarta.ws.rs.core.MultivaluedHashMap;
import jakarta.ws.rs.core.UriInfo;
import java.lang.reflect.Proxy;
import java.net.URI;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.keycloak.authentication.AuthenticationFlowContext;
import org.keycloak.models.AuthenticatorConfigModel;
import org.keycloak.models.KeycloakContext;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.UserModel;
import org.keycloak.sessions.AuthenticationSessionModel;

/**
 * What the authenticator tells Keycloak when the bridge cannot be reached, with {@code onBridgeUnavailable=skip}: the
 * first trip (nothing done yet) counts as attempted; the way back never does (found by a review: a cancel, or a
 * made-up code, met by a failing discovery or /token became "attempted").
 */
class StepupAuthenticatorTest {

    /** Thrown where the authenticator starts to build a refusal (its event or error page). */
    static final class Refused extends RuntimeException {
    }

    private FakeBridge bridge;
    private final Map<String, String> notes = new HashMap<>();
    private final MultivaluedHashMap<String, String> query = new MultivaluedHashMap<>();
    private final List<String> outcomes = new ArrayList<>();
    private StepupAuthenticator authenticator;
    private AuthenticatorConfigModel model;

    @BeforeEach
    void setUp() throws Exception {
        bridge = new FakeBridge();
        MovableClock clock = new MovableClock(Instant.now());
        authenticator = new StepupAuthenticator(new Handoff(new BridgeClient(clock), new IdTokenVerifier(clock), clock));
        Map<String, String> config = StepupConfigTest.minimal();
        config.put(StepupConfig.ISSUER, bridge.issuer());
        config.put(StepupConfig.ON_BRIDGE_UNAVAILABLE, "skip");
        model = new AuthenticatorConfigModel();
        model.setConfig(config);
        bridge.close(); // the bridge is down from now on
    }

    @Test
    void aFirstTripDuringAnOutageIsAttempted() {
        authenticator.authenticate(context());
        assertEquals(List.of("attempted"), outcomes);
    }

    @Test
    void theWayBackDuringAnOutageIsRefusedEvenWhenSkipping() {
        notes.put(StepupAuthenticator.NOTE_STATE, "state-1");
        notes.put(StepupAuthenticator.NOTE_NONCE, "nonce-1");
        notes.put(StepupAuthenticator.NOTE_CODE_VERIFIER, "verifier-1");
        notes.put(StepupAuthenticator.NOTE_REDIRECT_URI, HandoffTest.REDIRECT_URI);
        notes.put(StepupAuthenticator.NOTE_PUSHED_AT, Long.toString(Instant.now().getEpochSecond()));
        notes.put(StepupAuthenticator.NOTE_BINDING, StepupConfig.from(model.getConfig()).binding());
        for (String[] answer : new String[][] {{"error", "access_denied"}, {"code", "made-up"}}) {
            query.clear();
            query.putSingle("state", "state-1");
            query.putSingle(answer[0], answer[1]);
            Map<String, String> kept = new HashMap<>(notes);
            assertThrows(Refused.class, () -> authenticator.authenticate(context()), answer[0]);
            assertEquals(List.of(), outcomes, answer[0]);
            assertEquals(Map.of(), notes, "the callback spends the login's notes, whatever its outcome");
            notes.putAll(kept);
        }
    }

    @Test
    void aCallbackThisLoginNeverStartedIsAFirstTrip() {
        // A state in the query but none saved: nothing to finish, so a hand-off starts (here, skipped).
        query.putSingle("state", "state-1");
        query.putSingle("code", "made-up");
        authenticator.authenticate(context());
        assertEquals(List.of("attempted"), outcomes);
    }

    private AuthenticationFlowContext context() {
        UserModel user = fake(UserModel.class, Map.of("getId", args -> "user-1", "getUsername", args -> "alice",
                "getFirstName", args -> null, "getLastName", args -> null, "isEmailVerified", args -> false));
        AuthenticationSessionModel session = fake(AuthenticationSessionModel.class, Map.of(
                "getAuthNote", args -> notes.get((String) args[0]),
                "setAuthNote", args -> notes.put((String) args[0], (String) args[1]),
                "removeAuthNote", args -> notes.remove((String) args[0])));
        UriInfo uriInfo = fake(UriInfo.class, Map.of("getQueryParameters", args -> query));
        KeycloakContext keycloakContext = fake(KeycloakContext.class, Map.of("resolveLocale", args -> null));
        KeycloakSession keycloakSession = fake(KeycloakSession.class, Map.of("getContext", args -> keycloakContext));
        Map<String, Function<Object[], Object>> answers = new HashMap<>();
        answers.put("getFlowPath", args -> "authenticate");
        answers.put("getAuthenticatorConfig", args -> model);
        answers.put("getAuthenticationSession", args -> session);
        answers.put("getUriInfo", args -> uriInfo);
        answers.put("getUser", args -> user);
        answers.put("getSession", args -> keycloakSession);
        answers.put("getRefreshUrl", args -> URI.create(HandoffTest.REDIRECT_URI));
        answers.put("attempted", args -> outcomes.add("attempted"));
        answers.put("success", args -> outcomes.add("success"));
        answers.put("getEvent", args -> {
            throw new Refused();
        });
        answers.put("form", args -> {
            throw new Refused();
        });
        return fake(AuthenticationFlowContext.class, answers);
    }

    /** An interface answering only {@code answers}; any other call fails the test, so nothing goes unnoticed. */
    @SuppressWarnings("unchecked")
    static <T> T fake(Class<T> type, Map<String, Function<Object[], Object>> answers) {
        return (T) Proxy.newProxyInstance(type.getClassLoader(), new Class<?>[] {type}, (proxy, method, args) -> {
            Function<Object[], Object> answer = answers.get(method.getName());
            if (answer == null) {
                throw new UnsupportedOperationException(type.getSimpleName() + "." + method.getName());
            }
            return answer.apply(args);
        });
    }
}
