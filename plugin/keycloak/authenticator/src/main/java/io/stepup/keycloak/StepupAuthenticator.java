package io.stepup.keycloak;

import java.util.Locale;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.MultivaluedMap;
import jakarta.ws.rs.core.Response;
import org.jboss.logging.Logger;
import org.keycloak.authentication.AuthenticationFlowContext;
import org.keycloak.authentication.AuthenticationFlowError;
import org.keycloak.authentication.Authenticator;
import org.keycloak.common.Version;
import org.keycloak.events.Details;
import org.keycloak.events.Errors;
import org.keycloak.models.AuthenticationFlowModel;
import org.keycloak.models.AuthenticatorConfigModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.representations.idm.OAuth2ErrorRepresentation;
import org.keycloak.sessions.AuthenticationSessionModel;

/**
 * Hands the user, already known from the password step, to the Stepup Bridge and back.
 * Both passes arrive in {@link #authenticate}: the callback carries no Keycloak session code, so it cannot reach
 * {@code action()}. An auth note holding our {@code state} plus a {@code state} query parameter marks the callback;
 * anything else starts a fresh hand-off. Stateless: everything per login lives in auth-session notes.
 */
public class StepupAuthenticator implements Authenticator {

    /** Auth notes (this login only; cleared when the callback is handled). */
    public static final String NOTE_STATE = "stepup.state";
    public static final String NOTE_NONCE = "stepup.nonce";
    public static final String NOTE_CODE_VERIFIER = "stepup.code_verifier";
    public static final String NOTE_REDIRECT_URI = "stepup.redirect_uri";
    /** When the pushed request was sent (epoch seconds); the assertion's {@code auth_time} cannot be earlier. */
    public static final String NOTE_PUSHED_AT = "stepup.pushed_at";
    /** {@link StepupConfig#binding()} of the configuration that pushed the request. */
    public static final String NOTE_BINDING = "stepup.binding";

    /** User-session notes, for "User Session Note" protocol mappers. */
    public static final String SESSION_NOTE_ACR = "stepup.acr";
    /** The {@code amr} values joined with commas, e.g. {@code otp}. */
    public static final String SESSION_NOTE_AMR = "stepup.amr";
    /** {@code auth_time} in seconds since the epoch, as a decimal string. */
    public static final String SESSION_NOTE_AUTH_TIME = "stepup.auth_time";

    /** Message keys (theme-resources/messages/messages_en.properties). */
    static final String MSG_UNAVAILABLE = "stepupUnavailable";
    static final String MSG_DENIED = "stepupDenied";
    static final String MSG_FAILED = "stepupFailed";

    private static final Logger LOG = Logger.getLogger(StepupAuthenticator.class);

    /** The status of this Keycloak's own answer to a wrong password in the direct grant. */
    static final int WRONG_PASSWORD_STATUS = wrongPasswordStatus(Version.VERSION);

    private final Handoff handoff;

    public StepupAuthenticator(Handoff handoff) {
        this.handoff = handoff;
    }

    @Override
    public void authenticate(AuthenticationFlowContext context) {
        if (!FlowPaths.supported(context.getFlowPath())) {
            unsupportedFlow(context);
            return;
        }
        StepupConfig config;
        try {
            AuthenticatorConfigModel model = context.getAuthenticatorConfig();
            config = StepupConfig.from(model == null ? null : model.getConfig());
        } catch (IllegalArgumentException e) {
            LOG.errorf("Stepup Bridge authenticator is misconfigured: %s", e.getMessage());
            refuse(context, MSG_FAILED, Response.Status.INTERNAL_SERVER_ERROR, "misconfigured");
            return;
        }
        AuthenticationSessionModel authSession = context.getAuthenticationSession();
        MultivaluedMap<String, String> query = context.getUriInfo().getQueryParameters();
        if (authSession.getAuthNote(NOTE_STATE) != null && query.containsKey("state")) {
            finish(context, config, query);
        } else {
            start(context, config);
        }
    }

    /** First pass: push the request to the bridge, remember state/nonce/verifier, send the browser there. */
    private void start(AuthenticationFlowContext context, StepupConfig config) {
        AuthenticationSessionModel authSession = context.getAuthenticationSession();
        clearNotes(authSession);
        UserModel user = context.getUser();
        String redirectUri = context.getRefreshUrl(false).toString();
        // Only a verified address: the bridge mails security notices to it.
        String email = user.isEmailVerified() ? user.getEmail() : null;
        Handoff.User handoffUser = new Handoff.User(user.getId(), displayName(user), locale(context, user), email);
        Handoff.Pending pending;
        try {
            pending = handoff.begin(config, handoffUser, redirectUri);
        } catch (BridgeUnavailableException e) {
            unavailable(context, config.onUnavailable() == StepupConfig.OnUnavailable.SKIP, e);
            return;
        } catch (HandoffException e) {
            rejected(context, e);
            return;
        }
        authSession.setAuthNote(NOTE_STATE, pending.state());
        authSession.setAuthNote(NOTE_NONCE, pending.nonce());
        authSession.setAuthNote(NOTE_CODE_VERIFIER, pending.codeVerifier());
        authSession.setAuthNote(NOTE_REDIRECT_URI, pending.redirectUri());
        authSession.setAuthNote(NOTE_PUSHED_AT, pending.pushedAt().toString());
        authSession.setAuthNote(NOTE_BINDING, pending.binding());
        context.challenge(Response.seeOther(pending.browserRedirect())
                .header("Cache-Control", "no-store")
                .build());
    }

    /**
     * The name the user knows themselves by, for the bridge's pages and the authenticator app's label: "First Last" when
     * Keycloak has it (in any script: the bridge takes Unicode names), else the username.
     */
    static String displayName(UserModel user) {
        String name = Stream.of(user.getFirstName(), user.getLastName())
                .filter(part -> part != null && !part.isBlank())
                .map(String::strip)
                .collect(Collectors.joining(" "));
        return name.isEmpty() ? user.getUsername() : name;
    }

    /** Second pass: the bridge sent the browser back; the notes are spent whatever the outcome. */
    private void finish(AuthenticationFlowContext context, StepupConfig config, MultivaluedMap<String, String> query) {
        AuthenticationSessionModel authSession = context.getAuthenticationSession();
        Handoff.Pending pending = new Handoff.Pending(authSession.getAuthNote(NOTE_STATE),
                authSession.getAuthNote(NOTE_NONCE), authSession.getAuthNote(NOTE_CODE_VERIFIER),
                authSession.getAuthNote(NOTE_REDIRECT_URI), epochSeconds(authSession.getAuthNote(NOTE_PUSHED_AT)),
                authSession.getAuthNote(NOTE_BINDING), null);
        clearNotes(authSession);
        Handoff.Callback callback = new Handoff.Callback(query.getFirst("state"), query.getFirst("iss"),
                query.getFirst("code"), query.getFirst("error"));
        Assertion assertion;
        try {
            assertion = handoff.complete(config, pending, callback, context.getUser().getId());
        } catch (BridgeUnavailableException e) {
            // Never skipped on the way back: the user has been to the bridge, and a cancel, a lock or a
            // made-up code met by an outage (a discovery or /token that fails just then) must not pass.
            unavailable(context, false, e);
            return;
        } catch (HandoffException e) {
            rejected(context, e);
            return;
        }
        // The verifier requires all three, so every note is rewritten by each assertion.
        authSession.setUserSessionNote(SESSION_NOTE_ACR, assertion.acr());
        authSession.setUserSessionNote(SESSION_NOTE_AMR, assertion.amrJoined());
        authSession.setUserSessionNote(SESSION_NOTE_AUTH_TIME, assertion.authTime().toString());
        context.success();
    }

    private static void clearNotes(AuthenticationSessionModel authSession) {
        authSession.removeAuthNote(NOTE_STATE);
        authSession.removeAuthNote(NOTE_NONCE);
        authSession.removeAuthNote(NOTE_CODE_VERIFIER);
        authSession.removeAuthNote(NOTE_REDIRECT_URI);
        authSession.removeAuthNote(NOTE_PUSHED_AT);
        authSession.removeAuthNote(NOTE_BINDING);
    }

    /** A note written by {@link #start}; {@code null} (the hand-off then refuses) if missing or not a number. */
    static Long epochSeconds(String note) {
        try {
            return note == null ? null : Long.valueOf(note);
        } catch (NumberFormatException e) {
            return null;
        }
    }

    private static String locale(AuthenticationFlowContext context, UserModel user) {
        Locale locale = context.getSession().getContext().resolveLocale(user);
        return locale == null ? null : locale.toLanguageTag();
    }

    /** The back channel failed: fail closed, or let the flow go on when {@code skip} (the first trip only). */
    private static void unavailable(AuthenticationFlowContext context, boolean skip, BridgeUnavailableException e) {
        if (skip) {
            LOG.warnf("Stepup Bridge unavailable, step skipped by configuration (user %s): %s",
                    context.getUser().getId(), e.getMessage());
            context.attempted();
            return;
        }
        LOG.warnf("Stepup Bridge unavailable (user %s): %s", context.getUser().getId(), e.getMessage());
        refuse(context, MSG_UNAVAILABLE, Response.Status.SERVICE_UNAVAILABLE, "bridge_unavailable");
    }

    private static void rejected(AuthenticationFlowContext context, HandoffException e) {
        if (e.reason() == HandoffException.Reason.DENIED) {
            LOG.infof("Stepup Bridge denied the second factor (user %s)", context.getUser().getId());
            fail(context, AuthenticationFlowError.INVALID_CREDENTIALS, MSG_DENIED, Response.Status.UNAUTHORIZED,
                    "access_denied");
            return;
        }
        LOG.warnf("Stepup Bridge hand-off rejected (user %s): %s", context.getUser().getId(), e.getMessage());
        refuse(context, MSG_FAILED, Response.Status.BAD_REQUEST, "handoff_rejected");
    }

    /**
     * No browser to send to the bridge (the direct grant flow): refuse with an OAuth error, never a 500, and
     * without counting a failed login: the password was right, and a script that still uses the grant must not
     * get its user locked or disabled by brute-force detection. The answer is Keycloak's own to a wrong password
     * (as its OTP step answers a missing code), so the grant cannot tell anyone that a password is right; the
     * administrator reads the reason in the event and the log.
     */
    private static void unsupportedFlow(AuthenticationFlowContext context) {
        AuthenticationFlowModel flow = context.getTopLevelFlow();
        LOG.error(FlowPaths.unsupportedMessage(context.getFlowPath(), flow == null ? "?" : flow.getAlias()));
        context.getEvent().detail(Details.REASON, "stepup_unsupported_flow").error("stepup_unsupported_flow");
        Response refusal = Response.status(WRONG_PASSWORD_STATUS)
                .type(MediaType.APPLICATION_JSON_TYPE)
                .entity(new OAuth2ErrorRepresentation("invalid_grant",
                        "Invalid user credentials"))
                .build();
        context.forceChallenge(refusal);
    }

    /**
     * Keycloak answers a wrong password in the direct grant with 401 up to 26.5 and with 400 from 26.6 on (RFC 6749
     * §5.2, keycloak#46528). Answering a right one otherwise would tell the two apart. A version that cannot be read
     * (a nightly, say) is taken as a newer one.
     */
    static int wrongPasswordStatus(String keycloakVersion) {
        String[] parts = keycloakVersion == null ? new String[0] : keycloakVersion.split("[.-]");
        try {
            int major = Integer.parseInt(parts[0]);
            int minor = Integer.parseInt(parts[1]);
            boolean before = major < 26 || (major == 26 && minor < 6);
            return (before ? Response.Status.UNAUTHORIZED : Response.Status.BAD_REQUEST).getStatusCode();
        } catch (NumberFormatException | ArrayIndexOutOfBoundsException e) {
            return Response.Status.BAD_REQUEST.getStatusCode();
        }
    }

    /**
     * The user's second factor was refused: a failed login, as brute-force detection counts them. failureChallenge
     * sends no event, so the error is sent here, as Keycloak's OTP form does: a lock or cancel at the bridge shows
     * as a LOGIN_ERROR with the error of a wrong credential, the reason in the detail.
     */
    private static void fail(AuthenticationFlowContext context, AuthenticationFlowError error, String messageKey,
                             Response.Status status, String reason) {
        context.getEvent().user(context.getUser()).detail(Details.REASON, "stepup_" + reason)
                .error(Errors.INVALID_USER_CREDENTIALS);
        context.failureChallenge(error, context.form().setError(messageKey).createErrorPage(status));
    }

    /**
     * The bridge could not be asked (down, misconfigured, a broken hand-off): the login stops here, closed,
     * but it is no failed login of the user's. failureChallenge would count one for brute-force detection,
     * so an outage would lock users out, or disable them under permanent lockout.
     */
    private static void refuse(AuthenticationFlowContext context, String messageKey, Response.Status status,
                               String reason) {
        context.getEvent().detail(Details.REASON, "stepup_" + reason).error("stepup_" + reason);
        context.forceChallenge(context.form().setError(messageKey).createErrorPage(status));
    }

    @Override
    public void action(AuthenticationFlowContext context) {
        // The bridge's callback re-enters authenticate(); no form of ours posts here.
        authenticate(context);
    }

    @Override
    public boolean requiresUser() {
        return true;
    }

    @Override
    public boolean configuredFor(KeycloakSession session, RealmModel realm, UserModel user) {
        // Enrollment happens at the bridge; Keycloak stores no credential for this factor.
        return true;
    }

    @Override
    public void setRequiredActions(KeycloakSession session, RealmModel realm, UserModel user) {
        // Nothing to set up in Keycloak.
    }

    @Override
    public void close() {
        // Stateless singleton.
    }
}
