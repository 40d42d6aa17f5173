"""Every door into a Keycloak realm passes the bridge: the password reset (a real SMTP server
receives the e-mail), self-registration, logins through an external identity provider (realm
``upstream`` of the same Keycloak), the password grant; the audit finds the doors left open,
the grants that run no flow (token exchange, the JWT authorization grant) among them;
the step-up only when asked; install re-runs that keep clients' scopes. Real Keycloak 26, real
Chromium.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from bridge.factors import totp
from stepup_keycloak.options import CALLBACK_PATHS

from .browser import chromium_page, enter_recovery_code, screenshot
from .keycloak_env import add_upstream_idp
from .keycloak_pages import (
    MULTI_FACTOR,
    enroll_at_bridge,
    enrolled_user,
    password_step,
    rogue_assertion_is_refused,
    rp_claims,
)

pytestmark = pytest.mark.e2e


def wrong_code(secret: str) -> str:
    good = {totp.code_at(secret, time.time() + d) for d in (-60, -30, 0, 30, 60)}
    return next(c for c in ("123456", "654321", "111111") if c not in good)


# -- the password reset ------------------------------------------------------------------------

def reset_until_the_bridge(page, world, username: str) -> None:
    """"Forgot Password?", the username, then the e-mailed link: the bridge comes next."""
    page.goto(f"{world.rp}/login")
    page.click("text=Forgot Password?")
    page.fill("#username", username)
    page.click("[type=submit]")
    page.wait_for_selector("text=You should receive an email")
    page.goto(world.mail.link_for(f"{username}@example.org"))
    page.wait_for_url(f"{world.bridge}/**")


def choose_new_password(page, password: str) -> None:
    page.wait_for_selector("#password-new")
    page.fill("#password-new", password)
    page.fill("#password-confirm", password)
    page.click("[type=submit]")


def test_reset_passes_the_bridge_with_totp(world):
    secret, _ = enrolled_user(world, "rs-alice")
    with chromium_page() as page:
        reset_until_the_bridge(page, world, "rs-alice")
        screenshot(page, "keycloak-10-reset-totp")
        assert not page.is_visible("#password-new")
        page.fill("input[name=otp]", totp.code_at(secret, time.time() + 30))
        page.click("button:has-text('Verify')")
        choose_new_password(page, "rs-alice-new-pw")
        assert rp_claims(page)["stepup_amr"] == "otp"
    with chromium_page() as page:  # the new password works (and the bridge is asked again)
        page.goto(f"{world.rp}/login")
        page.fill("#username", "rs-alice")
        page.fill("#password", "rs-alice-new-pw")
        page.click("#kc-login")
        page.wait_for_selector("input[name=otp]")
        assert page.url.startswith(world.bridge)


def test_reset_passes_the_bridge_with_a_recovery_code_and_rotates_it(world):
    _, first_code = enrolled_user(world, "rs-bob")
    with chromium_page() as page:
        reset_until_the_bridge(page, world, "rs-bob")
        enter_recovery_code(page, first_code)
        new_code = page.inner_text("#recovery-code").strip()
        assert new_code != first_code
        page.check("input[name=saved]")
        page.click("button:has-text('Continue')")
        choose_new_password(page, "rs-bob-new-pw")
        assert rp_claims(page)["stepup_amr"] == "rc"
    with chromium_page() as page:  # the spent code fails, the new one works
        reset_until_the_bridge(page, world, "rs-bob")
        enter_recovery_code(page, first_code)
        assert "didn't work" in page.inner_text("[role=alert]")
        page.fill("input[name=recovery_code]", new_code)
        page.click("text=Verify recovery code")
        page.check("input[name=saved]")
        page.click("button:has-text('Continue')")
        choose_new_password(page, "rs-bob-newer-pw")
        assert rp_claims(page)["stepup_amr"] == "rc"


def test_locked_user_cannot_reset_out_of_the_lock(world):
    secret, _ = enrolled_user(world, "rs-carol")
    with chromium_page() as page:
        password_step(page, world, "rs-carol")
        for _ in range(3):  # STEPUP_LOCKOUT_LIMIT=3
            page.fill("input[name=otp]", wrong_code(secret))
            page.click("button:has-text('Verify')")
        assert "locked" in page.inner_text("[role=alert]")
    with chromium_page() as page:
        reset_until_the_bridge(page, world, "rs-carol")
        assert page.inner_text("h1") == "Two-step verification is locked"
        screenshot(page, "keycloak-11-reset-locked")
        page.click("text=Return to sign-in")
        page.wait_for_url(f"{world.keycloak}/**")
        assert "cancelled or is locked" in page.inner_text("body")
        assert not page.is_visible("#password-new")
    with chromium_page() as page:  # the old password still is the password
        password_step(page, world, "rs-carol")
        assert page.inner_text("h1") == "Two-step verification is locked"


# -- self-registration ----------------------------------------------------------------------------

def test_a_self_registered_user_enrolls_at_the_bridge_before_the_first_session(world):
    """The registration flow ends in a session; with install, the new account passes the
    bridge (and enrolls there) right after the registration form."""
    realm = world.open_realm("signup")
    world.master.update_realm("signup", {"registrationAllowed": True})
    world.stepup("keycloak", "install", *world.keycloak_args("signup"), "--existing-clients")
    with chromium_page() as page:
        page.goto(f"{realm.rp}/login")
        page.click("text=Register")
        for field, value in (("#username", "new-nora"), ("#email", "nora@example.org"),
                             ("#firstName", "Nora"), ("#lastName", "Neu"),
                             ("#password", "new-nora-pw"), ("#password-confirm", "new-nora-pw")):
            page.fill(field, value)
        page.click("input[type=submit]")
        enroll_at_bridge(page, world)
        claims = rp_claims(page)
    user_id = realm.admin.get_user_id("new-nora")
    assert claims["sub"] == user_id and claims["stepup_amr"] == "otp"


# -- an external identity provider ----------------------------------------------------------------

def upstream_login(page, world, username: str, shot: str | None = None) -> None:
    """At the RP's Keycloak login page, choose the upstream IdP and sign in there."""
    page.goto(f"{world.rp}/login")
    page.wait_for_selector("#social-upstream")
    if shot:
        screenshot(page, shot)
    page.click("#social-upstream")
    page.wait_for_url(f"{world.keycloak}/realms/upstream/**")
    page.fill("#username", username)
    page.fill("#password", f"{username}-pw")
    page.click("#kc-login")


def test_brokered_login_meets_the_bridge(world):
    world.add_user("up-ivan", admin=world.upstream)
    with chromium_page() as page:
        upstream_login(page, world, "up-ivan", shot="keycloak-09-login-doors")
        secret, _ = enroll_at_bridge(page, world, shots="keycloak-12-broker")
        claims = rp_claims(page)
    user_id = world.admin.get_user_id("up-ivan")
    assert claims["sub"] == user_id  # the brokered user is a user of acme
    assert claims["stepup_amr"] == "otp"
    assert claims["stepup_acr"] == MULTI_FACTOR
    assert "enrolled" in world.stepup("user", "show", user_id).stdout
    with chromium_page() as page:  # the next brokered login asks for the code
        upstream_login(page, world, "up-ivan")
        page.wait_for_selector("input[name=otp]")
        page.fill("input[name=otp]", totp.code_at(secret, time.time() + 30))
        page.click("button:has-text('Verify')")
        assert rp_claims(page)["stepup_amr"] == "otp"


def test_brokered_user_cannot_use_another_users_factor(world):
    """An upstream subject mapped to an enrolled acme user meets *that* user's factor (no
    enrollment offered), and an assertion for another user is refused in the broker flow."""
    victim_secret, _ = enrolled_user(world, "kc-victor")
    victim = world.users["kc-victor"]
    upstream_id = world.add_user("up-mallory", admin=world.upstream)
    world.admin.add_user_social_login(victim, "upstream", upstream_id, "up-mallory")
    with chromium_page() as page:
        upstream_login(page, world, "up-mallory")
        page.wait_for_selector("input[name=otp]")
        assert not page.is_visible("#totp-secret")
        page.fill("input[name=otp]", wrong_code(victim_secret))
        page.click("button:has-text('Verify')")
        assert "didn't work" in page.inner_text("[role=alert]")
    # A rogue bridge asserting kc-victor for another brokered user is refused by Keycloak.
    world.add_user("up-trudy", admin=world.upstream)
    with chromium_page() as page:
        rogue_assertion_is_refused(page, world, "kc-victor", victim_secret,
                                   lambda: upstream_login(page, world, "up-trudy"))


# -- no browser: the password grant --------------------------------------------------------------

def password_grant(world, username: str, password: str) -> requests.Response:
    return requests.post(f"{world.keycloak}/realms/acme/protocol/openid-connect/token",
                         data={"grant_type": "password", "client_id": "admin-cli",
                               "username": username, "password": password}, timeout=30)


def test_password_grant_is_refused_with_an_oauth_error_and_no_failed_login(world):
    """The right password through the grant is refused, but is no failed login: a script that
    still uses the grant must not get its user disabled by brute-force detection."""
    world.add_user("dg-dan")
    world.master.update_realm("acme", {"bruteForceProtected": True, "permanentLockout": True,
                                       "failureFactor": 2})
    try:
        # Keycloak's own refusal (401 up to 26.5, 400 from 26.6 on): the step's is the same
        wrong = password_grant(world, "dg-nobody", "dg-dan-pw").status_code
        for _ in range(3):
            answer = password_grant(world, "dg-dan", "dg-dan-pw")
            assert answer.status_code == wrong
            assert answer.json()["error"] == "invalid_grant"
            assert "access_token" not in answer.json()
    finally:
        world.master.update_realm("acme", {"bruteForceProtected": False,
                                           "permanentLockout": False})
    assert world.admin.get_user(world.users["dg-dan"])["enabled"]


def test_password_grant_does_not_tell_a_right_password_from_a_wrong_one(world):
    """The refusal after the right password is Keycloak's answer to a wrong one (and to an
    unknown user): the grant is no oracle for guessed or leaked passwords, while the step-up
    keeps the password from signing anyone in."""
    world.add_user("dg-eve")
    answers = [password_grant(world, username, password) for username, password in (
        ("dg-eve", "dg-eve-pw"), ("dg-eve", "not-her-password"), ("dg-nobody", "dg-eve-pw"))]
    seen = {(answer.status_code, answer.headers["content-type"], answer.text)
            for answer in answers}
    assert len(seen) == 1, seen
    assert answers[0].status_code in (400, 401)  # 401 up to Keycloak 26.5, 400 from 26.6 on
    assert answers[0].json() == {"error": "invalid_grant",
                                 "error_description": "Invalid user credentials"}


# -- audit ----------------------------------------------------------------------------------------

def audit_lines(world, realm: str) -> tuple[int, list[str]]:
    done = world.stepup("keycloak", "audit", *world.keycloak_args(realm), check=False)
    return done.returncode, [line for line in done.stdout.splitlines() if line.startswith("OPEN")]


def test_audit_reports_each_planted_door_and_none_after_install(world):
    realm = world.open_realm("doors")
    admin = realm.admin
    world.master.update_realm("doors", {"resetPasswordAllowed": True,
                                        "registrationAllowed": True})
    admin.create_client({"clientId": "legacy", "secret": "l" * 24, "publicClient": False,
                         "directAccessGrantsEnabled": True, "redirectUris": ["http://x/cb"]})
    add_upstream_idp(world.keycloak, world.upstream, admin, alias="partner")
    browser_id = next(f["id"] for f in admin.get_authentication_flows()
                      if f["alias"] == "browser")
    admin.create_client({"clientId": "override-app", "publicClient": True,
                         "redirectUris": ["http://y/cb"],
                         "authenticationFlowBindingOverrides": {"browser": browser_id}})
    admin.create_client({"clientId": "saml-ecp", "protocol": "saml",
                         "attributes": {"saml.allow.ecp.flow": "true"}})
    # A client policy whose flow selector sends every client's logins to the built-in flow.
    policies = "admin/realms/doors/client-policies"
    admin.connection.raw_put(f"{policies}/profiles", json.dumps({"profiles": [
        {"name": "old-login", "executors": [{"executor": "auth-flow-enforcer",
                                             "configuration": {"auth-flow-alias": "browser"}}]}]}))
    admin.connection.raw_put(f"{policies}/policies", json.dumps({"policies": [
        {"name": "everyone-old-login", "enabled": True, "profiles": ["old-login"],
         "conditions": [{"condition": "any-client", "configuration": {}}]}]}))

    status, lines = audit_lines(world, "doors")
    text = "\n".join(lines)
    assert status == 1
    assert "OPEN  browser: the bound browser flow 'browser'" in text
    assert "OPEN  reset-credentials:" in text
    assert "client 'legacy' accepts the password grant" in text
    assert "identity provider 'partner' has no post login flow" in text
    assert "client 'override-app' overrides its browser flow with 'browser'" in text
    assert ("OPEN  registration: user registration (or an organization's invitation) runs "
            "'registration'") in text
    assert "OPEN  saml ecp: SAML client 'saml-ecp' allows the ECP profile" in text
    assert ("OPEN  client policy: client policy 'everyone-old-login' sends the logins of the "
            "clients it matches to 'browser'") in text

    # ECP cannot get the step (Keycloak's fixed flow), nor does install rewrite a client
    # policy: the administrator turns ECP off, and points the policy at the step-up flow.
    ecp = admin.get_client_id("saml-ecp")
    admin.update_client(ecp, {"attributes": {"saml.allow.ecp.flow": "false"}})
    held = world.stepup("keycloak", "install", *world.keycloak_args("doors"), check=False)
    assert held.returncode == 2 and "still finds client policy open" in held.stderr
    admin.connection.raw_put(f"{policies}/profiles", json.dumps({"profiles": [
        {"name": "old-login", "executors": [{"executor": "auth-flow-enforcer", "configuration": {
            "auth-flow-alias": "browser-stepup"}}]}]}))

    installed = world.stepup("keycloak", "install", *world.keycloak_args("doors"))
    assert "Realm doors: every way in passes the step-up." in installed.stdout
    assert [line for line in installed.stdout.splitlines() if line.startswith("OPEN")] == []
    assert audit_lines(world, "doors") == (0, [])

    world.stepup("keycloak", "install", *world.keycloak_args("doors"), "--cover", "browser")
    status, lines = audit_lines(world, "doors")
    assert status == 1
    doors = sorted(line.split(":")[0].removeprefix("OPEN  ") for line in lines)
    assert doors == ["brokers", "direct grant", "direct grant", "registration",
                     "reset-credentials"]
    assert any("'admin-cli'" in line for line in lines)
    assert any("'legacy'" in line for line in lines)


# -- grants that run no flow ----------------------------------------------------------------------

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def test_grants_that_run_no_flow_are_real_doors_and_audit_reports_each(world):
    """Legacy token exchange (a partner's token, impersonation) and the JWT authorization grant
    give a client a user's tokens without any flow, so no step can stand in their way. The test
    Keycloak runs their preview features (keycloak_env.FEATURES): each door is opened as an
    administrator would, walked through, reported by audit, and closed again."""
    realm = world.open_realm("grants")
    admin, kc = realm.admin, world.keycloak
    add_upstream_idp(kc, world.upstream, admin, alias="partner")
    world.stepup("keycloak", "install", *world.keycloak_args("grants"))
    assert audit_lines(world, "grants") == (0, [])  # the features alone open nothing

    # A partner user, and tokens the partner issues for this realm (its only audience).
    world.add_user("gx-pat", admin=world.upstream)
    world.upstream.create_client({
        "clientId": "grants-agent", "publicClient": True, "directAccessGrantsEnabled": True,
        "standardFlowEnabled": False, "fullScopeAllowed": False, "protocolMappers": [{
            "name": "grants-audience", "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {"included.custom.audience": f"{kc}/realms/grants",
                       "access.token.claim": "true"}}]})

    def partner_token() -> str:
        return requests.post(f"{kc}/realms/upstream/protocol/openid-connect/token", data={
            "grant_type": "password", "client_id": "grants-agent", "username": "gx-pat",
            "password": "gx-pat-pw", "scope": "openid"}, timeout=30).json()["access_token"]

    secret = "exchanger-secret-" + "x" * 16
    admin.create_client({"clientId": "exchanger", "secret": secret, "publicClient": False,
                         "standardFlowEnabled": False, "serviceAccountsEnabled": True})
    exchanger = admin.get_client_id("exchanger")

    def grant(**form: str) -> requests.Response:
        return requests.post(f"{kc}/realms/grants/protocol/openid-connect/token", data={
            "client_id": "exchanger", "client_secret": secret, **form}, timeout=30)

    def external() -> requests.Response:
        return grant(grant_type=EXCHANGE, subject_token=partner_token(),
                     subject_issuer="partner",
                     subject_token_type="urn:ietf:params:oauth:token-type:access_token")

    def impersonation() -> requests.Response:
        return grant(grant_type=EXCHANGE, requested_subject="gx-pat")

    def jwt_grant() -> requests.Response:
        return grant(grant_type=JWT_BEARER, assertion=partner_token())

    def signed_in(answer: requests.Response) -> str:
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))[
            "preferred_username"]

    assert external().status_code == 403  # no permission allows the client yet

    # The administrator allows 'exchanger' (fine-grained permissions v1, a client policy).
    base = "admin/realms/grants"
    management = admin.get_client_id("realm-management")
    authz = f"{base}/clients/{management}/authz/resource-server"
    policy = admin.connection.raw_post(f"{authz}/policy/client", json.dumps(
        {"name": "exchanger-may", "clients": [exchanger], "logic": "POSITIVE"})).json()["id"]

    def permissions(path: str, scope: str | None) -> None:
        """Turn ``path``'s permissions on and give ``scope`` the policy, or (None) off."""
        admin.connection.raw_put(f"{base}/{path}", json.dumps({"enabled": scope is not None}))
        if scope:
            ref = admin.connection.raw_get(f"{base}/{path}").json()
            url = f"{authz}/permission/scope/{ref['scopePermissions'][scope]}"
            permission = admin.connection.raw_get(url).json()
            admin.connection.raw_put(url, json.dumps({**permission, "policies": [policy]}))

    def jwt_grants(on: bool) -> None:
        idp = admin.get_idp("partner")
        idp["config"]["jwtAuthorizationGrantEnabled"] = str(on).lower()
        admin.update_idp("partner", idp)
        client = admin.get_client(exchanger)
        client["attributes"].update({"oauth2.jwt.authorization.grant.enabled": str(on).lower(),
                                     "oauth2.jwt.authorization.grant.idp": "partner"})
        admin.update_client(exchanger, client)

    permissions("identity-provider/instances/partner/management/permissions", "token-exchange")
    assert signed_in(external()) == "gx-pat"  # imported and signed in: no flow, no step
    permissions("users-management-permissions", "impersonate")
    assert signed_in(impersonation()) == "gx-pat"
    jwt_grants(True)
    assert signed_in(jwt_grant()) == "gx-pat"

    status, lines = audit_lines(world, "grants")
    text = "\n".join(lines)
    assert status == 1 and len(lines) == 3, text
    assert "OPEN  token exchange: identity provider 'partner' lets clients exchange" in text
    assert "OPEN  token exchange: the users' impersonate permission has policies" in text
    assert ("OPEN  jwt authorization grant: client 'exchanger' takes JWTs signed by identity "
            "provider 'partner'") in text

    permissions("identity-provider/instances/partner/management/permissions", None)
    permissions("users-management-permissions", None)
    jwt_grants(False)
    assert audit_lines(world, "grants") == (0, [])
    assert external().status_code == 403
    assert impersonation().status_code == 403
    assert jwt_grant().status_code in (400, 401)


# -- step-up only when asked ----------------------------------------------------------------------

def test_conditional_level_both_ways(world):
    realm = world.open_realm("levels")
    world.master.update_realm("levels", {"attributes": {"acr.loa.map": json.dumps({"mfa": 2})}})
    world.stepup("keycloak", "install", *world.keycloak_args("levels"),
                 "--conditional-loa", "2", "--cover", "browser", "--existing-clients")
    world.add_user("lv-lena", admin=realm.admin)
    with chromium_page() as page:
        password_step(page, world, "lv-lena", rp=realm.rp)  # no acr_values: password only
        claims = rp_claims(page)
        assert "stepup_amr" not in claims
        assert claims["acr"] == "1"
    with chromium_page() as page:  # asking for the level: password, then the bridge
        password_step(page, world, "lv-lena", rp=realm.rp, query="?acr_values=mfa")
        secret, _ = enroll_at_bridge(page, world)
        claims = rp_claims(page)
        assert claims["acr"] == "mfa"
        assert claims["stepup_amr"] == "otp"

        page.goto(f"{realm.rp}/login?acr_values=mfa")  # level 2 reached within its max age
        assert rp_claims(page)["acr"] == "mfa"

    world.stepup("keycloak", "install", *world.keycloak_args("levels"),
                 "--conditional-loa", "2", "--loa-max-age", "0", "--cover", "browser")
    with chromium_page() as page:
        password_step(page, world, "lv-lena", rp=realm.rp, query="?acr_values=mfa")
        page.fill("input[name=otp]", totp.code_at(secret, time.time() + 30))
        page.click("button:has-text('Verify')")
        assert rp_claims(page)["acr"] == "mfa"
        page.goto(f"{realm.rp}/login?acr_values=mfa")  # max age 0: asked again
        page.wait_for_selector("input[name=otp]")
        assert page.url.startswith(world.bridge)

    # A user can drop acr_values from the request; the client's Minimum ACR value (docs,
    # section 5) makes Keycloak ask for the step all the same.
    rp = realm.admin.get_client_id("rp")
    realm.admin.update_client(rp, {"attributes": {"minimum.acr.value": "mfa"}})
    with chromium_page() as page:
        password_step(page, world, "lv-lena", rp=realm.rp)  # no acr_values
        page.wait_for_selector("input[name=otp]")
        page.fill("input[name=otp]", totp.code_at(secret, time.time() + 60))
        page.click("button:has-text('Verify')")
        claims = rp_claims(page)
        assert (claims["acr"], claims["stepup_amr"]) == ("mfa", "otp")


# -- install re-runs ------------------------------------------------------------------------------

def test_install_re_runs_with_changed_options_keep_every_clients_scope(world):
    realm = world.open_realm("rerun")
    client_uuid = realm.admin.get_client_id("rp")
    args = world.keycloak_args("rerun")

    def scopes() -> list[str]:
        return [s["name"] for s in realm.admin.get_client_default_client_scopes(client_uuid)]

    def listed() -> list[str]:
        lines = world.stepup("client", "list").stdout.splitlines()
        return next(line for line in lines if line.startswith("keycloak-rerun\t")).split("\t")

    def prefixes() -> list[str]:
        return listed()[4].split()

    world.stepup("keycloak", "install", *args, "--existing-clients")
    assert "stepup" in scopes()
    for extra in (["--conditional-loa", "2"], ["--cover", "browser"], []):
        world.stepup("keycloak", "install", *args, *extra)
        assert "stepup" in scopes(), extra
    assert len(prefixes()) == len(CALLBACK_PATHS)  # one per callback path, none twice
    # The notices name the realm's sign-ins as its login page does (no display name: its name).
    assert listed()[-1] == "name=rerun"
    realm.admin.update_realm("rerun", {"displayName": "Rerun\u00a0Corp"})
    world.stepup("keycloak", "install", *args)
    assert listed()[-1] == "name=Rerun Corp" and len(prefixes()) == len(CALLBACK_PATHS)
    status, lines = audit_lines(world, "rerun")
    assert (status, lines) == (0, []), lines
    # Nothing left to change, the secret included, where Keycloak shows it masked (26.7) too:
    # the step's check of it is readable, so neither side gets a new one.
    again = world.stepup("keycloak", "install", *args)
    assert "(already up to date)" in again.stdout, again.stdout


def test_sessions_from_before_install_pass_until_install_signs_everyone_out(world):
    """A refresh token and an offline token issued before the step existed never meet it:
    they still work after install. ``--sign-out-everyone`` ends every session and refuses
    every token issued before (Keycloak's logout-all and the realm's not-before)."""
    realm = world.open_realm("signout")
    user_id = world.add_user("so-sam", admin=realm.admin)
    token_url = f"{world.keycloak}/realms/signout/protocol/openid-connect/token"

    def grant(**form: str) -> requests.Response:
        return requests.post(token_url, data={"client_id": "admin-cli", **form}, timeout=30)

    def refreshed(token: str) -> requests.Response:
        return grant(grant_type="refresh_token", refresh_token=token)

    issued = {scope: grant(grant_type="password", username="so-sam", password="so-sam-pw",
                           scope=scope).json()["refresh_token"]
              for scope in ("openid", "openid offline_access")}
    assert realm.admin.get_sessions(user_id)

    args = world.keycloak_args("signout")
    installed = world.stepup("keycloak", "install", *args)
    assert "run again with --sign-out-everyone" in installed.stdout
    for token in issued.values():  # the door: no flow runs for a refresh
        assert refreshed(token).status_code == 200

    signed_out = world.stepup("keycloak", "install", *args, "--sign-out-everyone")
    assert "every session signed out" in signed_out.stdout
    for scope, token in issued.items():
        answer = refreshed(token)
        assert answer.status_code == 400, (scope, answer.text)
        assert answer.json()["error"] == "invalid_grant", (scope, answer.text)
    assert realm.admin.get_sessions(user_id) == []
    status, lines = audit_lines(world, "signout")
    assert (status, lines) == (0, []), lines
