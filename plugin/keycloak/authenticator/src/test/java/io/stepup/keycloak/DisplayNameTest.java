package io.stepup.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.reflect.Proxy;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.keycloak.models.UserModel;

class DisplayNameTest {

    /** A UserModel answering only the three getters the display name reads. */
    private static UserModel user(String username, String first, String last) {
        Map<String, String> values = new java.util.HashMap<>();
        values.put("getUsername", username);
        values.put("getFirstName", first);
        values.put("getLastName", last);
        return (UserModel) Proxy.newProxyInstance(UserModel.class.getClassLoader(), new Class<?>[] {UserModel.class},
                (proxy, method, args) -> values.get(method.getName()));
    }

    @Test
    void firstAndLastNameInAnyScript() {
        assertEquals("José García", StepupAuthenticator.displayName(user("jgarcia", "José", "García")));
        assertEquals("山田 太郎", StepupAuthenticator.displayName(user("yamada", " 山田 ", "太郎")));
    }

    @Test
    void oneOfTheNames() {
        assertEquals("Zoë", StepupAuthenticator.displayName(user("zoe", "Zoë", null)));
        assertEquals("Łukasz", StepupAuthenticator.displayName(user("lukasz", "", "Łukasz")));
    }

    @Test
    void theUsernameWithoutNames() {
        assertEquals("alice", StepupAuthenticator.displayName(user("alice", null, "  ")));
    }
}
