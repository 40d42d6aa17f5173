package io.stepup.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.InputStream;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Collectors;

import org.junit.jupiter.api.Test;
import org.keycloak.models.AuthenticationExecutionModel.Requirement;
import org.keycloak.provider.ProviderConfigProperty;

/** What Keycloak's admin console and the provisioning code rely on. */
class StepupAuthenticatorFactoryTest {

    private final StepupAuthenticatorFactory factory = new StepupAuthenticatorFactory();

    @Test
    void identityAndRequirements() {
        assertEquals("stepup-bridge", factory.getId());
        assertEquals("Stepup Bridge MFA", factory.getDisplayType());
        assertTrue(factory.isConfigurable());
        // No CONDITIONAL: on an execution (not a sub-flow) Keycloak runs it as REQUIRED.
        assertEquals(List.of(Requirement.REQUIRED, Requirement.ALTERNATIVE, Requirement.DISABLED),
                List.of(factory.getRequirementChoices()));
        assertTrue(factory.create(null).requiresUser());
        // The admin console shows this text when the step is added: where it belongs, where it refuses.
        assertTrue(factory.getHelpText().contains("reset credentials flow"));
        assertTrue(factory.getHelpText().contains("direct grant flow it refuses every login"));
    }

    @Test
    void configPropertiesAreTheStepupConfigKeysWithTheSecretHidden() {
        Map<String, ProviderConfigProperty> properties = factory.getConfigProperties().stream()
                .collect(Collectors.toMap(ProviderConfigProperty::getName, p -> p));
        assertEquals(List.of(StepupConfig.ISSUER, StepupConfig.CLIENT_ID, StepupConfig.CLIENT_SECRET,
                StepupConfig.ACR_VALUES, StepupConfig.ALLOW_ENROLLMENT, StepupConfig.CONNECT_TIMEOUT_MS,
                StepupConfig.READ_TIMEOUT_MS, StepupConfig.ON_BRIDGE_UNAVAILABLE, StepupConfig.SECRET_CHECK),
                factory.getConfigProperties().stream().map(ProviderConfigProperty::getName).toList());
        ProviderConfigProperty secret = properties.get(StepupConfig.CLIENT_SECRET);
        assertTrue(secret.isSecret());
        assertEquals(ProviderConfigProperty.PASSWORD, secret.getType());
        assertEquals(List.of("fail", "skip"), properties.get(StepupConfig.ON_BRIDGE_UNAVAILABLE).getOptions());
        // The admin console's defaults must pass validation as they are.
        Map<String, String> defaults = factory.getConfigProperties().stream()
                .filter(p -> p.getDefaultValue() != null)
                .collect(Collectors.toMap(ProviderConfigProperty::getName, p -> p.getDefaultValue().toString()));
        Map<String, String> map = StepupConfigTest.minimal();
        map.putAll(defaults);
        StepupConfig.from(map);
    }

    @Test
    void registeredAsAServiceWithItsMessages() throws Exception {
        String services = "META-INF/services/org.keycloak.authentication.AuthenticatorFactory";
        boolean registered = false;
        for (URL url : Collections.list(getClass().getClassLoader().getResources(services))) {
            try (InputStream in = url.openStream()) {
                registered |= new String(in.readAllBytes(), StandardCharsets.UTF_8)
                        .lines().anyMatch(StepupAuthenticatorFactory.class.getName()::equals);
            }
        }
        assertTrue(registered, "factory listed in " + services);
        Properties messages = new Properties();
        try (InputStream in = getClass().getClassLoader()
                .getResourceAsStream("theme-resources/messages/messages_en.properties")) {
            assertNotNull(in);
            messages.load(in);
        }
        for (String key : new String[] {StepupAuthenticator.MSG_UNAVAILABLE, StepupAuthenticator.MSG_DENIED,
                StepupAuthenticator.MSG_FAILED}) {
            assertTrue(messages.containsKey(key), key);
        }
        assertEquals("The second-factor service is unavailable. Please try again later.",
                messages.getProperty(StepupAuthenticator.MSG_UNAVAILABLE));
    }
}
