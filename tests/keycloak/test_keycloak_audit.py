"""audit(): every way into the realm that does not pass the step-up, judged like Keycloak runs
flows; read-only."""

from __future__ import annotations

import pytest
from conftest import options

from stepup_keycloak import audit, install

FORMS = "browser-stepup forms"


def doors(findings) -> list[str]:
    return [f.door for f in findings]


def set_requirement(fake, flow: str, provider: str, requirement: str) -> None:
    parent = fake.flow_by_alias(flow)
    (execution,) = [e for e in fake.children(parent["id"]) if e["authenticator"] == provider]
    execution["requirement"] = requirement


def test_fresh_realm_has_its_browser_reset_and_broker_doors_open(fake, admin, opts):
    fake.add_idp("google")
    fake.add_client("admin-cli", directAccessGrantsEnabled=True)

    findings = audit(admin, opts)

    assert doors(findings) == ["browser", "reset-credentials", "direct grant", "brokers"]
    assert "client 'admin-cli' accepts the password grant" in str(findings[2])
    assert "identity provider 'google' has no post login flow" in str(findings[3])
    assert all(" — " in str(f) for f in findings)  # each line says what to change
    assert fake.writes() == []


def test_after_install_no_door_is_open(fake, admin, opts):
    fake.add_idp("google")
    fake.add_client("admin-cli", directAccessGrantsEnabled=True)
    install(admin, opts)

    assert audit(admin, opts) == []


def test_an_identity_provider_past_the_first_hundred_is_audited(fake, admin, opts):
    for n in range(150):
        fake.add_idp(f"customer-{n:03}")
    install(admin, opts)
    fake.add_idp("customer-150")  # added after install: no post login flow

    findings = audit(admin, opts)
    assert doors(findings) == ["brokers"] and "'customer-150'" in str(findings[0])


def test_after_narrowing_exactly_the_doors_left_out_are_open(fake, admin):
    fake.add_idp("google")
    fake.add_client("legacy", directAccessGrantsEnabled=True)
    install(admin, options(cover=("browser", "brokers")))

    assert doors(audit(admin, options())) == ["reset-credentials", "direct grant"]


@pytest.mark.parametrize("requirement", ["DISABLED", "ALTERNATIVE"])
def test_a_step_that_can_be_walked_around_is_reported(fake, admin, opts, requirement):
    install(admin, options(cover=("browser",)))
    set_requirement(fake, FORMS, "stepup-bridge", requirement)

    assert doors(audit(admin, opts)) == ["browser", "reset-credentials"]


def test_a_conditional_step_runs_as_required(fake, admin, opts):
    """Keycloak skips CONDITIONAL sub-flows by their conditions; an execution set CONDITIONAL
    (older versions of the authenticator offered it) it runs like REQUIRED."""
    install(admin, options(cover=("browser",)))
    set_requirement(fake, FORMS, "stepup-bridge", "CONDITIONAL")

    assert doors(audit(admin, opts)) == ["reset-credentials"]


def test_the_level_layout_counts_as_the_administrators_choice(fake, admin, opts):
    install(admin, options(conditional_loa=2))

    assert audit(admin, opts) == []


@pytest.mark.parametrize(("password_level", "open_doors"), [("1", []), ("2", ["browser"]),
                                                            ("3", ["browser"])])
def test_a_level_step_up_must_ask_for_more_than_the_level_before_it(fake, admin, opts,
                                                                    password_level, open_doors):
    """The password's level sub-flow at the step's level (or above) reaches that level
    itself: the step's condition never matches again, and no login meets the bridge."""
    install(admin, options(conditional_loa=2))
    password = fake.flow_by_alias("browser-stepup password")["id"]
    (condition,) = [e for e in fake.execution_of("conditional-level-of-authentication")
                    if e["parent"] == password]
    fake.configs[condition["config"]]["config"]["loa-condition-level"] = password_level

    assert doors(audit(admin, opts)) == open_doors


def test_a_level_sub_flow_counts_only_where_a_browser_asks_for_a_level(fake, admin, opts):
    """The password grant asks for no level: once the level-1 password sub-flow has set one,
    the level-2 step's condition does not match, and the password alone gets tokens. The same
    flow passes as a browser override, where a client asks for the level."""
    install(admin, options(conditional_loa=2))
    stepped = fake.flow_by_alias("browser-stepup")["id"]
    fake.add_client("legacy", directAccessGrantsEnabled=True,
                    authenticationFlowBindingOverrides={"browser": stepped,
                                                        "direct_grant": stepped})

    findings = audit(admin, opts)
    assert doors(findings) == ["client flow override", "direct grant"]
    assert "overrides its direct_grant flow with 'browser-stepup'" in str(findings[0])
    assert "client 'legacy' accepts the password grant" in str(findings[1])


def move_before(fake, flow: str, provider: str, anchor: str) -> None:
    """The step moved up, in ``flow``, to just before ``anchor`` (priority as the console sets)."""
    parent = fake.flow_by_alias(flow)
    kids = fake.children(parent["id"])
    (step,) = [e for e in kids if e["authenticator"] == provider]
    (before,) = [e for e in kids if e["authenticator"] == anchor]
    step["priority"] = before["priority"] - 1


@pytest.mark.parametrize(("door", "flow", "anchor"), [
    ("browser", FORMS, "auth-username-password-form"),
    ("reset-credentials", "reset-credentials-stepup", "reset-credential-email"),
])
def test_a_step_before_the_first_factor_is_reported(fake, admin, opts, door, flow, anchor):
    """Reached by typing a username (before the password form, or before the reset e-mail),
    the bridge would let anyone set up an authenticator on an account that has none."""
    install(admin, opts)
    move_before(fake, flow, "stepup-bridge", anchor)

    findings = audit(admin, opts)
    assert doors(findings) == [door]
    assert "before anything proves who the user is" in str(findings[0])
    assert f"{flow!r}" in str(findings[0])


def test_a_step_after_an_identity_first_password_form_passes(fake, admin, opts):
    """Username form, then password form, then the step: the password proved the user."""
    install(admin, opts)
    forms = fake.children(fake.flow_by_alias(FORMS)["id"])
    (password,) = [e for e in forms if e["authenticator"] == "auth-username-password-form"]
    password["authenticator"] = "auth-password-form"
    fake._add_execution(fake.flow_by_alias(FORMS)["id"], "REQUIRED",
                        authenticator="auth-username-form")["priority"] = password["priority"] - 1

    assert audit(admin, opts) == []
    move_before(fake, FORMS, "stepup-bridge", "auth-password-form")  # now between the two
    assert doors(audit(admin, opts)) == ["browser"]


def username_then_step(fake, alias: str, *between: str) -> str:
    """A top-level flow (its id): Username Form, ``between``, then the step as install
    configured it (this bridge), each REQUIRED."""
    flow = fake._add_flow(alias, top_level=True, built_in=False)
    for provider in ("auth-username-form", *between):
        fake._add_execution(flow["id"], "REQUIRED", authenticator=provider)
    (installed,) = [e for e in fake.execution_of("stepup-bridge")
                    if e["parent"] == fake.flow_by_alias(FORMS)["id"]]
    fake._add_execution(flow["id"], "REQUIRED", authenticator="stepup-bridge",
                        config=installed["config"])
    return flow["id"]


@pytest.mark.parametrize("form", ["auth-otp-form", "webauthn-authenticator",
                                  "webauthn-authenticator-passwordless",
                                  "auth-recovery-authn-code-form"])
def test_a_form_keycloak_skips_for_users_without_its_credential_proves_nobody(
        fake, admin, opts, form):
    """For a user with no OTP, passkey or recovery codes Keycloak skips that REQUIRED form and
    only queues setting one up: after a username and such a form, the step is reached by
    anyone who types a username."""
    install(admin, opts)
    username_then_step(fake, "otp-first", form)
    fake.realm["browserFlow"] = "otp-first"

    findings = audit(admin, opts)
    assert doors(findings) == ["browser"]
    assert "'otp-first'" in str(findings[0])
    assert "before anything proves who the user is" in str(findings[0])


def test_keycloaks_passwordless_layout_passes(fake, admin, opts):
    """Username Form, then a passkey OR (password and OTP), then the step: as an ALTERNATIVE
    a passkey form is no skip, a user without a passkey must pass the password."""
    install(admin, opts)
    flow = fake._add_flow("passwordless", top_level=True, built_in=False)
    fake._add_execution(flow["id"], "REQUIRED", authenticator="auth-username-form")
    options = fake._add_flow("passwordless options", top_level=False, built_in=False)
    fake._add_execution(flow["id"], "REQUIRED", flow_id=options["id"])
    fake._add_execution(options["id"], "ALTERNATIVE",
                        authenticator="webauthn-authenticator-passwordless")
    password = fake._add_flow("passwordless password", top_level=False, built_in=False)
    fake._add_execution(options["id"], "ALTERNATIVE", flow_id=password["id"])
    for provider in ("auth-password-form", "auth-otp-form"):
        fake._add_execution(password["id"], "REQUIRED", authenticator=provider)
    (installed,) = [e for e in fake.execution_of("stepup-bridge")
                    if e["parent"] == fake.flow_by_alias(FORMS)["id"]]
    fake._add_execution(flow["id"], "REQUIRED", authenticator="stepup-bridge",
                        config=installed["config"])
    client = fake.add_client("passkeys", authenticationFlowBindingOverrides={
        "browser": flow["id"]})

    assert audit(admin, opts) == []
    install(admin, opts)  # the override is the administrator's and stays
    assert client["authenticationFlowBindingOverrides"]["browser"] == flow["id"]


def test_a_client_override_with_the_step_after_a_username_alone_is_repointed(fake, admin,
                                                                                opts):
    """The step comes after a first factor on a client's browser override too; install points
    such an override at its own flow, as it does one without the step."""
    install(admin, opts)
    early = username_then_step(fake, "username-step")
    client = fake.add_client("rp2", authenticationFlowBindingOverrides={"browser": early})

    findings = audit(admin, opts)
    assert doors(findings) == ["client flow override"]
    assert ("client 'rp2' overrides its browser flow with 'username-step': Stepup Bridge MFA "
            "in 'username-step'") in str(findings[0])
    assert "before anything proves who the user is" in str(findings[0])

    install(admin, opts)
    assert client["authenticationFlowBindingOverrides"]["browser"] == fake.flow_by_alias(
        "browser-stepup")["id"]
    assert audit(admin, opts) == []


def test_the_flow_a_client_policy_selects_is_judged_as_a_browser_door(fake, admin, opts):
    """A client policy's Authentication flow selector sends the logins of the clients it
    matches to its flow, ahead of their overrides and the realm's binding: each enabled one,
    the realm's or a global one, is judged like the browser door."""
    install(admin, opts)
    username_then_step(fake, "username-step")
    fake.select_flow("to-builtin", "browser")
    fake.select_flow("to-early", "username-step", scope="global")
    fake.select_flow("switched-off", "browser", enabled=False)
    fake.select_flow("to-stepup", "browser-stepup")
    fake.select_flow("to-nothing", "no-such-flow")  # Keycloak fails those logins
    fake.select_flow("no-conditions", "browser", conditions=False)  # Keycloak applies none

    findings = [str(f) for f in audit(admin, opts)]
    assert len(findings) == 2, findings
    assert findings[0].startswith(
        "client policy: client policy 'to-early' sends the logins of the clients it matches to "
        "'username-step': Stepup Bridge MFA in 'username-step'")
    assert findings[1].startswith(
        "client policy: client policy 'to-builtin' sends the logins of the clients it matches "
        "to 'browser', which lets users in without the step-up")
    assert "Authentication flow selector" in findings[1]
    assert fake.writes() == [c for c in fake.writes() if "client-policies" not in c[1]]


def test_a_flow_selector_that_gives_the_step_ups_level_without_it_is_reported(fake, admin):
    """Found by a review: the selector's auth-flow-loa becomes the login's level when its flow
    ends (Keycloak's AcrStore), so a password-only login through the conditional layout got the
    step-up's acr. Below that level, or with the step run unconditionally, it gives nothing."""
    loa_opts = options(conditional_loa=2, cover=("browser",))
    install(admin, loa_opts)
    fake.copy_flow({"newName": "always"}, "browser-stepup")
    forms = fake.flow_by_alias("always browser-stepup forms")
    step_up = fake.flow_by_alias("always browser-stepup step-up")
    (execution,) = [e for e in fake.children(forms["id"]) if e["flow_id"] == step_up["id"]]
    execution["requirement"] = "REQUIRED"  # Keycloak runs it without asking its condition
    fake.select_flow("claims-mfa", "browser-stepup")
    fake.select_flow("claims-password", "browser-stepup")
    fake.select_flow("runs-the-step", "always")
    for profile, level in zip(fake.client_profiles, ("2", "1", "2"), strict=True):
        profile["executors"][0]["configuration"]["auth-flow-loa"] = level

    findings = [str(f) for f in audit(admin, loa_opts) if f.door == "client policy"]
    assert len(findings) == 1, findings
    assert findings[0].startswith(
        "client policy: client policy 'claims-mfa' sends the logins of the clients it matches "
        "to 'browser-stepup' and gives its logins level 2 when that flow ends (auth-flow-loa), "
        "the level at which 'browser-stepup' runs the step-up only when asked: a password "
        "alone gets the step-up's acr")


def test_a_level_sub_flow_that_only_denies_is_no_step_up(fake, admin, opts):
    """Deny access closes the ways through it, but a level-2 sub-flow holding only that (no
    step) leaves every level-1 login without the step: the browser door is open."""
    install(admin, options(conditional_loa=2, cover=("browser",)))
    set_requirement(fake, "browser-stepup step-up", "stepup-bridge", "DISABLED")
    flow = fake.flow_by_alias("browser-stepup step-up")
    fake._add_execution(flow["id"], "REQUIRED", authenticator="deny-access-authenticator")

    assert doors(audit(admin, opts)) == ["browser", "reset-credentials"]


def test_a_step_that_hands_off_to_another_bridge_is_reported(fake, admin, opts):
    """A test bridge's address left in the step: users pass on that bridge's say."""
    install(admin, opts)
    (step,) = [e for e in fake.execution_of("stepup-bridge")
               if e["parent"] == fake.flow_by_alias(FORMS)["id"]]
    fake.configs[step["config"]]["config"]["stepup.issuer"] = "https://test-bridge.example"

    findings = audit(admin, opts)
    assert doors(findings) == ["step config"]
    assert "'browser-stepup'" in str(findings[0]) and "https://test-bridge.example" in str(
        findings[0])


def test_an_enabled_kerberos_alternative_is_a_way_around(fake, admin, opts):
    install(admin, opts)
    set_requirement(fake, "browser-stepup", "auth-spnego", "ALTERNATIVE")

    assert doors(audit(admin, opts)) == ["browser"]


def test_reset_door_is_closed_when_forgot_password_is_off(fake, admin, opts):
    install(admin, options(cover=("browser", "brokers", "direct-grant")))
    fake.realm["resetPasswordAllowed"] = False

    assert audit(admin, opts) == []


def test_client_overrides_and_backchannel_grants_are_reported(fake, admin, opts):
    install(admin, opts)
    browser_id = fake.flow_by_alias("browser")["id"]
    fake.add_client("override-app", authenticationFlowBindingOverrides={"browser": browser_id})
    fake.add_client("call-center", attributes={"oidc.ciba.grant.enabled": "true"})
    fake.add_client("api", bearerOnly=True, directAccessGrantsEnabled=True)

    findings = [str(f) for f in audit(admin, opts)]

    assert len(findings) == 2
    assert "client 'override-app' overrides its browser flow with 'browser'" in findings[0]
    assert "Authentication flow overrides" in findings[0]
    assert "client 'call-center' has the client-initiated backchannel (CIBA) grant" in findings[1]


def test_saml_clients_overrides_and_ecp_are_reported(fake, admin, opts):
    """Keycloak applies a browser flow override to SAML clients too, and a SAML client with
    ECP signs users in with a password alone through its fixed 'saml ecp' flow."""
    install(admin, opts)
    browser_id = fake.flow_by_alias("browser")["id"]
    fake.add_client("saml-app", protocol="saml",
                    authenticationFlowBindingOverrides={"browser": browser_id})
    fake.add_client("saml-ecp", protocol="saml", attributes={"saml.allow.ecp.flow": "true"})
    fake.add_client("saml-fine", protocol="saml", attributes={"saml.allow.ecp.flow": "false"})

    findings = audit(admin, opts)

    assert doors(findings) == ["client flow override", "saml ecp"]
    assert "client 'saml-app' overrides its browser flow with 'browser'" in str(findings[0])
    assert "turn off Allow ECP flow for 'saml-ecp'" in str(findings[1])


def test_self_registration_without_the_step_is_reported(fake, admin):
    """The registration flow ends in a session: a new account would never meet the step."""
    fake.realm["registrationAllowed"] = True
    install(admin, options(cover=("browser", "reset-credentials", "brokers", "direct-grant")))

    findings = audit(admin, options())

    assert doors(findings) == ["registration"]
    assert "runs 'registration'" in str(findings[0]) and "User registration" in str(findings[0])
    install(admin, options())
    assert audit(admin, options()) == []


def test_organizations_open_the_registration_door_with_registration_off(fake, admin):
    """An organization's invitation link registers the invitee through the registration flow,
    whether or not User registration is on (Keycloak's Organizations.isRegistrationAllowed)."""
    fake.realm["organizationsEnabled"] = True
    install(admin, options(cover=("browser", "reset-credentials", "brokers", "direct-grant")))

    findings = audit(admin, options())
    assert doors(findings) == ["registration"] and "invitation" in str(findings[0])
    install(admin, options())
    assert audit(admin, options()) == []


def test_no_false_alarms_for_doors_that_let_nobody_in(fake, admin, opts):
    """A password grant closed with Keycloak's "Deny access", a switched-off client, a JWT
    authorization grant provider (no browser logs in through it) are no open doors."""
    install(admin, options(cover=("browser", "reset-credentials", "brokers")))
    fake.add_client("off", directAccessGrantsEnabled=True, enabled=False)  # nor its JWT grant
    fake.add_client("off-jwt", enabled=False, attributes={
        "oauth2.jwt.authorization.grant.enabled": "true",
        "oauth2.jwt.authorization.grant.idp": "jwt-issuer"})
    fake.features = {"JWT_AUTHORIZATION_GRANT"}
    fake.add_idp("jwt-issuer", providerId="jwt-authorization-grant")
    assert audit(admin, opts) == []
    fake.add_client("script", directAccessGrantsEnabled=True)
    assert doors(audit(admin, opts)) == ["direct grant"]
    flow = fake.flow_by_alias("direct grant")
    (password,) = [e for e in fake.children(flow["id"])
                   if e["authenticator"] == "direct-grant-validate-password"]
    password["authenticator"] = "deny-access-authenticator"
    assert audit(admin, opts) == []


def test_docker_registry_logins_are_a_door_while_the_feature_is_on(fake, admin, opts):
    """docker login: a password over HTTP Basic through the realm's docker flow."""
    install(admin, opts)
    fake.realm["dockerAuthenticationFlow"] = "docker auth"
    fake.add_client("registry", protocol="docker-v2")
    assert audit(admin, opts) == []  # the docker feature is off: no such login

    fake.features = {"DOCKER"}
    findings = audit(admin, opts)
    assert doors(findings) == ["docker"] and "'registry'" in str(findings[0])


def test_a_broker_that_stores_no_users_is_reported_while_transient_users_are_on(fake, admin,
                                                                                 opts):
    """Keycloak's transient users get a new id at every login: the bridge sees a stranger
    each time and offers enrollment, so the step proves nothing (found by review)."""
    fake.add_idp("wallet", config={"clientId": "kc", "doNotStoreUsers": "true"})
    install(admin, opts)
    assert audit(admin, opts) == []  # the feature is off: users are stored
    fake.features = {"TRANSIENT_USERS"}
    findings = audit(admin, opts)
    assert doors(findings) == ["brokers"] and "'wallet'" in str(findings[0])
    fake.idps["wallet"]["config"]["doNotStoreUsers"] = "false"
    assert audit(admin, opts) == []


def test_a_server_that_hides_its_features_fails_the_audit(fake, admin, opts):
    """Newer servers keep the server info from realm admins: the doors that need a feature
    cannot be judged, and audit says so rather than passing the realm."""
    install(admin, opts)
    fake.hide_features = True
    findings = audit(admin, opts)
    assert doors(findings) == ["server features"]
    assert "master realm" in str(findings[0])


def test_a_disabled_identity_provider_is_no_door(fake, admin, opts):
    install(admin, opts)
    fake.add_idp("old-partner", enabled=False)

    assert audit(admin, opts) == []


# -- grants that run no flow (preview features) ------------------------------------------------

LEGACY_EXCHANGE = {"TOKEN_EXCHANGE", "ADMIN_FINE_GRAINED_AUTHZ"}


def test_legacy_token_exchange_is_a_door_only_where_a_permission_allows_a_client(fake, admin,
                                                                                  opts):
    """Keycloak's v1 exchange signs users in with no flow (external tokens, impersonation),
    but allows a client only through a fine-grained permission that has a policy."""
    fake.add_idp("partner")
    fake.add_idp("quiet")
    install(admin, opts)
    fake.features |= LEGACY_EXCHANGE
    fake.grant_permission("quiet", "token-exchange")  # permissions on, but no policy
    fake.grant_permission("users", "view", "helpdesk-may-view")  # not impersonation
    assert audit(admin, opts) == []

    fake.grant_permission("partner", "token-exchange", "exchanger-may")
    fake.grant_permission("users", "impersonate", "exchanger-may")
    fake.calls.clear()
    findings = audit(admin, opts)

    assert doors(findings) == ["token exchange", "token exchange"]
    assert "identity provider 'partner' lets clients exchange its tokens" in str(findings[0])
    assert "Identity providers → partner → Permissions" in str(findings[0])
    assert "impersonate permission has policies" in str(findings[1])
    assert "without the preview feature token-exchange" in str(findings[1])
    assert fake.writes() == []


def test_legacy_token_exchange_permissions_are_not_read_when_the_feature_is_off(fake, admin,
                                                                                opts):
    """Without the feature there is no exchange to allow; without fine-grained permissions v1
    Keycloak answers 501 to the permission look-ups, and v1 exchange allows no client."""
    fake.add_idp("partner")
    install(admin, opts)
    fake.grant_permission("partner", "token-exchange", "exchanger-may")
    assert audit(admin, opts) == []
    fake.features.add("TOKEN_EXCHANGE")
    assert audit(admin, opts) == []
    assert not [c for c in fake.calls if "permissions" in c[1]]


def test_experimental_external_token_exchange_opens_every_identity_provider(fake, admin, opts):
    """Every enabled provider whose tokens Keycloak can exchange: not SAML, not a JWT grant
    provider (neither implements ExchangeExternalToken)."""
    fake.add_idp("partner")
    fake.add_idp("old-partner", enabled=False)
    fake.add_idp("saml-partner", providerId="saml")
    fake.add_idp("signer", providerId="jwt-authorization-grant")
    install(admin, opts)
    fake.features.add("TOKEN_EXCHANGE_EXTERNAL_INTERNAL_V2")

    (finding,) = audit(admin, opts)

    assert finding.door == "token exchange" and "identity provider 'partner'" in finding.what
    assert "experimental feature token-exchange-external-internal:v2" in finding.fix


def test_jwt_authorization_grant_is_a_door_for_clients_that_trust_an_issuing_provider(
        fake, admin, opts):
    """RFC 7523 grants need the preview feature, a confidential client with the grant on and
    an identity provider it trusts that issues them (a JWT Authorization Grant provider, or an
    OpenID Connect one with the grant enabled)."""
    grant = {"oauth2.jwt.authorization.grant.enabled": "true"}
    fake.add_idp("partner", config={"jwtAuthorizationGrantEnabled": "true"})
    fake.add_idp("signer", providerId="jwt-authorization-grant", config={})
    fake.add_idp("plain")
    install(admin, opts)
    fake.add_client("agent", attributes={**grant,
                                         "oauth2.jwt.authorization.grant.idp": "signer##partner"})
    fake.add_client("half", attributes={**grant, "oauth2.jwt.authorization.grant.idp": "plain"})
    fake.add_client("public", publicClient=True,
                    attributes={**grant, "oauth2.jwt.authorization.grant.idp": "partner"})
    fake.add_client("off", attributes={"oauth2.jwt.authorization.grant.enabled": "false",
                                       "oauth2.jwt.authorization.grant.idp": "partner"})
    assert audit(admin, opts) == []  # the feature is off

    fake.features.add("JWT_AUTHORIZATION_GRANT")
    (finding,) = audit(admin, opts)

    assert finding.door == "jwt authorization grant"
    assert "client 'agent' takes JWTs signed by identity provider 'partner', 'signer'" in \
        finding.what
    assert "turn off JWT Authorization Grant for 'agent'" in finding.fix


def test_a_second_step_added_by_hand_to_another_bridge_goes_on_the_next_install(fake, admin,
                                                                               opts):
    """The line says install again rewrites the step's config: for a second step beside the
    first (another bridge's), install keeps one, with this bridge's config."""
    install(admin, opts)
    forms = fake.flow_by_alias(FORMS)["id"]
    (ours,) = [e for e in fake.execution_of("stepup-bridge") if e["parent"] == forms]
    other = dict(fake.configs[ours["config"]], id="other-config", alias="other bridge")
    other["config"] = {**other["config"], "stepup.issuer": "https://test-bridge.example"}
    fake.configs["other-config"] = other
    fake._add_execution(forms, "REQUIRED", authenticator="stepup-bridge", config="other-config")
    assert doors(audit(admin, opts)) == ["step config"]

    install(admin, opts)
    assert len([e for e in fake.execution_of("stepup-bridge") if e["parent"] == forms]) == 1
    assert audit(admin, opts) == []
