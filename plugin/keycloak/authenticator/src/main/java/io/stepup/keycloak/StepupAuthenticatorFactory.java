package io.stepup.keycloak;

import java.time.Clock;
import java.util.List;

import org.keycloak.Config;
import org.keycloak.authentication.Authenticator;
import org.keycloak.authentication.AuthenticatorFactory;
import org.keycloak.models.AuthenticationExecutionModel.Requirement;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;

/**
 * Registers the "Stepup Bridge MFA" execution. One stateless {@link StepupAuthenticator} serves every login; it
 * shares one {@link BridgeClient} (HTTP clients, discovery and JWKS caches).
 */
public class StepupAuthenticatorFactory implements AuthenticatorFactory {

    public static final String PROVIDER_ID = "stepup-bridge";

    // As Keycloak's own authenticators: CONDITIONAL means something only for a sub-flow (an
    // execution set to it runs exactly like REQUIRED, and audit would call the door open).
    private static final Requirement[] REQUIREMENT_CHOICES = {
        Requirement.REQUIRED, Requirement.ALTERNATIVE, Requirement.DISABLED
    };

    private static final Clock CLOCK = Clock.systemUTC();
    private static final StepupAuthenticator SINGLETON = new StepupAuthenticator(
            new Handoff(new BridgeClient(CLOCK), new IdTokenVerifier(CLOCK), CLOCK));

    private static final List<ProviderConfigProperty> CONFIG_PROPERTIES = List.of(
        required(property(StepupConfig.ISSUER, "Bridge issuer URL", ProviderConfigProperty.STRING_TYPE, null,
            "The Stepup Bridge issuer, exactly as in its discovery document (e.g. https://mfa.example.com). "
            + "https is required except on localhost.")),
        required(property(StepupConfig.CLIENT_ID, "Client ID", ProviderConfigProperty.STRING_TYPE, null,
            "The client id this Keycloak is registered under at the bridge (stepup client add).")),
        required(secret(property(StepupConfig.CLIENT_SECRET, "Client secret", ProviderConfigProperty.PASSWORD,
            null, "The client secret registered at the bridge; sent with HTTP Basic (client_secret_basic)."))),
        property(StepupConfig.ACR_VALUES, "ACR values", ProviderConfigProperty.STRING_TYPE, null,
            "Optional acr_values to request from the bridge, space separated."),
        property(StepupConfig.ALLOW_ENROLLMENT, "Allow enrollment", ProviderConfigProperty.BOOLEAN_TYPE, "true",
            "When off, sends stepup_allow_enrollment=false so users without a second factor are not offered "
            + "enrollment. The bridge's per-client setting still applies."),
        property(StepupConfig.CONNECT_TIMEOUT_MS, "Connect timeout (ms)", ProviderConfigProperty.STRING_TYPE,
            String.valueOf(StepupConfig.DEFAULT_CONNECT_TIMEOUT_MS), "TCP connect timeout towards the bridge."),
        property(StepupConfig.READ_TIMEOUT_MS, "Read timeout (ms)", ProviderConfigProperty.STRING_TYPE,
            String.valueOf(StepupConfig.DEFAULT_READ_TIMEOUT_MS), "Deadline for each back-channel call to the bridge."),
        options(property(StepupConfig.ON_BRIDGE_UNAVAILABLE, "When the bridge is unavailable",
            ProviderConfigProperty.LIST_TYPE, "fail",
            "fail: refuse the login (fail closed, recommended). skip: mark this step as attempted and let the flow "
            + "go on without the second factor; Keycloak only continues when this execution is not REQUIRED. "
            + "Only an unreachable bridge (network error, timeout, HTTP 5xx) is skipped, never an error answer."),
            "fail", "skip"),
        // Declared, or Keycloak 26.7 would show it masked too (it masks every undeclared key).
        property(StepupConfig.SECRET_CHECK, "Client secret check", ProviderConfigProperty.STRING_TYPE, null,
            "Set by stepup keycloak install: the bridge's keyed digest of the client secret, not the secret. A re-run "
            + "of install compares it with the bridge's registration. Leave it as it is."));

    private static ProviderConfigProperty property(String name, String label, String type, String defaultValue,
                                                   String helpText) {
        ProviderConfigProperty property = new ProviderConfigProperty();
        property.setName(name);
        property.setLabel(label);
        property.setType(type);
        property.setDefaultValue(defaultValue);
        property.setHelpText(helpText);
        return property;
    }

    private static ProviderConfigProperty required(ProviderConfigProperty property) {
        property.setRequired(true);
        return property;
    }

    private static ProviderConfigProperty secret(ProviderConfigProperty property) {
        property.setSecret(true);
        return property;
    }

    private static ProviderConfigProperty options(ProviderConfigProperty property, String... options) {
        property.setOptions(List.of(options));
        return property;
    }

    @Override
    public String getId() {
        return PROVIDER_ID;
    }

    @Override
    public String getDisplayType() {
        return "Stepup Bridge MFA";
    }

    @Override
    public String getReferenceCategory() {
        return "stepup-mfa";
    }

    @Override
    public String getHelpText() {
        return "Hands the user to the Stepup Bridge for a TOTP or recovery-code check (OpenID Connect with PAR and "
            + "PKCE) and stores its acr, amr and auth_time as user-session notes stepup.acr, stepup.amr, "
            + "stepup.auth_time. Place it after the password step of the browser flow, after 'Send Reset Email' "
            + "in the reset credentials flow, after the registration form, or in the post login flow of identity "
            + "providers. It needs a browser: "
            + "in the direct grant flow it refuses every login (logged as an error). "
            + "'stepup keycloak audit' lists every way into the realm that does not pass it.";
    }

    @Override
    public boolean isConfigurable() {
        return true;
    }

    @Override
    public Requirement[] getRequirementChoices() {
        return REQUIREMENT_CHOICES;
    }

    @Override
    public boolean isUserSetupAllowed() {
        return false;
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        return CONFIG_PROPERTIES;
    }

    @Override
    public Authenticator create(KeycloakSession session) {
        return SINGLETON;
    }

    @Override
    public void init(Config.Scope config) {
        // No server-level (SPI) options.
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
        // Nothing to wire.
    }

    @Override
    public void close() {
        // The shared HTTP clients hold no resources that outlive the JVM.
    }
}
