"""The token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6) and the assertion it returns
(OpenID Connect Core §2, §3.1.3.7): codes are single use, short-lived, bound to the client,
the redirect URI and the PKCE verifier; of concurrent redemptions exactly one wins."""

from __future__ import annotations

import base64
import hashlib
import threading

import pytest
import sqlalchemy as sa
from joserfc import jws

from bridge.factors import OTP
from bridge.oidc.clients import new_client
from bridge.settings import DEFAULT_ACR
from bridge.store import token_digest
from bridge.store.schema import codes
from tests.bridge.conftest import CALLBACK, IDP_ID, IDP_SECRET, callback_params, shown
from tests.bridge.test_outbox import metric

OTHER_ID, OTHER_SECRET = "other-idp", "other-secret-0123456789"


@pytest.fixture
def issued(act):
    """A finished enrollment: the login and its unredeemed authorization code."""
    login, callback = act.enroll("alice")
    return login, callback_params(callback)["code"]


def register_other(bridge) -> None:
    with bridge.store.begin() as tx:
        tx.add_client(new_client(bridge.secrets.pepper, OTHER_ID, secret=OTHER_SECRET,
                                 jwks_uri=None, redirect_uris=[CALLBACK],
                                 redirect_uri_prefixes=[]))


def audited(act, event: str) -> list[dict]:
    with act.bridge.store.begin() as tx:
        return tx.audit_events(subject=None, event=event, before=None, since=None, limit=50)


def error_of(response, status: int = 400) -> str:
    body = response.get_json()
    assert response.status_code == status, (response.status_code, body)
    assert response.headers["Cache-Control"] == "no-store"
    assert body.get("error_description"), body  # every refusal says why (docs/architecture.md)
    return body["error"]


class TestSuccess:
    def test_response_shape(self, act, issued):
        login, code = issued
        response = act.redeem(code, login)
        assert response.status_code == 200, response.get_json()
        assert response.mimetype == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        body = response.get_json()
        assert body["token_type"].lower() == "bearer"
        assert body["id_token"].count(".") == 2
        assert body["access_token"]
        assert "refresh_token" not in body

    def test_client_secret_post(self, act, issued):
        login, code = issued
        response = act.redeem(code, login, auth=None, client_id=IDP_ID, client_secret=IDP_SECRET)
        assert response.status_code == 200, response.get_json()


class TestIdToken:
    @pytest.fixture
    def id_token(self, act, issued) -> str:
        login, code = issued
        response = act.redeem(code, login)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["id_token"]

    def test_claims(self, act, issued, id_token, clock):
        login, _ = issued
        claims = act.verify_id_token(id_token).claims
        assert claims["iss"] == "https://bridge.example"
        assert claims["sub"] == "alice"
        assert claims["aud"] in (IDP_ID, [IDP_ID])
        assert claims["nonce"] == login.nonce
        assert claims["acr"] == DEFAULT_ACR
        assert claims["amr"] == [OTP]
        assert abs(claims["iat"] - clock()) <= 1
        assert 0 < claims["exp"] - claims["iat"] <= 300
        assert isinstance(claims["auth_time"], int)
        assert claims["auth_time"] <= claims["iat"]
        assert claims["exp"] > clock()

    def test_header(self, client, id_token):
        header = jws.extract_compact(id_token.encode()).headers()
        assert header["alg"] == "ES256"
        assert header["typ"] == "JWT"
        published = {key["kid"]: key for key in client.get("/jwks").get_json()["keys"]}
        assert header["kid"] in published
        assert published[header["kid"]]["alg"] == "ES256"

    def test_auth_time_is_when_the_user_proved_the_factor(self, act, clock):
        login = act.start("alice")
        login.secret = shown(login.last_page, "totp-secret")
        proved_at = int(clock())
        act.post(login, "enroll", otp=act.code_now(login))
        clock.advance(20)  # the user takes a while to save the recovery code
        done = act.post(login, "saved", saved="yes")
        claims = act.finish(login, done.headers["Location"])
        assert claims["auth_time"] == proved_at
        assert claims["iat"] >= proved_at + 20


class TestRefused:
    def test_code_is_single_use(self, act, issued):
        login, code = issued
        assert act.redeem(code, login).status_code == 200
        assert error_of(act.redeem(code, login)) == "invalid_grant"

    def test_a_code_presented_again_is_audited_as_reused(self, act, issued, clock, caplog):
        """RFC 6749 §4.1.2, §10.5: a second redemption means someone else saw the code (or
        the IdP retries). It is refused as any unknown code, and audited so an operator can
        tell it from a guess, with the client that presented it (and the one it was issued
        to, if another). The code itself is never written down."""
        login, code = issued
        register_other(act.bridge)
        before = metric("stepup_codes_reused_total")
        assert act.redeem(code, login).status_code == 200
        assert error_of(act.redeem(code, login)) == "invalid_grant"
        assert error_of(act.redeem(code, login, auth=(OTHER_ID, OTHER_SECRET))) == "invalid_grant"
        reused = audited(act, "code_reused")
        assert [(e["subject"], e["client_id"], e["ip"], e["detail"]) for e in reused] == [
            ("alice", OTHER_ID, "127.0.0.1", {"issued_to": IDP_ID}),
            ("alice", IDP_ID, "127.0.0.1", {})]
        assert code not in caplog.text and code not in str(reused)
        assert metric("stepup_codes_reused_total") == before + 2
        # Never audited: an unknown code, and one that expired unredeemed or was redeemed
        # and has expired since (its row is gone with the next sweep either way).
        act.redeem("not-a-code", login)
        clock.advance(61)
        act.redeem(code, login)
        late, late_callback = act.enroll("bob")
        clock.advance(61)
        act.redeem(callback_params(late_callback)["code"], late)
        assert len(audited(act, "code_reused")) == 2

    def test_a_redeemed_code_cannot_be_redeemed_by_any_key_derived_from_it(self, act, issued):
        """The redeemed row is kept (for the audit above) under a key no lookup produces: not
        the code, not the digest of the code sent as a code (the digest is plain SHA-256,
        anyone can make it), not the digest of that; nor by a node still on the release that
        took codes by deleting the row of the presented code's digest (a rolling upgrade)."""
        login, code = issued
        assert act.redeem(code, login).status_code == 200
        once, twice = token_digest(code), token_digest(token_digest(code))
        for presented in (code, once, twice):
            assert error_of(act.redeem(presented, login)) == "invalid_grant", presented
        with act.bridge.store.begin() as tx:
            for presented in (code, once, twice):
                taken = tx._db.execute(sa.delete(codes).where(
                    codes.c.code_digest == token_digest(presented), codes.c.client_id == IDP_ID
                ).returning(codes.c.subject)).rows
                assert taken == [], presented
        assert len(audited(act, "code_reused")) == 1  # the code itself, not its derivatives

    def test_expired_code(self, act, issued, clock):
        login, code = issued
        clock.advance(61)
        assert error_of(act.redeem(code, login)) == "invalid_grant"

    def test_code_redeemable_until_expiry(self, act, issued, clock):
        login, code = issued
        clock.advance(55)
        assert act.redeem(code, login).status_code == 200

    def test_unknown_code(self, act, issued):
        login, _ = issued
        assert error_of(act.redeem("not-a-code", login)) == "invalid_grant"

    def test_missing_code(self, act, issued):
        login, _ = issued
        response = act.client.post("/token", data={
            "grant_type": "authorization_code", "redirect_uri": CALLBACK,
            "code_verifier": login.verifier}, auth=(IDP_ID, IDP_SECRET))
        assert error_of(response) in ("invalid_request", "invalid_grant")

    def test_wrong_code_verifier(self, act, issued):
        login, code = issued
        assert error_of(act.redeem(code, login, code_verifier="x" * 64)) == "invalid_grant"

    def test_missing_code_verifier(self, act, issued):
        login, code = issued
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
        response = act.client.post("/token", data=form, auth=(IDP_ID, IDP_SECRET))
        assert error_of(response) == "invalid_request"
        assert act.redeem(code, login).status_code == 200  # the IdP's slip spent nothing

    @pytest.mark.parametrize("verifier", ["", "a" * 42, "a" * 129, "a/" * 30, "B" * 43 + "\n"])
    def test_a_malformed_verifier_is_refused_before_the_code_is_taken(self, act, issued,
                                                                       verifier):
        """RFC 7636 §4.1's syntax, checked with the request's shape: an IdP that formats the
        verifier wrong gets invalid_request, and the user's step-up (perhaps just made with
        their recovery code) is still there when the IdP sends the right one."""
        login, code = issued
        response = act.redeem(code, login, code_verifier=verifier)
        assert error_of(response) == "invalid_request"
        assert act.redeem(code, login).status_code == 200

    def test_challenge_as_verifier(self, act, issued):
        """The "plain" method is never applied: sending the challenge itself fails."""
        login, code = issued
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(login.verifier.encode()).digest()).decode().rstrip("=")
        assert error_of(act.redeem(code, login, code_verifier=challenge)) == "invalid_grant"

    @pytest.mark.parametrize("redirect_uri", [
        "https://idp.example/other", CALLBACK + "?x=1", CALLBACK + "/", "",
    ], ids=["other", "extra-query", "trailing-slash", "empty"])
    def test_wrong_redirect_uri(self, act, issued, redirect_uri):
        login, code = issued
        assert error_of(act.redeem(code, login, redirect_uri=redirect_uri)) in (
            "invalid_grant", "invalid_request")

    def test_code_of_another_client(self, act, client, bridge):
        register_other(bridge)
        response, login = act.push("alice", auth=(OTHER_ID, OTHER_SECRET), client_id=OTHER_ID)
        uri = response.get_json()["request_uri"]
        act.opened(login, client.get(f"/authorize?client_id={OTHER_ID}&request_uri={uri}"))
        login.secret = shown(login.last_page, "totp-secret")
        act.post(login, "enroll", otp=act.code_now(login))
        code = callback_params(act.post(login, "saved", saved="yes").headers["Location"])["code"]
        assert error_of(act.redeem(code, login)) == "invalid_grant"  # as IDP_ID
        # A client that saw another's code cannot spend it: its own client still redeems it.
        assert act.redeem(code, login, auth=(OTHER_ID, OTHER_SECRET)).status_code == 200

    @pytest.mark.parametrize("grant_type", ["password", "refresh_token",
                                            "urn:ietf:params:oauth:grant-type:jwt-bearer"])
    def test_unsupported_grant_type(self, act, issued, grant_type):
        login, code = issued
        response = act.redeem(code, login, grant_type=grant_type)
        assert error_of(response) == "unsupported_grant_type"

    def test_client_credentials_are_only_for_help_desk_clients(self, act, issued):
        """The grant exists for ``--admin`` clients (bridge/test_admin_api.py); an IdP is
        not authorized to use it (RFC 6749 §5.2)."""
        login, code = issued
        response = act.redeem(code, login, grant_type="client_credentials")
        assert error_of(response) == "unauthorized_client"

    def test_code_survives_a_wrong_grant_type(self, act, issued):
        login, code = issued
        act.redeem(code, login, grant_type="password")
        assert act.redeem(code, login).status_code == 200

    @pytest.mark.parametrize("auth", [
        None, (IDP_ID, "wrong-secret-0123456789"), ("nobody", IDP_SECRET), (IDP_ID, ""),
    ], ids=["none", "wrong-secret", "unknown-client", "empty-secret"])
    def test_bad_client_authentication(self, act, issued, auth):
        login, code = issued
        assert error_of(act.redeem(code, login, auth=auth), 401) == "invalid_client"

    def test_failed_client_authentication_leaves_the_code(self, act, issued):
        login, code = issued
        act.redeem(code, login, auth=(IDP_ID, "wrong-secret-0123456789"))
        assert act.redeem(code, login).status_code == 200

    @pytest.mark.parametrize("name", ["code", "code_verifier", "redirect_uri", "grant_type"])
    def test_a_repeated_parameter_is_refused(self, act, issued, name):
        """RFC 6749 §3.2: no parameter twice (authlib alone would take the first copy)."""
        login, code = issued
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": login.redirect_uri, "code_verifier": login.verifier}
        body = "&".join(f"{k}={v}" for k, v in form.items()) + f"&{name}=other"
        response = act.client.post("/token", data=body, auth=(IDP_ID, IDP_SECRET),
                                   content_type="application/x-www-form-urlencoded")
        assert error_of(response) == "invalid_request"
        assert name in response.get_json()["error_description"]
        assert act.redeem(code, login).status_code == 200  # refused before the code was taken

    @pytest.mark.parametrize("basic, posted", [
        (IDP_SECRET, IDP_SECRET), (IDP_SECRET, "wrong-secret-0123456789"),
        ("wrong-secret-0123456789", IDP_SECRET)], ids=["both-right", "post-wrong", "basic-wrong"])
    def test_two_authentication_methods_are_refused(self, act, issued, basic, posted):
        """RFC 6749 §2.3: one method per request; with two, a failing one must not be
        outvoted by the other (§5.2 names this invalid_request)."""
        login, code = issued
        response = act.redeem(code, login, auth=(IDP_ID, basic), client_secret=posted)
        assert error_of(response) == "invalid_request"
        assert act.redeem(code, login).status_code == 200

    @pytest.mark.parametrize("name", ["grant_type", "redirect_uri"])
    def test_a_missing_parameter_is_invalid_request(self, act, issued, name):
        """RFC 6749 §5.2 (authlib alone answers unsupported_grant_type and invalid_grant)."""
        login, code = issued
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": login.redirect_uri, "code_verifier": login.verifier}
        del form[name]
        response = act.client.post("/token", data=form, auth=(IDP_ID, IDP_SECRET))
        assert error_of(response) == "invalid_request"
        assert act.redeem(code, login).status_code == 200

    @pytest.mark.parametrize("query", ["code=other", "client_secret=x", "anything=1"])
    def test_parameters_in_the_query_string_are_refused(self, act, issued, query):
        """RFC 6749 §3.2: the body carries them; authlib reads the query too, and its copy of
        a parameter would win over the body's."""
        login, code = issued
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": login.redirect_uri, "code_verifier": login.verifier}
        response = act.client.post(f"/token?{query}", data=form, auth=(IDP_ID, IDP_SECRET))
        assert error_of(response) == "invalid_request"
        assert act.redeem(code, login).status_code == 200

    def test_a_verifier_with_a_final_newline_is_refused(self, act):
        """RFC 7636 §4.1: the verifier is 43-128 unreserved characters; a pattern ending in
        ``$`` lets a final newline through, and the challenge computed over it would match."""
        verifier = "B" * 43 + "\n"
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        login, callback = act.enroll("alice", code_challenge=challenge)
        code = callback_params(callback)["code"]
        assert error_of(act.redeem(code, login, code_verifier=verifier)) == "invalid_request"

    def test_json_body(self, act, issued):
        login, code = issued
        response = act.client.post("/token", json={
            "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
            "code_verifier": login.verifier}, auth=(IDP_ID, IDP_SECRET))
        assert error_of(response) == "invalid_request"

    def test_get_not_allowed(self, client):
        response = client.get("/token")
        assert response.status_code == 405
        assert "POST" in response.headers["Allow"]

    def test_options_lists_only_what_is_allowed(self, client):
        response = client.options("/token")
        assert response.status_code == 204
        assert response.headers["Allow"] == "OPTIONS, POST"


class TestClientIdParameter:
    """RFC 6749 §3.2.1: a client MAY name itself with ``client_id``. Naming another client than
    the one that authenticated makes the request contradict itself: invalid_request, as /par
    answers the same mismatch (tests/bridge/test_par.py, client-id-mismatch)."""

    def test_another_clients_id_is_refused(self, act, bridge, issued):
        register_other(bridge)
        login, code = issued
        response = act.redeem(code, login, client_id=OTHER_ID)  # Basic as IDP_ID
        assert error_of(response) == "invalid_request"
        assert "client_id" in response.get_json()["error_description"]
        assert act.redeem(code, login).status_code == 200  # refused before the code was taken

    def test_an_unknown_client_id_is_refused(self, act, issued):
        login, code = issued
        assert error_of(act.redeem(code, login, client_id="nobody")) == "invalid_request"

    @pytest.mark.parametrize("client_id", [IDP_ID, ""], ids=["own", "empty"])
    def test_its_own_id_or_none(self, act, issued, client_id):
        login, code = issued
        assert act.redeem(code, login, client_id=client_id).status_code == 200


class TestEmptyParameters:
    """RFC 6749 §3.2: "Parameters sent without a value MUST be treated as if they were omitted
    from the request" — a required one sent empty is refused just as a missing one."""

    @pytest.mark.parametrize("name", ["client_secret", "client_assertion"])
    def test_basic_with_an_empty_body_credential_is_one_method(self, act, issued, name):
        login, code = issued
        assert act.redeem(code, login, **{name: ""}).status_code == 200

    def test_empty_client_secret_post_is_no_authentication(self, act, issued):
        login, code = issued
        response = act.redeem(code, login, auth=None, client_id=IDP_ID, client_secret="")
        assert error_of(response, 401) == "invalid_client"

    @pytest.mark.parametrize("name", ["grant_type", "code", "redirect_uri", "code_verifier"])
    def test_empty_is_answered_as_missing(self, act, name):
        answers = []
        for subject, empty in (("ann", False), ("bob", True)):
            login, callback = act.enroll(subject)
            form = {"grant_type": "authorization_code", "code": callback_params(callback)["code"],
                    "redirect_uri": login.redirect_uri, "code_verifier": login.verifier}
            if empty:
                form[name] = ""
            else:
                del form[name]
            response = act.client.post("/token", data=form, auth=(IDP_ID, IDP_SECRET))
            answers.append((response.status_code, response.get_json()))
        assert answers[0] == answers[1]
        assert answers[1][1]["error"] == "invalid_request", answers

    def test_an_empty_optional_parameter_is_ignored(self, act, issued):
        login, code = issued
        assert act.redeem(code, login, scope="").status_code == 200

    def test_an_empty_copy_still_makes_a_parameter_repeated(self, act, issued):
        login, code = issued
        body = (f"grant_type=authorization_code&code={code}&redirect_uri={CALLBACK}"
                f"&code_verifier={login.verifier}&code=")
        response = act.client.post("/token", data=body, auth=(IDP_ID, IDP_SECRET),
                                   content_type="application/x-www-form-urlencoded")
        assert error_of(response) == "invalid_request"
        assert act.redeem(code, login).status_code == 200


class TestTextEncoding:
    @pytest.mark.parametrize("raw", ["code_verifier=%E9", "scope=%FF", "x%C3=1"])
    def test_invalid_utf8_is_refused(self, act, issued, raw):
        """RFC 6749 Appendix B: UTF-8; werkzeug alone would keep the bytes as "%E9"."""
        login, code = issued
        body = (f"grant_type=authorization_code&code={code}&redirect_uri={CALLBACK}&{raw}")
        response = act.client.post("/token", data=body, auth=(IDP_ID, IDP_SECRET),
                                   content_type="application/x-www-form-urlencoded")
        assert error_of(response) == "invalid_request"
        assert "UTF-8" in response.get_json()["error_description"]
        assert code not in response.get_data(as_text=True)
        assert act.redeem(code, login).status_code == 200

    def test_a_repeated_odd_name_is_refused_without_being_quoted(self, act, issued):
        """As at /par: a clear invalid_request (authlib raised on the quote), the code kept."""
        login, code = issued
        body = f"grant_type=authorization_code&code={code}&redirect_uri={CALLBACK}&a\"=1&a\"=2"
        response = act.client.post("/token", data=body, auth=(IDP_ID, IDP_SECRET),
                                   content_type="application/x-www-form-urlencoded")
        assert error_of(response) == "invalid_request"
        assert response.get_json()["error_description"] == "A parameter is repeated."
        assert act.redeem(code, login).status_code == 200


class TestConcurrentRedemption:
    N = 8

    def test_exactly_one_wins(self, act, app, issued):
        login, code = issued
        barrier = threading.Barrier(self.N)
        results: list[tuple[int, dict]] = []
        lock = threading.Lock()

        def redeem():
            client = app.test_client()
            barrier.wait()
            response = act.redeem(code, login, client=client)
            with lock:
                results.append((response.status_code, response.get_json()))

        threads = [threading.Thread(target=redeem) for _ in range(self.N)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted(status for status, _ in results)
        assert len(results) == self.N
        assert statuses == [200] + [400] * (self.N - 1), results
        assert all(body["error"] == "invalid_grant" for status, body in results if status == 400)
