"""uninstall(): the realm goes back to how it was before install."""

from __future__ import annotations

from stepup_keycloak import install, uninstall


def test_restores_the_previous_browser_flow(fake, admin, opts):
    install(admin, opts)

    uninstall(admin, opts)

    assert fake.realm["browserFlow"] == "browser"
    assert "stepup.previousBrowserFlow" not in fake.realm["attributes"]
    assert fake.realm["attributes"]["frontendUrl"] == "https://sso.example.test"


def test_restores_a_custom_previous_flow(fake, admin, opts):
    fake.copy_flow({"newName": "corporate browser"}, "browser")
    fake.realm["browserFlow"] = "corporate browser"
    install(admin, opts)
    assert fake.realm["attributes"]["stepup.previousBrowserFlow"] == "corporate browser"

    uninstall(admin, opts)

    assert fake.realm["browserFlow"] == "corporate browser"


def test_falls_back_to_browser_when_the_remembered_flow_is_gone(fake, admin, opts):
    install(admin, opts)
    fake.realm["attributes"]["stepup.previousBrowserFlow"] = "deleted meanwhile"

    uninstall(admin, opts)

    assert fake.realm["browserFlow"] == "browser"


def test_deletes_the_flow_with_its_configs(fake, admin, make_opts):
    opts = make_opts(conditional_loa=2)
    install(admin, opts)

    uninstall(admin, opts)

    assert fake.flow_by_alias("browser-stepup") is None
    assert fake.flow_by_alias("browser-stepup forms") is None
    assert fake.configs == {}
    assert fake.execution_of("stepup-bridge") == []


def test_removes_the_client_scope_from_defaults_then_deletes_it(fake, admin, opts):
    result = install(admin, opts)

    uninstall(admin, opts)

    assert result.client_scope_id not in fake.scopes
    assert result.client_scope_id not in fake.default_scopes
    deletes = [p for m, p, _ in fake.calls if m == "DELETE"]
    scope_id = result.client_scope_id
    assert deletes[-2:] == [
        f"/admin/realms/acme/default-default-client-scopes/{scope_id}",
        f"/admin/realms/acme/client-scopes/{scope_id}",
    ]


def test_is_idempotent(fake, admin, opts):
    install(admin, opts)
    assert uninstall(admin, opts) is True
    fake.calls.clear()

    assert uninstall(admin, opts) is False
    assert fake.writes() == []


def test_install_after_uninstall_works_again(fake, admin, opts):
    install(admin, opts)
    uninstall(admin, opts)

    install(admin, opts)

    assert fake.realm["browserFlow"] == "browser-stepup"
    assert fake.realm["attributes"]["stepup.previousBrowserFlow"] == "browser"
    aliases = {fake.configs[e["config"]]["alias"] for e in fake.execution_of("stepup-bridge")}
    assert aliases == {
        "stepup-bridge-acme",
        "stepup-bridge-acme-reset-credentials-stepup",
        "stepup-bridge-acme-registration-stepup",
        "stepup-bridge-acme-post-broker-stepup",
        "stepup-bridge-acme-direct-grant-stepup",
    }


def test_uninstall_restores_the_original_flow_after_ours_was_bound_under_another_name(
        fake, admin, opts):
    """An administrator binds a copy of our flow (or renames it) and install runs again:
    uninstall must still bring back the flow from before the first install, not the copy
    (which has the step, and would fail every login once the bridge client is gone)."""
    install(admin, opts)
    fake.copy_flow({"newName": "our copy"}, "browser-stepup")
    fake.realm["browserFlow"] = "our copy"
    install(admin, opts)

    uninstall(admin, opts)

    assert fake.realm["browserFlow"] == "browser"
