"""Refusals from Keycloak become one ProvisioningError line, without secrets."""

from __future__ import annotations

import pytest
from conftest import ADMIN_PASSWORD
from fake_keycloak import BASE
from keycloak.exceptions import KeycloakPostError

from stepup_keycloak import ProvisioningError, audit, connect, install, uninstall
from stepup_keycloak.errors import MAX_DETAIL, describe

SECRET = "bridge-secret-" + "x" * 32


def message_of(excinfo: pytest.ExceptionInfo[ProvisioningError]) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    assert ADMIN_PASSWORD not in text
    assert SECRET not in text
    return text


def test_forbidden_copy_names_the_action_status_and_what_to_check(fake, admin, make_opts):
    fake.fail("POST", r".*/flows/browser/copy", 403, {"error": "HTTP 403 Forbidden"})

    with pytest.raises(ProvisioningError) as excinfo:
        install(admin, make_opts(bridge_client_secret=SECRET))

    assert message_of(excinfo) == (
        "Keycloak refused to copy flow 'browser' to 'browser-stepup' (403): HTTP 403 Forbidden — "
        "does the admin account 'admin' of realm 'master' have realm-admin? (nothing was changed)"
    )


def test_forbidden_copy_writes_nothing_else(fake, admin, opts):
    fake.fail("POST", r".*/copy", 403, {"error": "HTTP 403 Forbidden"})

    with pytest.raises(ProvisioningError):
        install(admin, opts)

    assert [m for m, _, _ in fake.writes()] == ["POST"]
    assert fake.realm["browserFlow"] == "browser"


def test_secret_echoed_by_keycloak_is_scrubbed(fake, admin, make_opts):
    fake.fail("POST", r".*/executions/[^/]+/config", 400, {"errorMessage": f"bad value {SECRET}"})

    with pytest.raises(ProvisioningError) as excinfo:
        install(admin, make_opts(bridge_client_secret=SECRET))

    assert "bad value ***" in message_of(excinfo)


def test_missing_authenticator_jar_is_explained_before_any_write(fake, admin, opts):
    fake.providers.discard("stepup-bridge")

    with pytest.raises(ProvisioningError) as excinfo:
        install(admin, opts)

    text = message_of(excinfo)
    assert text.startswith("Keycloak has no 'stepup-bridge' authenticator")
    assert "providers/" in text and "nothing was changed" in text
    assert fake.writes() == []


def test_refusal_half_way_names_every_change_already_made(fake, admin, opts):
    fake.fail("PUT", r".*/identity-provider/instances/[^/]+", 403, {"error": "HTTP 403 Forbidden"})
    fake.add_idp("upstream")

    with pytest.raises(ProvisioningError) as excinfo:
        install(admin, opts)

    text = message_of(excinfo)
    assert text.startswith(
        "Keycloak refused to set the post login flow of identity provider 'upstream' to flow "
        "'post-broker-stepup' (403)")
    assert "install stopped after: copy flow 'browser' to 'browser-stepup'; " in text
    assert "bind flow 'reset-credentials-stepup' as resetCredentialsFlow of realm 'acme'" in text
    assert text.endswith("run it again to finish, or `stepup keycloak uninstall` to undo")
    assert "\n" not in text


def test_uninstall_refusal_is_one_line_too(fake, admin, opts):
    install(admin, opts)
    fake.fail(
        "DELETE", r".*/authentication/flows/[^/]+", 409, {"errorMessage": "in use by client app"}
    )

    with pytest.raises(ProvisioningError) as excinfo:
        uninstall(admin, opts)

    assert message_of(excinfo).startswith(
        "Keycloak refused to delete flow 'browser-stepup' (409): in use by client app"
    )


def test_admin_bound_to_another_realm_is_refused(fake, make_opts):
    admin = connect(make_opts(realm="acme"))

    with pytest.raises(ProvisioningError, match="works on realm 'acme', not 'other'"):
        install(admin, make_opts(realm="other"))
    assert fake.writes() == []


class TestConnect:
    def test_password_login_uses_admin_cli_in_the_admin_realm(self, fake, opts):
        admin = connect(opts)

        (login,) = fake.token_requests
        assert login["realm"] == "master"
        assert (login["grant_type"], login["client_id"], login["username"]) == (
            "password",
            "admin-cli",
            "admin",
        )
        assert admin.connection.realm_name == "acme"

    def test_service_account_client_uses_client_credentials(self, fake, make_opts):
        opts = make_opts(
            admin_username=None,
            admin_password=None,
            admin_client_id="provisioner",
            admin_client_secret="provisioner-secret-456",
        )

        admin = connect(opts)
        install(admin, opts)

        (login,) = fake.token_requests
        assert {k: login[k] for k in ("grant_type", "client_id", "client_secret", "realm")} == {
            "grant_type": "client_credentials",
            "client_id": "provisioner",
            "client_secret": "provisioner-secret-456",
            "realm": "master",
        }
        assert fake.realm["browserFlow"] == "browser-stepup"

    def test_service_account_may_live_in_the_managed_realm(self, fake, make_opts):
        fake.clients[("acme", "provisioner")] = "in-realm-secret-789"
        opts = make_opts(
            admin_username=None,
            admin_password=None,
            admin_client_id="provisioner",
            admin_client_secret="in-realm-secret-789",
            admin_realm="acme",
        )

        connect(opts)

        assert fake.token_requests[0]["realm"] == "acme"

    def test_bad_password_fails_at_connect_with_keycloaks_reason(self, fake, make_opts):
        with pytest.raises(ProvisioningError) as excinfo:
            connect(make_opts(admin_password="wrong-password-000"))

        text = str(excinfo.value)
        assert text == (
            "Keycloak refused to log in the admin account 'admin' of realm 'master' (401): "
            "invalid_grant: Invalid user credentials — check the credentials of the "
            "admin account 'admin' of realm 'master'"
        )
        assert "wrong-password-000" not in text

    def test_bad_client_secret_names_the_service_account(self, fake, make_opts):
        opts = make_opts(
            admin_username=None,
            admin_password=None,
            admin_client_id="provisioner",
            admin_client_secret="wrong-secret-000",
        )

        with pytest.raises(ProvisioningError, match="service account of client 'provisioner'"):
            connect(opts)

    def test_unreachable_keycloak_is_one_line(self, fake, make_opts):
        with pytest.raises(ProvisioningError) as excinfo:
            connect(make_opts(server_url="http://nowhere.test"))

        assert str(excinfo.value).startswith(
            "Could not reach Keycloak at http://nowhere.test to log in the admin account"
        )


class TestOptions:
    def test_defaults(self, make_opts):
        opts = make_opts(server_url=BASE + "/")

        assert opts.server_url == BASE
        assert opts.bridge_client_id == "keycloak-acme"
        assert (opts.source_flow, opts.flow, opts.client_scope) == (
            "",
            "browser-stepup",
            "stepup",
        )
        assert opts.allow_enrollment is True
        assert opts.conditional_loa is None

    def test_secrets_stay_out_of_repr(self, make_opts):
        opts = make_opts(bridge_client_secret=SECRET)

        assert SECRET not in repr(opts)
        assert ADMIN_PASSWORD not in repr(opts)

    @pytest.mark.parametrize(
        ("changes", "reason"),
        [
            ({"admin_password": None}, "its password [(]--admin-password, or "
                                       "KEYCLOAK_ADMIN_PASSWORD[)] is missing"),
            ({"admin_password": None, "admin_username": None, "admin_client_id": "c"},
             "its secret [(]--admin-client-secret, or KEYCLOAK_ADMIN_CLIENT_SECRET[)] is "
             "missing"),
            ({"admin_password": None, "admin_username": None}, "an admin user or an admin "
                                                               "client id is missing"),
            ({"admin_client_id": "c", "admin_client_secret": "s"}, "not both"),
            ({"server_url": "kc.example.test"}, "server_url must be an http"),
            ({"bridge_issuer": "ftp://mfa"}, "bridge_issuer must be an http"),
            ({"flow": "mine", "source_flow": "mine"}, "flow must differ from source_flow"),
            ({"flow": "browser"}, "flow must not be Keycloak's built-in 'browser'"),
            ({"conditional_loa": 1}, "conditional_loa must be a level of 2 or more"),
            ({"cover": ("browser", "sms")}, "unknown door"),
            ({"cover": ()}, "cover must name at least one door"),
            ({"loa_max_age": -1}, "loa_max_age must be 0 or more"),
            ({"client_scope": "step up"}, "must not contain spaces"),
            ({"realm": " "}, "realm must not be empty"),
        ],
    )
    def test_bad_values_fail_at_construction(self, make_opts, changes, reason):
        with pytest.raises(ProvisioningError, match=reason):
            make_opts(**changes)


class TestDescribe:
    """The message for bodies Keycloak (or a proxy in front of it) may send."""

    def error(self, status: int, body: bytes) -> KeycloakPostError:
        return KeycloakPostError(error_message=body, response_code=status, response_body=body)

    def test_plain_text_body_is_folded_onto_one_line(self):
        text = describe(self.error(502, b"<h1>Bad\nGateway</h1>\n"), "read realm 'acme'", "x")

        assert text == "Keycloak refused to read realm 'acme' (502): <h1>Bad Gateway</h1>"

    def test_long_body_is_cut_after_secrets_are_scrubbed(self):
        body = b"x" * (MAX_DETAIL - 5) + SECRET.encode() + b"y" * 50

        text = describe(self.error(500, body), "copy flow 'browser'", "x", [SECRET])

        assert SECRET[:5] not in text
        assert text.endswith("…")

    def test_error_message_wins_over_other_fields(self):
        body = b'{"errorMessage": "Flow browser-stepup already exists", "error": "conflict"}'

        text = describe(self.error(409, body), "copy flow 'browser'", "x")

        assert text.startswith("Keycloak refused to copy flow 'browser' (409): Flow browser-stepup")
        assert "conflict" not in text.split(" — ")[0]


@pytest.mark.parametrize(
    ("method", "path", "status", "body", "expected"),
    [
        ("GET", r"/admin/realms/acme", 404, {"error": "Realm not found."},
         "Keycloak refused to read realm 'acme' (404): Realm not found. — check the realm"),
        ("GET", r".*/clients", 403, {"error": "HTTP 403 Forbidden"},
         "Keycloak refused to list clients (403): HTTP 403 Forbidden — does the admin account"),
        ("GET", r".*/identity-provider/instances", 502, {"error": "Bad Gateway"},
         "Keycloak refused to list identity providers (502): Bad Gateway"),
    ],
)
def test_audit_refusals_are_one_line(fake, admin, opts, method, path, status, body, expected):
    fake.fail(method, path, status, body)

    with pytest.raises(ProvisioningError) as excinfo:
        audit(admin, opts)

    assert message_of(excinfo).startswith(expected)
    assert fake.writes() == []


def test_install_into_a_missing_realm_changes_nothing(fake, admin, opts):
    fake.fail("GET", r"/admin/realms/acme", 404, {"error": "Realm not found."})

    with pytest.raises(ProvisioningError) as excinfo:
        install(admin, opts)

    assert message_of(excinfo).endswith("(nothing was changed)")
    assert fake.writes() == []
