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


def test_the_level_layout_counts_as_the_administrators_choice(fake, admin, opts):
    install(admin, options(conditional_loa=2))

    assert audit(admin, opts) == []


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


def test_a_disabled_identity_provider_is_no_door(fake, admin, opts):
    install(admin, opts)
    fake.add_idp("old-partner", enabled=False)

    assert audit(admin, opts) == []
