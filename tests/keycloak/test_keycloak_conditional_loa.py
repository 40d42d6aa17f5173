"""install() with conditional_loa: the step-up behind "Condition - Level of Authentication"."""

from __future__ import annotations

import pytest

from stepup_keycloak import ProvisioningError, install

FORMS = "browser-stepup forms"
SUBFLOW = "browser-stepup step-up"


@pytest.fixture
def loa_opts(make_opts):
    return make_opts(conditional_loa=2)


def test_conditional_subflow_comes_right_after_the_password_form(fake, admin, loa_opts):
    install(admin, loa_opts)

    assert fake.layout(FORMS) == [
        ("auth-username-password-form", "REQUIRED"),
        (SUBFLOW, "CONDITIONAL"),
        ("browser-stepup Browser - Conditional 2FA", "CONDITIONAL"),
    ]


def test_subflow_holds_the_condition_then_the_stepup(fake, admin, loa_opts):
    install(admin, loa_opts)

    assert fake.layout(SUBFLOW) == [
        ("conditional-level-of-authentication", "REQUIRED"),
        ("stepup-bridge", "REQUIRED"),
    ]
    created = [
        b for m, p, b in fake.calls if m == "POST" and p.endswith(f"/{FORMS}/executions/flow")
    ]
    assert created == [
        {"alias": SUBFLOW, "type": "basic-flow", "description": "Stepup Bridge step-up"}
    ]


def test_condition_config_carries_level_and_max_age(fake, admin, make_opts):
    install(admin, make_opts(conditional_loa=3, loa_max_age=600))

    (condition,) = fake.execution_of("conditional-level-of-authentication")
    config = fake.configs[condition["config"]]
    assert config["alias"] == "stepup-loa-acme"
    assert config["config"] == {"loa-condition-level": "3", "loa-max-age": "600"}


def test_stepup_config_is_written_too(fake, admin, loa_opts):
    result = install(admin, loa_opts)

    assert fake.configs[result.config_id]["config"]["stepup.issuer"] == "https://mfa.example.test"
    assert result.execution_id == fake.execution_of("stepup-bridge")[0]["id"]


def test_second_install_writes_nothing(fake, admin, loa_opts):
    install(admin, loa_opts)
    fake.calls.clear()

    result = install(admin, loa_opts)

    assert fake.writes() == []
    assert result.changed is False


def test_switching_layout_is_refused_without_touching_the_flow(fake, admin, opts, loa_opts):
    install(admin, opts)
    fake.calls.clear()

    with pytest.raises(ProvisioningError, match="run uninstall first"):
        install(admin, loa_opts)

    assert fake.writes() == []
