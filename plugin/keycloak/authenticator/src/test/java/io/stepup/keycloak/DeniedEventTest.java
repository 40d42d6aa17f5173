package io.stepup.keycloak;

import static io.stepup.keycloak.StepupAuthenticatorTest.fake;
import static org.junit.jupiter.api.Assertions.assertEquals;

import jakarta.ws.rs.core.MultivaluedHashMap;
import jakarta.ws.rs.core.UriInfo;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.Stream;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.keycloak.authentication.AuthenticationFlowContext;
import org.keycloak.events.Details;
import org.keycloak.events.Errors;
import org.keycloak.events.EventBuilder;
import org.keycloak.forms.login.LoginFormsProvider;
import org.keycloak.models.AuthenticatorConfigModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.sessions.AuthenticationSessionModel;

/**
 * A second factor refused at the bridge (a cancel or a lock, {@code access_denied}) leaves a LOGIN_ERROR event, as a
 * wrong OTP does (found by a review: failureChallenge only feeds brute-force detection and sends no event, so the
 * refusal left no trace in the realm's events).
 */
class DeniedEventTest {
    private final FakeBridge bridge;
    private final Map<String, String> details = new HashMap<>();
    private final List<String> events = new ArrayList<>();
    private final List<String> outcomes = new ArrayList<>();

    DeniedEventTest() throws Exception {
        bridge = new FakeBridge();
    }

    @AfterEach
    void close() {
        bridge.close();
    }

    @Test
    void aDeniedSecondFactorSendsAnErrorEvent() {
        Map<String, String> config = StepupConfigTest.minimal();
        config.put(StepupConfig.ISSUER, bridge.issuer());
        AuthenticatorConfigModel model = new AuthenticatorConfigModel();
        model.setConfig(config);
        Map<String, String> notes = new HashMap<>();
        notes.put(StepupAuthenticator.NOTE_STATE, "state-1");
        notes.put(StepupAuthenticator.NOTE_NONCE, "nonce-1");
        notes.put(StepupAuthenticator.NOTE_CODE_VERIFIER, "verifier-1");
        notes.put(StepupAuthenticator.NOTE_REDIRECT_URI, HandoffTest.REDIRECT_URI);
        notes.put(StepupAuthenticator.NOTE_PUSHED_AT, Long.toString(Instant.now().getEpochSecond()));
        notes.put(StepupAuthenticator.NOTE_BINDING, StepupConfig.from(config).binding());
        MultivaluedHashMap<String, String> query = new MultivaluedHashMap<>();
        query.putSingle("state", "state-1");
        query.putSingle("iss", bridge.issuer());
        query.putSingle("error", "access_denied");

        // A real EventBuilder (its user() and detail() as Keycloak's), with events off and error() recorded.
        RealmModel realm = fake(RealmModel.class, Map.of("isEventsEnabled", args -> false,
                "getEventsListenersStream", args -> Stream.empty(), "getId", args -> "r", "getName", args -> "r"));
        KeycloakSessionFactory factory = fake(KeycloakSessionFactory.class,
                Map.of("getProviderFactoriesStream", args -> Stream.empty()));
        KeycloakSession session = fake(KeycloakSession.class, Map.of("getKeycloakSessionFactory", args -> factory));
        EventBuilder event = new EventBuilder(realm, session) {
            @Override
            public EventBuilder detail(String key, String value) {
                details.put(key, value);
                return this;
            }

            @Override
            public void error(String error) {
                events.add(getEvent().getUserId() + " " + error);
            }
        };
        LoginFormsProvider[] form = new LoginFormsProvider[1];
        form[0] = fake(LoginFormsProvider.class, Map.of("setError", args -> form[0],
                "createErrorPage", args -> null));
        UserModel user = fake(UserModel.class, Map.of("getId", args -> "user-1"));
        AuthenticationSessionModel authSession = fake(AuthenticationSessionModel.class, Map.of(
                "getAuthNote", args -> notes.get((String) args[0]),
                "removeAuthNote", args -> notes.remove((String) args[0])));
        UriInfo uriInfo = fake(UriInfo.class, Map.of("getQueryParameters", args -> query));
        Map<String, Function<Object[], Object>> answers = new HashMap<>();
        answers.put("getFlowPath", args -> "authenticate");
        answers.put("getAuthenticatorConfig", args -> model);
        answers.put("getAuthenticationSession", args -> authSession);
        answers.put("getUriInfo", args -> uriInfo);
        answers.put("getUser", args -> user);
        answers.put("getEvent", args -> event);
        answers.put("form", args -> form[0]);
        answers.put("failureChallenge", args -> outcomes.add("failureChallenge " + args[0]));
        MovableClock clock = new MovableClock(Instant.now());
        new StepupAuthenticator(new Handoff(new BridgeClient(clock), new IdTokenVerifier(clock), clock))
                .authenticate(fake(AuthenticationFlowContext.class, answers));

        assertEquals(List.of("failureChallenge INVALID_CREDENTIALS"), outcomes);
        assertEquals(List.of("user-1 " + Errors.INVALID_USER_CREDENTIALS), events);
        assertEquals("stepup_access_denied", details.get(Details.REASON));
    }
}
