"""install() and uninstall() on the doors besides the browser flow: the password reset, the
identity providers' post login flow and the direct grant; narrowing and widening ``cover``."""

from __future__ import annotations

import pytest
from conftest import options

from stepup_keycloak import ProvisioningError, audit, connect, install, uninstall

RESET = "reset-credentials-stepup"
REGISTRATION = "registration-stepup"
BROKER = "post-broker-stepup"
DIRECT = "direct-grant-stepup"


def test_reset_flow_is_a_copy_with_the_step_after_the_email(fake, admin, opts):
    install(admin, opts)

    assert fake.layout(RESET) == [
        ("reset-credentials-choose-user", "REQUIRED"),
        ("reset-credential-email", "REQUIRED"),
        ("stepup-bridge", "REQUIRED"),
        ("reset-password", "REQUIRED"),
        (f"{RESET} Reset - Conditional OTP", "CONDITIONAL"),
    ]
    assert fake.realm["resetCredentialsFlow"] == RESET
    assert fake.realm["attributes"]["stepup.previousResetCredentialsFlow"] == "reset credentials"
    assert fake.layout("reset credentials")[2] == ("reset-password", "REQUIRED")


def test_the_bound_reset_flow_is_copied_not_the_stock_one(fake, admin, opts):
    fake.copy_flow({"newName": "corporate reset"}, "reset credentials")
    fake.realm["resetCredentialsFlow"] = "corporate reset"

    install(admin, opts)
    assert [b for m, p, b in fake.calls if p.endswith("/corporate reset/copy")] == [
        {"newName": RESET}]

    uninstall(admin, opts)
    assert fake.realm["resetCredentialsFlow"] == "corporate reset"


def test_registration_flow_is_a_copy_with_the_step_after_the_form(fake, admin, opts):
    """A self-registered user enrolls at the bridge before the first session: the account
    exists once the registration form is done, so the step goes right after it."""
    install(admin, opts)

    assert fake.layout(REGISTRATION) == [
        (f"{REGISTRATION} registration form", "REQUIRED"), ("stepup-bridge", "REQUIRED")]
    assert fake.realm["registrationFlow"] == REGISTRATION
    assert fake.realm["attributes"]["stepup.previousRegistrationFlow"] == "registration"

    uninstall(admin, opts)
    assert fake.realm["registrationFlow"] == "registration"
    assert fake.flow_by_alias(REGISTRATION) is None


def test_every_identity_provider_gets_the_post_login_flow(fake, admin, opts):
    fake.add_idp("google")
    fake.add_idp("partner", postBrokerLoginFlowAlias="browser")

    result = install(admin, opts)

    assert fake.layout(BROKER) == [("stepup-bridge", "REQUIRED")]
    assert result.identity_providers == ["google", "partner"]
    assert {a: i["postBrokerLoginFlowAlias"] for a, i in fake.idps.items()} == {
        "google": BROKER, "partner": BROKER}
    assert fake.idps["partner"]["config"]["stepup.previousPostBrokerLoginFlow"] == "browser"
    assert fake.idps["google"]["config"]["clientSecret"] == "**********"  # sent back masked


def test_identity_providers_past_the_first_hundred_get_it_too(fake, admin, opts):
    """Keycloak 26 lists 100 identity providers unless asked for more (realms with an
    organization per customer have more): install reads every page."""
    for n in range(250):
        fake.add_idp(f"customer-{n:03}")

    result = install(admin, opts)

    assert len(result.identity_providers) == 250
    assert {i["postBrokerLoginFlowAlias"] for i in fake.idps.values()} == {BROKER}
    uninstall(admin, opts)
    assert not any("postBrokerLoginFlowAlias" in i for i in fake.idps.values())


def test_uninstall_gives_identity_providers_their_flow_back(fake, admin, opts):
    fake.add_idp("google")
    fake.add_idp("partner", postBrokerLoginFlowAlias="browser")
    install(admin, opts)

    uninstall(admin, opts)

    assert "postBrokerLoginFlowAlias" not in fake.idps["google"]
    assert fake.idps["partner"]["postBrokerLoginFlowAlias"] == "browser"
    assert "stepup.previousPostBrokerLoginFlow" not in fake.idps["partner"]["config"]
    assert fake.flow_by_alias(BROKER) is None


def test_direct_grant_copy_gets_the_step_after_the_password(fake, admin, opts):
    install(admin, opts)

    assert [name for name, _ in fake.layout(DIRECT)][:3] == [
        "direct-grant-validate-username", "direct-grant-validate-password", "stepup-bridge"]
    assert fake.realm["directGrantFlow"] == DIRECT


def test_install_refuses_to_close_the_password_grant_of_its_own_admin_login(fake):
    """Found by a review: an admin of the realm itself logs in by password through admin-cli,
    that is through the realm's direct grant flow, which the door makes refuse every grant:
    the next run (audit, uninstall) could not log in."""
    opts = options(admin_realm="acme")
    fake.users[("acme", "admin")] = opts.admin_password
    admin = connect(opts)

    with pytest.raises(ProvisioningError, match=r"--admin-client-id.*--cover browser,"
                       r"reset-credentials,registration,brokers\); nothing was changed"):
        install(admin, opts)
    assert fake.writes() == []

    install(admin, options(admin_realm="acme", cover=("browser", "brokers")))
    assert fake.realm.get("directGrantFlow") != DIRECT


def test_every_step_shares_one_secret_and_the_bridge_settings(fake, admin, opts):
    fake.add_idp("google")
    result = install(admin, opts)

    configs = [fake.configs[e["config"]]["config"] for e in fake.execution_of("stepup-bridge")]
    assert len(configs) == 5
    assert {c["stepup.clientSecret"] for c in configs} == {result.bridge_client_secret}
    assert {c["stepup.issuer"] for c in configs} == {"https://mfa.example.test"}


def test_a_post_login_flow_of_the_administrators_with_the_step_stays(fake, admin, opts):
    """Keycloak runs one post login flow per provider: replacing one that has the step would
    drop whatever else it checks."""
    fake.add_idp("google")
    install(admin, opts)
    fake.copy_flow({"newName": "partners gated"}, BROKER)  # the step, and (say) a group check
    fake.add_idp("partner", postBrokerLoginFlowAlias="partners gated")

    install(admin, opts)
    assert fake.idps["partner"]["postBrokerLoginFlowAlias"] == "partners gated"
    assert fake.idps["google"]["postBrokerLoginFlowAlias"] == BROKER
    assert "brokers" not in [f.door for f in audit(admin, opts)]

    uninstall(admin, opts)
    assert fake.idps["partner"]["postBrokerLoginFlowAlias"] == "partners gated"


def test_narrowing_cover_undoes_the_doors_left_out_and_widening_restores_them(fake, admin, opts):
    fake.add_idp("google")
    first = install(admin, opts)

    narrowed = install(admin, options(cover=("browser",)))
    assert narrowed.covered == ("browser",)
    assert fake.realm["resetCredentialsFlow"] == "reset credentials"
    assert fake.realm["directGrantFlow"] == "direct grant"
    assert "postBrokerLoginFlowAlias" not in fake.idps["google"]
    assert {fake.flow_by_alias(f) for f in (RESET, BROKER, DIRECT)} == {None}
    assert fake.realm["browserFlow"] == "browser-stepup"

    again = install(admin, opts)
    assert again.bridge_client_secret == first.bridge_client_secret
    assert fake.realm["resetCredentialsFlow"] == RESET


def test_full_install_then_second_run_writes_nothing(fake, admin, opts):
    fake.add_idp("google")
    install(admin, opts)
    fake.calls.clear()

    assert install(admin, opts).changed is False
    assert fake.writes() == []


def test_existing_clients_get_the_scope_and_keep_it_across_re_runs(fake, admin, opts):
    app = fake.add_client("app")
    fake.add_client("api", bearerOnly=True)
    fake.add_client("saml-app", protocol="saml")

    result = install(admin, options(existing_clients=True))
    assert result.clients_scoped == ["app"]
    assert "stepup" in app["defaultClientScopes"]

    for changed in ({"conditional_loa": 2}, {"cover": ("browser",)}, {}):
        install(admin, options(**changed))
        assert "stepup" in app["defaultClientScopes"], changed

    uninstall(admin, opts)
    assert "stepup" not in app["defaultClientScopes"]


def test_full_uninstall_leaves_no_flow_config_or_binding_of_ours(fake, admin, opts):
    fake.add_idp("google")
    install(admin, options(conditional_loa=2, bridge_acr="urn:mfa"))

    uninstall(admin, opts)

    assert fake.configs == {}
    ours = [f["alias"] for f in fake.flows.values() if "stepup" in f["alias"]]
    assert ours == []
    assert (fake.realm["browserFlow"], fake.realm["resetCredentialsFlow"],
            fake.realm["directGrantFlow"]) == ("browser", "reset credentials", "direct grant")
    assert not [k for k in fake.realm["attributes"] if k.startswith("stepup.")]
    assert fake.realm["attributes"]["acr.loa.map"] == "{}"


def test_client_overrides_without_the_step_are_pointed_at_ours_and_back(fake, admin, opts):
    browser_id = fake.flow_by_alias("browser")["id"]
    grant_id = fake.flow_by_alias("direct grant")["id"]
    app = fake.add_client("override-app", attributes={"pkce.code.challenge.method": "S256"},
                          authenticationFlowBindingOverrides={"browser": browser_id,
                                                              "direct_grant": grant_id})
    install(admin, opts)
    fake.copy_flow({"newName": "kiosk"}, "browser-stepup")  # a custom flow with the step
    kiosk = fake.add_client("kiosk", authenticationFlowBindingOverrides={
        "browser": fake.flow_by_alias("kiosk")["id"]})

    install(admin, opts)

    assert app["authenticationFlowBindingOverrides"] == {
        "browser": fake.flow_by_alias("browser-stepup")["id"],
        "direct_grant": fake.flow_by_alias(DIRECT)["id"]}
    assert app["attributes"]["stepup.previousOverride.browser"] == browser_id
    assert app["attributes"]["pkce.code.challenge.method"] == "S256"
    assert kiosk["authenticationFlowBindingOverrides"]["browser"] == (
        fake.flow_by_alias("kiosk")["id"])

    uninstall(admin, opts)

    assert app["authenticationFlowBindingOverrides"] == {
        "browser": browser_id, "direct_grant": grant_id}
    assert "stepup.previousOverride.browser" not in app["attributes"]


def test_a_second_step_added_by_hand_to_the_post_broker_flow_goes(fake, admin, opts):
    """As in the browser copy: install keeps one step in its own flow, with this bridge's
    config, so the step config line it printed goes away."""
    install(admin, opts)
    broker = fake.flow_by_alias(BROKER)["id"]
    (ours,) = [e for e in fake.execution_of("stepup-bridge") if e["parent"] == broker]
    fake.configs["stray"] = dict(fake.configs[ours["config"]], id="stray", alias="stray", config={
        **fake.configs[ours["config"]]["config"], "stepup.issuer": "https://old.example"})
    fake._add_execution(broker, "REQUIRED", authenticator="stepup-bridge", config="stray")

    install(admin, opts)
    steps = [e for e in fake.execution_of("stepup-bridge") if e["parent"] == broker]
    assert len(steps) == 1
    assert fake.configs[steps[0]["config"]]["config"]["stepup.issuer"] == opts.bridge_issuer
