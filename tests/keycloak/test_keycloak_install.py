"""install() on the browser door: what it asks Keycloak's admin API, and what the realm looks
like afterwards. The other doors: test_keycloak_doors.py."""

from __future__ import annotations

import pytest
from conftest import options
from fake_keycloak import BASE, FakeKeycloak
from keycloak import KeycloakAdmin

from stepup_keycloak import (
    MASKED_SECRET,
    InstallOptions,
    ProvisioningError,
    audit,
    install,
    uninstall,
)

FORMS = "browser-stepup forms"


@pytest.fixture
def opts() -> InstallOptions:
    return options(cover=("browser",))


@pytest.fixture
def make_opts():
    return lambda **changes: options(**{"cover": ("browser",), **changes})


def posts_to(fake: FakeKeycloak, suffix: str) -> list[object]:
    return [body for method, path, body in fake.calls if method == "POST" and path.endswith(suffix)]



def check(secret: str) -> str:
    """Stands in for the bridge's keyed digest of a client secret."""
    return "digest-of-" + secret[::-1]


class TestFlow:
    def test_copies_the_browser_flow_under_the_new_alias(self, fake, admin, opts):
        install(admin, opts)

        assert posts_to(fake, "/authentication/flows/browser/copy") == [
            {"newName": "browser-stepup"}
        ]
        assert fake.flow_by_alias("browser-stepup")["builtIn"] is False
        assert [name for name, _ in fake.layout("browser-stepup")][3:] == [
            "browser-stepup Organization",
            "browser-stepup forms",
        ]

    def test_adds_the_stepup_execution_to_the_forms_subflow(self, fake, admin, opts):
        install(admin, opts)

        assert posts_to(fake, f"/flows/{FORMS}/executions/execution") == [
            {"provider": "stepup-bridge"}
        ]

    def test_stepup_is_required_right_after_the_password_form(self, fake, admin, opts):
        install(admin, opts)

        assert fake.layout(FORMS) == [
            ("auth-username-password-form", "REQUIRED"),
            ("stepup-bridge", "REQUIRED"),
            ("browser-stepup Browser - Conditional 2FA", "CONDITIONAL"),
        ]

    def test_requirement_update_sends_back_the_priority_it_read(self, fake, admin, opts):
        install(admin, opts)

        updates = [b for m, p, b in fake.calls if m == "PUT" and p.endswith("/executions")]
        assert [(u["providerId"], u["requirement"]) for u in updates] == [
            ("stepup-bridge", "REQUIRED")
        ]
        assert "priority" in updates[0]

    def test_built_in_browser_flow_is_left_alone(self, fake, admin, opts):
        before = fake.layout("forms")

        install(admin, opts)

        assert fake.layout("forms") == before
        assert [name for name, _ in fake.layout("browser")][3:] == ["Organization", "forms"]

    def test_existing_target_flow_is_reused_not_copied_again(self, fake, admin, opts):
        fake.copy_flow({"newName": "browser-stepup"}, "browser")

        install(admin, opts)

        assert posts_to(fake, "/copy") == []
        assert len(fake.execution_of("stepup-bridge")) == 1


class TestConfig:
    def config(self, fake: FakeKeycloak) -> dict[str, object]:
        (execution,) = fake.execution_of("stepup-bridge")
        return fake.configs[execution["config"]]

    def test_writes_issuer_client_and_options(self, fake, admin, make_opts):
        result = install(admin, make_opts(bridge_client_secret="s" * 43))

        config = self.config(fake)
        assert config["alias"] == "stepup-bridge-acme"
        assert config["config"] == {
            "stepup.issuer": "https://mfa.example.test",
            "stepup.clientId": "keycloak-acme",
            "stepup.clientSecret": "s" * 43,
            "stepup.allowEnrollment": "true",
            "stepup.onBridgeUnavailable": "fail",
        }
        assert result.bridge_client_secret == "s" * 43

    def test_acr_values_and_enrollment_switch(self, fake, admin, make_opts):
        install(admin, make_opts(acr_values="urn:stepup:mfa", allow_enrollment=False))

        config = self.config(fake)["config"]
        assert config["stepup.acrValues"] == "urn:stepup:mfa"
        assert config["stepup.allowEnrollment"] == "false"

    def test_secret_is_generated_when_not_given(self, fake, admin, opts):
        result = install(admin, opts)

        secret = self.config(fake)["config"]["stepup.clientSecret"]
        assert result.bridge_client_secret == secret
        assert len(secret) >= 43
        assert secret not in repr(result)

    def test_given_secret_replaces_the_stored_one(self, fake, admin, make_opts):
        install(admin, make_opts(bridge_client_secret="old-secret-" + "a" * 32))
        fake.calls.clear()

        result = install(admin, make_opts(bridge_client_secret="new-secret-" + "b" * 32))

        assert self.config(fake)["config"]["stepup.clientSecret"] == "new-secret-" + "b" * 32
        assert [(m, p.rsplit("/", 2)[-2]) for m, p, _ in fake.writes()] == [("PUT", "config")]
        assert result.changed is True

    # Keycloak 26.7 shows the secret masked (26.5 does not): found on 26.7.3 by the end-to-end
    # tests, where a second install took the mask for the secret and stopped.
    def test_each_secret_written_carries_its_check(self, fake, admin, make_opts):
        first = install(admin, make_opts(secret_check=check))

        config = self.config(fake)["config"]
        assert config["stepup.clientSecretCheck"] == check(first.bridge_client_secret)

    def test_a_masked_secret_the_bridge_holds_is_kept_where_it_is(self, fake, admin, make_opts):
        first = install(admin, make_opts(secret_check=check))
        fake.mask_secrets = True
        fake.calls.clear()

        second = install(admin, make_opts(secret_check=check,
                                          registered_check=check(first.bridge_client_secret)))

        assert fake.writes() == []
        assert second.changed is False
        assert second.bridge_client_secret == MASKED_SECRET
        assert self.config(fake)["config"]["stepup.clientSecret"] == first.bridge_client_secret

    @pytest.mark.parametrize("registered", [None, "another-secret-the-bridge-holds"])
    def test_a_masked_secret_the_bridge_does_not_hold_is_replaced(self, fake, admin, make_opts,
                                                                   registered):
        """The bridge holds no secret (a new database) or another one (a secret changed by hand
        at the bridge, or a rotation cut short): nobody can read the realm's back, so both
        sides get a new one."""
        first = install(admin, make_opts(secret_check=check))
        fake.mask_secrets = True

        second = install(admin, make_opts(
            secret_check=check, registered_check=registered and check(registered)))

        config = self.config(fake)["config"]
        assert config["stepup.clientSecret"] == second.bridge_client_secret
        assert second.bridge_client_secret not in (first.bridge_client_secret, MASKED_SECRET)
        assert len(second.bridge_client_secret) >= 43
        assert config["stepup.clientSecretCheck"] == check(second.bridge_client_secret)

    @pytest.mark.parametrize("changes", [{"conditional_loa": 2}, {"removed_by_hand": True},
                                         {"secret_cleared_by_hand": True}])
    def test_a_step_new_to_a_masked_run_gets_a_new_secret(self, fake, admin, make_opts,
                                                           changes):
        """A step made anew (behind a level condition now, or removed by hand) or one whose
        secret was cleared: the mask cannot be sent where Keycloak shows none, so both sides
        get a new secret."""
        first = install(admin, make_opts(secret_check=check))
        if changes.pop("removed_by_hand", False):
            (step,) = fake.execution_of("stepup-bridge")
            admin.delete_authentication_flow_execution(step["id"])
        if changes.pop("secret_cleared_by_hand", False):
            del self.config(fake)["config"]["stepup.clientSecret"]
        fake.mask_secrets = True

        second = install(admin, make_opts(
            secret_check=check, registered_check=check(first.bridge_client_secret), **changes))

        stored = self.config(fake)["config"]["stepup.clientSecret"]
        assert stored == second.bridge_client_secret
        assert stored not in (first.bridge_client_secret, MASKED_SECRET)

    def test_a_secret_written_without_a_check_drops_a_stale_one(self, fake, admin, make_opts):
        install(admin, make_opts(secret_check=check))

        install(admin, make_opts(bridge_client_secret="new-secret-" + "b" * 32))

        assert "stepup.clientSecretCheck" not in self.config(fake)["config"]

    def test_keys_added_by_hand_survive_an_update(self, fake, admin, make_opts):
        install(admin, make_opts())
        self.config(fake)["config"]["stepup.timeoutSeconds"] = "10"

        install(admin, make_opts(acr_values="urn:stepup:mfa"))

        assert self.config(fake)["config"]["stepup.timeoutSeconds"] == "10"


class TestBinding:
    def test_binds_the_flow_and_remembers_the_previous_one(self, fake, admin, opts):
        install(admin, opts)

        assert fake.realm["browserFlow"] == "browser-stepup"
        assert fake.realm["attributes"]["stepup.previousBrowserFlow"] == "browser"

    def test_other_realm_attributes_are_kept(self, fake, admin, opts):
        install(admin, opts)

        assert fake.realm["attributes"]["frontendUrl"] == "https://sso.example.test"
        assert fake.realm["attributes"]["acr.loa.map"] == "{}"

    def test_realm_update_sends_only_the_binding_and_attributes(self, fake, admin, opts):
        install(admin, opts)

        (update,) = [b for m, p, b in fake.calls if m == "PUT" and p == "/admin/realms/acme"]
        assert set(update) == {"browserFlow", "attributes"}


class TestClientScope:
    def test_scope_is_openid_and_in_the_token_scope(self, fake, admin, opts):
        result = install(admin, opts)

        scope = fake.scopes[result.client_scope_id]
        assert scope["name"] == "stepup"
        assert scope["protocol"] == "openid-connect"
        assert scope["attributes"]["include.in.token.scope"] == "true"

    def test_session_notes_are_mapped_to_claims(self, fake, admin, opts):
        result = install(admin, opts)

        mappers = fake.scopes[result.client_scope_id]["protocolMappers"]
        assert {m["protocolMapper"] for m in mappers} == {"oidc-usersessionmodel-note-mapper"}
        by_note = {m["config"]["user.session.note"]: m["config"] for m in mappers}
        assert {n: (c["claim.name"], c["jsonType.label"]) for n, c in by_note.items()} == {
            "stepup.amr": ("stepup_amr", "String"),
            "stepup.acr": ("stepup_acr", "String"),
            "stepup.auth_time": ("stepup_auth_time", "long"),
        }
        for config in by_note.values():
            assert config["id.token.claim"] == "true"
            assert config["access.token.claim"] == "true"
            assert config["userinfo.token.claim"] == "true"

    def test_scope_is_a_realm_default_for_new_clients(self, fake, admin, opts):
        result = install(admin, opts)

        assert result.client_scope_id in fake.default_scopes

    def test_drifted_mapper_config_is_repaired_in_place(self, fake, admin, opts):
        result = install(admin, opts)
        mappers = fake.scopes[result.client_scope_id]["protocolMappers"]
        mappers[0]["config"]["id.token.claim"] = "false"

        install(admin, opts)

        assert len(mappers) == 3
        assert mappers[0]["config"]["id.token.claim"] == "true"


class TestIdempotency:
    def test_second_install_writes_nothing(self, fake, admin, opts):
        first = install(admin, opts)
        fake.calls.clear()

        second = install(admin, opts)

        assert fake.writes() == []
        assert first.changed is True
        assert second.changed is False

    def test_second_install_returns_the_same_ids_and_secret(self, fake, admin, opts):
        first = install(admin, opts)

        ids = [(e["id"], e["config"]) for e in fake.execution_of("stepup-bridge")]

        second = install(admin, opts)

        assert [(e["id"], e["config"]) for e in fake.execution_of("stepup-bridge")] == ids
        assert second.client_scope_id == first.client_scope_id
        assert second.bridge_client_secret == first.bridge_client_secret

    def test_nothing_is_duplicated(self, fake, admin, opts):
        install(admin, opts)
        install(admin, opts)

        assert len(fake.execution_of("stepup-bridge")) == 1
        assert [f["alias"] for f in fake.flows.values()].count("browser-stepup") == 1
        assert [s["name"] for s in fake.scopes.values()].count("stepup") == 1
        assert len(fake.configs) == 1


def test_result_tells_the_bridge_how_to_register_keycloak(fake, admin: KeycloakAdmin, opts):
    result = install(admin, opts)

    assert result.flow_alias == "browser-stepup"
    assert result.bridge_client_id == "keycloak-acme"
    base = f"{BASE}/realms/acme/login-actions"
    assert result.redirect_uri_prefixes == [
        f"{base}/authenticate",
        f"{base}/reset-credentials",
        f"{base}/registration",
        f"{base}/post-broker-login",
        f"{base}/first-broker-login",
    ]
    assert result.covered == ("browser",)


@pytest.mark.parametrize(("realm", "segment"), [
    ("o'brien", "o'brien"),
    ("my realm", "my%20realm"),
    ("zürich", "z%C3%BCrich"),
    ("a:b@c!$&()*+,;=~", "a:b@c!$&()*+,;=~"),
    ("a/b?c#d", "a%2Fb%3Fc%23d"),
])
def test_redirect_uri_prefixes_write_the_realm_as_keycloak_does(realm, segment):
    """Keycloak's own URLs keep sub-delims, ':' and '@' in a path segment (found by a review:
    a realm o'brien was registered as o%27brien and no callback ever matched)."""
    assert options(realm=realm).redirect_uri_prefixes[0] == (
        f"{BASE}/realms/{segment}/login-actions/authenticate")


def test_flow_with_separate_password_form_gets_stepup_after_it(fake, admin, opts: InstallOptions):
    forms = fake.flow_by_alias("forms")
    (password,) = [e for e in fake.children(forms["id"]) if e["authenticator"]]
    password["authenticator"] = "auth-password-form"

    install(admin, opts)

    assert [name for name, _ in fake.layout(FORMS)][:2] == ["auth-password-form", "stepup-bridge"]


def test_copies_the_flow_the_realm_has_bound_not_the_stock_one(fake, admin, opts):
    """A realm whose own browser flow adds checks keeps them in front of the step-up."""
    fake.copy_flow({"newName": "my-browser"}, "browser")
    fake.realm["browserFlow"] = "my-browser"

    install(admin, opts)

    assert posts_to(fake, "/authentication/flows/my-browser/copy") == [
        {"newName": "browser-stepup"}
    ]
    assert posts_to(fake, "/authentication/flows/browser/copy") == []
    assert fake.realm["attributes"]["stepup.previousBrowserFlow"] == "my-browser"


@pytest.mark.parametrize(("binding", "source", "door"), [
    ("browserFlow", "browser", "browser"),
    ("resetCredentialsFlow", "reset credentials", "reset-credentials"),
])
def test_a_flow_bound_after_install_is_not_dropped_by_a_re_run(fake, admin, binding, source,
                                                               door):
    """The administrator bound a new flow of theirs (without the step) after install: a re-run
    would bind the old copy again and lose what theirs adds. It refuses, saying how to put
    the step into a copy of the new one, and changes nothing."""
    opts = options()  # every door
    install(admin, opts)
    fake.copy_flow({"newName": "theirs v2"}, source)
    fake.realm[binding] = "theirs v2"
    fake.calls.clear()

    with pytest.raises(ProvisioningError) as error:
        install(admin, opts)
    assert f"run `stepup keycloak uninstall --cover {door}`, then install again" in str(
        error.value)
    assert fake.realm[binding] == "theirs v2" and fake.writes() == []
    if door == "browser":  # audit's advice is the same
        assert any(f"uninstall --cover {door}`, then" in str(f) for f in audit(admin, opts))

    uninstall(admin, options(cover=(door,)))
    install(admin, opts)
    assert posts_to(fake, "/authentication/flows/theirs v2/copy")
    assert fake.realm["attributes"][{"browserFlow": "stepup.previousBrowserFlow",
                                     "resetCredentialsFlow": "stepup.previousResetCredentialsFlow"}
                                    [binding]] == "theirs v2"


def browser_findings(admin, opts) -> list[str]:
    return [str(f) for f in audit(admin, opts) if f.door == "browser"]


def source_flow(fake, alias: str, forms: list) -> None:
    """A browser flow of the administrator's: Cookie, then ``forms`` (as fake_flows' specs),
    ALTERNATIVE, and bound."""
    flow = fake._add_flow(alias, top_level=True, built_in=False)
    fake._seed(flow, [("auth-cookie", "ALTERNATIVE", None),
                      (f"{alias} forms", "ALTERNATIVE", forms)])
    fake.realm["browserFlow"] = alias


#: Username, then a passkey or the password, in a REQUIRED sub-flow of their own.
PASSKEY_OR_PASSWORD = [
    ("auth-username-form", "REQUIRED", None),
    ("passkeys auth", "REQUIRED", [
        ("webauthn-authenticator-passwordless", "ALTERNATIVE", None),
        ("auth-password-form", "ALTERNATIVE", None),
    ]),
]


class TestPasswordAmongAlternatives:
    """In a (sub-)flow with a REQUIRED execution Keycloak skips the ALTERNATIVE ones: a step-up
    put REQUIRED beside a password form that is one of several ways in would skip the password
    (and the passkey) and let a username alone through to the bridge."""

    def test_the_step_follows_the_sub_flow_that_holds_the_password_and_a_passkey(
            self, fake, admin, opts):
        source_flow(fake, "passkeys", PASSKEY_OR_PASSWORD)
        install(admin, opts)

        assert fake.layout("browser-stepup passkeys forms") == [
            ("auth-username-form", "REQUIRED"), ("browser-stepup passkeys auth", "REQUIRED"),
            ("stepup-bridge", "REQUIRED")]
        assert fake.layout("browser-stepup passkeys auth") == [
            ("webauthn-authenticator-passwordless", "ALTERNATIVE"),
            ("auth-password-form", "ALTERNATIVE")]
        assert fake.realm["browserFlow"] == "browser-stepup"
        assert browser_findings(admin, opts) == []
        install(admin, opts)  # again: nothing moves
        assert [name for name, _ in fake.layout("browser-stepup passkeys forms")][-1] == (
            "stepup-bridge")

    def test_levels_are_refused_where_they_would_turn_the_passkey_off(self, fake, admin):
        """With --conditional-loa the password's level sub-flow would stand CONDITIONAL among
        the ALTERNATIVE ways in, and Keycloak would skip the passkey: refused, nothing bound."""
        source_flow(fake, "passkeys", PASSKEY_OR_PASSWORD)

        with pytest.raises(ProvisioningError) as error:
            install(admin, options(conditional_loa=2, cover=("browser",)))
        assert "with --conditional-loa its level sub-flow would turn the others off" in str(
            error.value)
        assert fake.realm["browserFlow"] == "passkeys"
        assert fake.flow_by_alias("browser-stepup") is None

    def test_a_step_an_earlier_install_put_among_the_alternatives_is_moved_out(
            self, fake, admin, opts):
        source_flow(fake, "passkeys", PASSKEY_OR_PASSWORD)
        install(admin, opts)
        inner = fake.flow_by_alias("browser-stepup passkeys auth")
        fake._add_execution(inner["id"], "REQUIRED", authenticator="stepup-bridge")
        assert "before anything proves who the user is" in str(browser_findings(admin, opts))

        install(admin, opts)
        assert [n for n, _ in fake.layout("browser-stepup passkeys auth")] == [
            "webauthn-authenticator-passwordless", "auth-password-form"]
        assert browser_findings(admin, opts) == []

    def test_an_alternative_keycloak_skips_beside_a_required_password_changes_nothing(
            self, fake, admin, opts):
        """Beside a REQUIRED password form Keycloak skips an ALTERNATIVE OTP form: the step
        goes after the password as always (not refused)."""
        source_flow(fake, "otp-alt", [("auth-username-password-form", "REQUIRED", None),
                                      ("auth-otp-form", "ALTERNATIVE", None)])
        install(admin, opts)
        assert fake.layout("browser-stepup otp-alt forms") == [
            ("auth-username-password-form", "REQUIRED"), ("stepup-bridge", "REQUIRED"),
            ("auth-otp-form", "ALTERNATIVE")]
        assert browser_findings(admin, opts) == []

    def test_a_disabled_password_form_is_passed_over_for_the_one_in_use(self, fake, admin,
                                                                        opts):
        """Identity-first: the combined form switched off, a Username Form and a Password
        Form in its place."""
        source_flow(fake, "identity-first", [
            ("auth-username-password-form", "DISABLED", None),
            ("auth-username-form", "REQUIRED", None),
            ("auth-password-form", "REQUIRED", None)])
        install(admin, opts)
        assert [n for n, _ in fake.layout("browser-stepup identity-first forms")] == [
            "auth-username-password-form", "auth-username-form", "auth-password-form",
            "stepup-bridge"]
        assert browser_findings(admin, opts) == []

    def test_a_password_form_in_a_disabled_sub_flow_is_passed_over_too(self, fake, admin,
                                                                      opts):
        source_flow(fake, "identity-first", [
            ("identity-first old", "DISABLED", [
                ("auth-username-password-form", "REQUIRED", None)]),
            ("auth-username-form", "REQUIRED", None),
            ("auth-password-form", "REQUIRED", None)])
        install(admin, opts)
        assert [n for n, _ in fake.layout("browser-stepup identity-first forms")][-1] == (
            "stepup-bridge")
        assert browser_findings(admin, opts) == []

    def test_a_layout_whose_step_would_come_before_a_first_factor_is_never_bound(
            self, fake, admin, opts):
        """A username alone as one of the ways in beside the password: after their sub-flow
        the step would follow a way that proves nobody. Refused; the realm as it was."""
        source_flow(fake, "username-or-password", [
            ("username-or-password choice", "REQUIRED", [
                ("auth-username-form", "ALTERNATIVE", None),
                ("auth-password-form", "ALTERNATIVE", None)])])
        with pytest.raises(ProvisioningError) as error:
            install(admin, opts)
        assert "would run the step-up before the password form; it was not bound" in str(
            error.value)
        assert "(nothing was changed)" in str(error.value)
        assert fake.realm["browserFlow"] == "username-or-password"
        assert fake.flow_by_alias("browser-stepup") is None

    def test_a_flow_without_a_password_form_is_refused_naming_it(self, fake, admin, opts):
        source_flow(fake, "certificates", [("auth-username-form", "REQUIRED", None)])
        with pytest.raises(ProvisioningError) as error:
            install(admin, opts)
        assert str(error.value).startswith("flow 'certificates' has no password form")
        assert "(nothing was changed)" in str(error.value)
        assert fake.flow_by_alias("browser-stepup") is None

    @pytest.mark.parametrize("forms", [
        [("auth-username-password-form", "ALTERNATIVE", None),
         ("auth-spnego", "ALTERNATIVE", None)],
    ], ids=["password-or-kerberos"])
    def test_no_sub_flow_holding_the_alternatives_stops_install_before_binding(
            self, fake, admin, opts, forms):
        source_flow(fake, "kerberos", forms)
        with pytest.raises(ProvisioningError) as error:
            install(admin, opts)
        assert "the password form is one of several ALTERNATIVE ways in" in str(error.value)
        assert fake.realm["browserFlow"] == "kerberos"  # the realm logs in as before
        assert fake.execution_of("stepup-bridge") == []
        assert fake.flow_by_alias("browser-stepup") is None  # and has no unusable copy


def test_a_flow_alias_with_url_characters_is_read_and_copied(fake, admin, opts):
    """The admin console takes "/", "?" and "#" in an alias; python-keycloak puts aliases in
    URL paths as they are, which asked Keycloak for another path (404)."""
    source_flow(fake, "team/browser?v=2#1", [("auth-username-password-form", "REQUIRED", None)])
    assert browser_findings(admin, opts) != []  # audited before install too
    install(admin, opts)
    assert fake.layout("browser-stepup team/browser?v=2#1 forms") == [
        ("auth-username-password-form", "REQUIRED"), ("stepup-bridge", "REQUIRED")]
    assert browser_findings(admin, opts) == []
