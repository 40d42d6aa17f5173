"""install() with conditional_loa: Keycloak's documented step-up layout, and moving between
layouts on a re-run."""

from __future__ import annotations

import json

import pytest
from conftest import options

from stepup_keycloak import install

FORMS = "browser-stepup forms"
PASSWORD = "browser-stepup password"
SUBFLOW = "browser-stepup step-up"
PLAIN = [
    ("auth-username-password-form", "REQUIRED"),
    ("stepup-bridge", "REQUIRED"),
    ("browser-stepup Browser - Conditional 2FA", "CONDITIONAL"),
]
LEVELS = [
    (PASSWORD, "CONDITIONAL"),
    (SUBFLOW, "CONDITIONAL"),
    ("browser-stepup Browser - Conditional 2FA", "CONDITIONAL"),
]


@pytest.fixture
def loa_opts():
    return options(conditional_loa=2, cover=("browser",))


def level_configs(fake) -> dict[str, dict[str, str]]:
    return {fake.configs[e["config"]]["alias"]: fake.configs[e["config"]]["config"]
            for e in fake.execution_of("conditional-level-of-authentication")}


def test_password_form_sits_in_a_level_1_subflow_then_the_step_up_one(fake, admin, loa_opts):
    """Without the level-1 condition, Keycloak's level condition matches while no level has
    been reached, so the bridge would run for clients that ask for nothing."""
    install(admin, loa_opts)

    assert fake.layout(FORMS) == LEVELS
    assert fake.layout(PASSWORD) == [
        ("conditional-level-of-authentication", "REQUIRED"),
        ("auth-username-password-form", "REQUIRED"),
    ]
    assert fake.layout(SUBFLOW) == [
        ("conditional-level-of-authentication", "REQUIRED"),
        ("stepup-bridge", "REQUIRED"),
    ]


def test_condition_configs_carry_level_and_max_age(fake, admin):
    install(admin, options(conditional_loa=3, loa_max_age=600, cover=("browser",)))

    assert level_configs(fake) == {
        "stepup-loa1-acme": {"loa-condition-level": "1", "loa-max-age": "36000"},
        "stepup-loa-acme": {"loa-condition-level": "3", "loa-max-age": "600"},
    }


def test_bridge_acr_is_mapped_to_the_level_keeping_other_keys(fake, admin):
    fake.realm["attributes"]["acr.loa.map"] = json.dumps({"mfa": 2})

    install(admin, options(conditional_loa=2, bridge_acr="urn:mfa", cover=("browser",)))

    assert json.loads(fake.realm["attributes"]["acr.loa.map"]) == {"mfa": 2, "urn:mfa": 2}


def test_stepup_config_is_written_too(fake, admin, loa_opts):
    install(admin, loa_opts)

    (step,) = fake.execution_of("stepup-bridge")
    assert fake.configs[step["config"]]["config"]["stepup.issuer"] == "https://mfa.example.test"


def test_second_install_writes_nothing(fake, admin, loa_opts):
    install(admin, loa_opts)
    fake.calls.clear()

    result = install(admin, loa_opts)

    assert fake.writes() == []
    assert result.changed is False


def test_re_run_moves_between_layouts_keeping_the_secret(fake, admin, loa_opts):
    plain = options(cover=("browser",))
    first = install(admin, plain)

    install(admin, loa_opts)
    assert fake.layout(FORMS) == LEVELS
    assert len(fake.execution_of("auth-username-password-form")) == 2  # one is in stock 'forms'

    back = install(admin, plain)
    assert fake.layout(FORMS) == PLAIN
    assert fake.flow_by_alias(PASSWORD) is None and fake.flow_by_alias(SUBFLOW) is None
    assert back.bridge_client_secret == first.bridge_client_secret
    assert level_configs(fake) == {}


def test_the_broken_layout_of_earlier_versions_is_repaired(fake, admin, loa_opts):
    """Earlier installs left the password form bare in the forms, beside the step-up sub-flow."""
    install(admin, loa_opts)
    forms = fake.flow_by_alias(FORMS)
    wrapper = next(e for e in fake.children(forms["id"]) if e["flow_id"])
    fake.delete_execution(None, wrapper["id"])
    fake.add_execution({"provider": "auth-username-password-form"}, FORMS)
    bare = fake.children(forms["id"])[-1]
    bare.update(requirement="REQUIRED", priority=-1)
    assert fake.layout(FORMS)[:2] == [
        ("auth-username-password-form", "REQUIRED"), (SUBFLOW, "CONDITIONAL")]

    install(admin, loa_opts)

    assert fake.layout(FORMS) == LEVELS
    assert fake.layout(PASSWORD)[1] == ("auth-username-password-form", "REQUIRED")
