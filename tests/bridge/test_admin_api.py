"""The help-desk API (``/admin/api``): client-credentials tokens with scope ``stepup:admin``,
refusals (401/403), hostile input (4xx, never 500), audit of every accepted call, OpenAPI."""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from dataclasses import replace

import jsonschema
import pytest
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import ECKey

from bridge import helpdesk
from bridge.admin.grant import AdminCredentialsGrant
from bridge.notify.notme import Outcome
from bridge.oidc.clients import new_client
from bridge.store import Store, Tx
from tests.bridge.conftest import IDP_ID, IDP_SECRET, returning, user, wrong_code
from tests.bridge.test_cli import ok, stepup  # noqa: F401  (fixture)
from tests.bridge.test_outbox import outbox

ADMIN_ID, ADMIN_SECRET = "helpdesk-tool", "helpdesk-secret-0123456789"


@pytest.fixture
def admin_act(make_act):
    act = make_act(lockout_limit=2, failure_burst=0, admin_token_ttl=60)
    with act.bridge.store.begin() as tx:
        tx.add_client(new_client(act.bridge.secrets.pepper, ADMIN_ID, secret=ADMIN_SECRET,
                                 jwks_uri=None, redirect_uris=[], redirect_uri_prefixes=[],
                                 admin=True))
    return act


def register_admin_again(act, secret: str) -> None:
    """``stepup client add --replace`` with a new secret: the old registration goes, with it
    everything it was given."""
    with act.bridge.store.begin() as tx:
        tx.remove_client(ADMIN_ID)
        tx.add_client(new_client(act.bridge.secrets.pepper, ADMIN_ID, secret=secret,
                                 jwks_uri=None, redirect_uris=[], redirect_uri_prefixes=[],
                                 admin=True))


def get_token(act, scope="stepup:admin", auth=(ADMIN_ID, ADMIN_SECRET), **form):
    data = {"grant_type": "client_credentials", **({"scope": scope} if scope else {}), **form}
    return act.client.post("/token", data=data, auth=auth)


def bearer(act, **kw) -> dict:
    response = get_token(act, **kw)
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def audited(act, event: str) -> list[dict]:
    with act.bridge.store.begin() as tx:
        return tx.audit_events(subject=None, event=event, before=None, since=None, limit=50)


def locked_user(act, clock, subject="lou"):
    first, _ = act.enroll(subject)
    login = returning(act, subject, first.secret)
    for _ in range(2):
        clock.advance(120)
        act.post(login, "totp", otp=wrong_code(first.secret, clock()))
    assert user(act, subject).locked_at is not None
    return first


def test_a_help_desk_shows_unlocks_and_resets_a_user(admin_act, clock):
    act = admin_act
    first = locked_user(act, clock)
    token = get_token(act).get_json()
    assert token["token_type"].lower() == "bearer" and token["expires_in"] == 60
    assert token["scope"] == "stepup:admin"
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    shown = act.client.get("/admin/api/users/lou", headers=headers)
    assert shown.status_code == 200
    body = shown.get_json()
    assert body["locked"] is True and body["failures"] == 2
    assert body["factors"] == ["totp", "recovery_code"] and body["last_used_at"] == body[
        "enrolled_at"]
    for secret in (first.secret, first.recovery_code):
        assert secret not in shown.get_data(as_text=True)
    assert "totp_secret" not in body and "recovery_digest" not in body

    assert act.client.post("/admin/api/users/lou/unlock", headers=headers).status_code == 200
    assert user(act, "lou").locked_at is None
    assert act.client.post("/admin/api/users/lou/unlock", headers=headers).status_code == 409
    assert act.client.post("/admin/api/users/lou/reset", headers=headers).status_code == 200
    assert user(act, "lou") is None
    assert act.client.get("/admin/api/users/lou", headers=headers).status_code == 404
    assert act.client.post("/admin/api/users/lou/reset", headers=headers).status_code == 404
    assert [(e["detail"]["action"], e["detail"]["reason"]) for e in audited(
        act, "helpdesk_refused")] == [("reset", "not_enrolled"), ("unlock", "not_locked")]
    # Every accepted call is audited with the caller's client id and address.
    act.client.get("/admin/api/events", headers=headers)
    for event in ("helpdesk_show", "helpdesk_unlock", "helpdesk_reset", "helpdesk_events"):
        assert [e["client_id"] for e in audited(act, event)] and all(
            (e["client_id"], e["ip"]) == (ADMIN_ID, "127.0.0.1") for e in audited(act, event))
    assert len(audited(act, "helpdesk_show")) == 2


def test_events_page_back_with_filters(admin_act, clock):
    act = admin_act
    for n in range(5):
        act.enroll(f"p{n}")
    headers = bearer(act)
    first = act.client.get("/admin/api/events?event=enrollment&limit=2", headers=headers)
    page = first.get_json()
    assert [e["subject"] for e in page["events"]] == ["p4", "p3"]
    second = act.client.get(f"/admin/api/events?event=enrollment&limit=2&before="
                            f"{page['next_before']}", headers=headers).get_json()
    assert [e["subject"] for e in second["events"]] == ["p2", "p1"]
    only = act.client.get("/admin/api/events?subject=p0", headers=headers).get_json()
    assert {e["subject"] for e in only["events"]} == {"p0"}
    assert only["next_before"] is None
    assert all(e["client_id"] == ADMIN_ID for e in audited(act, "helpdesk_events"))
    assert len(audited(act, "helpdesk_events")) == 3


def test_a_polling_tool_can_leave_out_its_own_look_ups(admin_act, clock):
    """Each call is audited; a tool that polls the list would read its own calls back, one
    more each time. ``lookups=false`` leaves them out; the default lists everything."""
    act = admin_act
    act.enroll("q0")
    headers = bearer(act)
    since = int(clock())
    for _ in range(3):
        polled = act.client.get(f"/admin/api/events?since={since}&lookups=false",
                                headers=headers).get_json()
        assert {e["event"] for e in polled["events"]} == {"enrollment"}
    everything = act.client.get(f"/admin/api/events?since={since}", headers=headers).get_json()
    assert [e["event"] for e in everything["events"]].count("helpdesk_events") == 3
    assert len(audited(act, "helpdesk_events")) == 4  # every call audited all the same


@pytest.mark.parametrize("query", [
    "limit=0", "limit=201", "limit=99999999999999999999999", "limit=abc", "limit=-1",
    "before=0", "since=x", "limit=%D9%A3",  # Arabic-Indic three
    "subject=" + "x" * 300, "event=" + "e" * 100,
    "subject=alice&subject=bob", "limit=5&limit=6",  # which one? neither
    "subject=%FF", "subject=a%FEb",  # not UTF-8: not a subject anyone sent
    "lookups=no", "lookups=", "event=%EF%BF%BD", "event=%FF",  # U+FFFD: as for subject
])
def test_hostile_paging_is_a_clear_400(admin_act, query):
    response = admin_act.client.get(f"/admin/api/events?{query}", headers=bearer(admin_act))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("query", ["x=%FF", "a=1&a=2"])
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/admin/api/users/nobody"), ("POST", "/admin/api/users/nobody/unlock"),
    ("POST", "/admin/api/users/nobody/reset")])
def test_every_call_refuses_the_query_the_description_refuses(admin_act, method, path, query):
    """The OpenAPI description's invalid_request holds for every call, not only /events
    (found by a hostile-input probe: these went on to a 200 or a 404)."""
    response = admin_act.client.open(f"{path}?{query}", method=method, headers=bearer(admin_act))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
    assert not audited(admin_act, "helpdesk_refused")  # refused before anything is done


def test_hostile_subjects_and_bodies_are_4xx(admin_act):
    act, headers = admin_act, bearer(admin_act)
    assert act.client.get("/admin/api/users/nobody", headers=headers).status_code == 404
    assert act.client.get("/admin/api/users/" + "x" * 300, headers=headers).status_code == 400
    # Not UTF-8: refused, not looked up (and audited) as U+FFFD; unprintable: refused at every
    # path that names a subject, not left to the routing (404).
    for raw in ("%FF", "a%FE", "%C3", "a%0Ab", "%0A", "a%09"):
        refused = act.client.get(f"/admin/api/users/{raw}", headers=headers)
        assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_request"
        for action in ("reset", "unlock"):
            refused = act.client.post(f"/admin/api/users/{raw}/{action}", headers=headers)
            assert refused.status_code == 400, (raw, action)
            assert refused.get_json()["error"] == "invalid_request"
    assert not [e for e in audited(act, "helpdesk_show") if "\ufffd" in (e["subject"] or "")]
    assert act.client.post("/admin/api/users/nobody/reset", headers=headers).status_code == 404
    assert act.client.post("/admin/api/users/nobody/unlock", headers=headers).status_code == 404
    wrong = act.client.post("/admin/api/users/nobody/reset", headers=headers,
                            data="{not json", content_type="application/json")
    assert wrong.status_code == 400
    for path in ("/admin/api/users/nobody/unlock", "/admin/api/users/nobody"):
        deep = act.client.open(path, method="POST" if path.endswith("unlock") else "GET",
                               headers=headers, data="[" * 10_000,
                               content_type="application/json")
        assert deep.status_code == 400, path  # not a 500 from the JSON parser's recursion
        assert deep.get_json()["error"] == "invalid_request"
    assert act.client.delete("/admin/api/users/nobody", headers=headers).status_code == 405
    assert act.client.get("/admin/api/nothing", headers=headers).status_code == 404


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/admin/api/nothing", 404), ("GET", "/admin/api/users/", 404),
    ("PUT", "/admin/api/users/ann", 405), ("GET", "/admin/api/users/a%0A/reset", 405),
    ("DELETE", "/admin/api/users/ann", 405), ("GET", "/admin/api/users/ann/reset", 405),
    ("GET", "/admin/api/users/ann/unlock", 405), ("PUT", "/admin/api/users/ann/reset", 405),
    ("DELETE", "/admin/api/users/a/b/unlock", 405), ("POST", "/admin/api/events", 405),
    ("GET", "/admin/api", 404)])
def test_every_refusal_under_the_api_is_json(admin_act, method, path, status):
    """docs/helpdesk.md: errors are JSON — also the routing's own (no such path, wrong
    method), and a GET of an action's URL is not a look-up of subject "ann/reset"."""
    act = admin_act
    response = act.client.open(path, method=method, headers=bearer(act))
    assert response.status_code == status
    assert response.is_json and response.get_json()["error"] in ("not_found", "invalid_request")
    assert response.headers["Cache-Control"] == "no-store"
    if status == 405:  # RFC 9110 §10.2.1: what the resource supports, and only that
        allowed = {m.strip() for m in response.headers["Allow"].split(",")}
        assert allowed - {"OPTIONS", "HEAD"} == (
            {"POST"} if path.endswith(("/reset", "/unlock")) else {"GET"}), allowed
    named_reset = act.client.get("/admin/api/users/reset", headers=bearer(act))
    assert named_reset.status_code == 404  # a subject called "reset" is looked up
    assert named_reset.get_json()["error"] == "not_enrolled"
    assert "helpdesk_show" not in [e["event"] for e in act.client.get(
        "/admin/api/events?subject=ann%2Freset", headers=bearer(act)).get_json()["events"]]


def test_missing_bad_and_expired_tokens_are_401(admin_act, clock):
    act = admin_act
    act.enroll("tia")
    unauthenticated = act.client.get("/admin/api/users/tia")
    assert unauthenticated.status_code == 401
    # RFC 6750 §3.1: no error code when no token was sent; invalid_token for a bad one.
    assert unauthenticated.headers["WWW-Authenticate"] == 'Bearer realm="stepup-admin"'
    for header in ("Bearer", "Bearer nope", "Bearer " + "x" * 600, "Bearer \x01"):
        response = act.client.get("/admin/api/users/tia", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["WWW-Authenticate"] == (
            'Bearer realm="stepup-admin", error="invalid_token"'), header
    # Another scheme is no token at all: no error code either.
    for header in ("Basic abc", "Token x", "bearer-ish x"):
        response = act.client.get("/admin/api/users/tia", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="stepup-admin"', header
    headers = bearer(act)
    clock.advance(61)
    assert act.client.get("/admin/api/users/tia", headers=headers).status_code == 401
    assert audited(act, "helpdesk_show") == []


def test_a_token_over_plain_http_from_another_host_is_refused(admin_act):
    """RFC 6750 §5.3: a token that can reset anyone's factors must not cross the network in
    clear; /token refuses plain http from elsewhere, so the API does too, before the token."""
    act = admin_act
    act.enroll("ned")
    headers = bearer(act)
    refused = act.client.get("/admin/api/users/ned", headers=headers,
                             environ_overrides={"REMOTE_ADDR": "203.0.113.5"})
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "invalid_request"
    assert "https" in refused.get_json()["error_description"]
    assert audited(act, "helpdesk_show") == []
    over_tls = act.client.get("/admin/api/users/ned", headers=headers,
                              base_url="https://bridge.example",
                              environ_overrides={"REMOTE_ADDR": "203.0.113.5"})
    assert over_tls.status_code == 200


def test_wrong_scope_or_client_is_refused(admin_act, clock):
    act = admin_act
    act.enroll("uma")
    # Another scope cannot be asked for.
    assert get_token(act, scope="stepup:admin openid").get_json()["error"] == "invalid_scope"
    # An IdP (not an admin client) gets no client-credentials token at all.
    idp = get_token(act, auth=(IDP_ID, IDP_SECRET))
    assert idp.status_code == 400 and idp.get_json()["error"] == "unauthorized_client"
    assert get_token(act, auth=(ADMIN_ID, "wrong-secret-0123456789")).status_code == 401
    # A token whose client lost the admin flag (re-registered without it) is invalid.
    headers = bearer(act)
    with act.bridge.store.begin() as tx:
        tx.remove_client(ADMIN_ID)
        tx.add_client(new_client(act.bridge.secrets.pepper, ADMIN_ID, secret=ADMIN_SECRET,
                                 jwks_uri=None, redirect_uris=["https://x.example/cb"],
                                 redirect_uri_prefixes=[]))
    refused = act.client.get("/admin/api/users/uma", headers=headers)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert audited(act, "helpdesk_show") == []


def test_a_new_secret_or_a_removal_revokes_the_clients_tokens(admin_act, stepup):  # noqa: F811
    """A leaked secret is replaced to cut off whoever holds it, tokens taken with it included;
    a removed client's tokens stay dead when the id is registered again."""
    act = admin_act
    act.enroll("una")
    other = bearer(act, auth=(ADMIN_ID, ADMIN_SECRET))
    ok(stepup("client", "add", "--client-id", "desk2", "--client-secret", ADMIN_SECRET,
              "--admin"))
    kept = bearer(act, auth=("desk2", ADMIN_SECRET))
    ok(stepup("client", "add", "--client-id", ADMIN_ID, "--client-secret", "new-" + ADMIN_SECRET,
              "--admin", "--replace"))
    assert act.client.get("/admin/api/users/una", headers=other).status_code == 401
    assert act.client.get("/admin/api/users/una", headers=kept).status_code == 200  # not its
    fresh = bearer(act, auth=(ADMIN_ID, "new-" + ADMIN_SECRET))
    ok(stepup("client", "remove", "desk2", "--yes"))
    ok(stepup("client", "add", "--client-id", "desk2", "--client-secret", ADMIN_SECRET,
              "--admin"))
    assert act.client.get("/admin/api/users/una", headers=kept).status_code == 401
    assert act.client.get("/admin/api/users/una", headers=fresh).status_code == 200


@pytest.mark.parametrize("form", [{"grant_type": "client_credentials"},
                                  {"grant_type": "client_credentials", "scope": ""},
                                  {"grant_type": "client_credentials", "scope": " "}],
                         ids=["no-scope", "empty-scope", "blank-scope"])
def test_without_a_scope_the_token_has_the_admin_scope(admin_act, form):
    """RFC 6749 §3.3: an omitted scope gets a pre-defined default — for a help-desk client, its
    admin scope (an empty one counts as omitted, §3.2) — and the token response names it
    (§5.1: it differs from the requested scope)."""
    act = admin_act
    act.enroll("uma")
    response = act.client.post("/token", data=form, auth=(ADMIN_ID, ADMIN_SECRET))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["scope"] == "stepup:admin"
    headers = {"Authorization": f"Bearer {response.get_json()['access_token']}"}
    assert act.client.get("/admin/api/users/uma", headers=headers).status_code == 200


def test_a_private_key_jwt_admin_client_gets_a_token(make_act, clock, monkeypatch):
    act = make_act()
    key = ECKey.generate_key("P-256", {"kid": "hd-1"})
    from bridge.oidc import clients

    monkeypatch.setattr(clients.ClientKeys, "get", lambda self, uri, kid=None: __import__(
        "joserfc.jwk", fromlist=["KeySet"]).KeySet([key]))
    with act.bridge.store.begin() as tx:
        tx.add_client(new_client(act.bridge.secrets.pepper, "hd-jwt", secret=None,
                                 jwks_uri="https://tool.example/jwks", redirect_uris=[],
                                 redirect_uri_prefixes=[], admin=True))
    now = int(time.time())
    assertion = jwt.encode({"alg": "ES256", "kid": "hd-1"}, {
        "iss": "hd-jwt", "sub": "hd-jwt", "aud": "https://bridge.example/token",
        "jti": f"j-{now}", "iat": now, "exp": now + 60}, key)
    response = act.client.post("/token", data={
        "grant_type": "client_credentials", "scope": "stepup:admin", "client_id": "hd-jwt",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})
    assert response.status_code == 200, response.get_json()
    headers = {"Authorization": f"Bearer {response.get_json()['access_token']}"}
    assert act.client.get("/admin/api/events", headers=headers).status_code == 200


def test_a_token_asked_for_with_the_old_secret_is_not_saved_after_a_new_registration(
        admin_act, monkeypatch):
    """The request authenticated with the old secret; the operator registered the tool again
    (a new secret after a leak) before its token was saved: no token, invalid_client."""
    save = AdminCredentialsGrant.save_token

    def replaced_first(grant, token):
        register_admin_again(admin_act, "helpdesk-secret-new-0123456")
        return save(grant, token)

    monkeypatch.setattr(AdminCredentialsGrant, "save_token", replaced_first)
    response = get_token(admin_act)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
    with admin_act.bridge.store.engine.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(
            sa.table("access_tokens"))).scalar() == 0


def test_a_new_registration_while_a_token_is_being_saved_ends_that_token(admin_act,
                                                                            monkeypatch):
    """The token is saved under the row lock of the registration it was asked for with; a
    new registration meanwhile waits for it (PostgreSQL: the row; SQLite: the one writer),
    then removes it with everything else the old registration was given."""
    save_access_token = Tx.save_access_token
    replacing: list[threading.Thread] = []

    def save_while_replaced(tx, *args, **kwargs):
        replacing.append(threading.Thread(target=register_admin_again,
                                          args=(admin_act, "helpdesk-secret-new-0123456")))
        replacing[0].start()
        replacing[0].join(0.5)  # it waits for this transaction
        assert replacing[0].is_alive()
        return save_access_token(tx, *args, **kwargs)

    monkeypatch.setattr(Tx, "save_access_token", save_while_replaced)
    response = get_token(admin_act)
    replacing[0].join(30)
    assert response.status_code == 200  # saved before the new registration committed...
    headers = {"Authorization": f"Bearer {response.get_json()['access_token']}"}
    answer = admin_act.client.get("/admin/api/events", headers=headers)
    assert answer.status_code == 401  # ...and removed with the old registration
    assert answer.get_json()["error"] == "invalid_token"


@pytest.mark.parametrize(("method", "path"), [("post", "/admin/api/users/vic/reset"),
                                            ("get", "/admin/api/users/vic"),
                                            ("get", "/admin/api/events")])
def test_a_call_that_comes_during_its_clients_removal_does_nothing_after_it(admin_act, method,
                                                                            path):
    """Found by review: the token was checked outside the transaction that acts, so a call
    that came while the operator removed its (leaked) client reset a user after "Removed
    client" was printed (SQLite: a read takes no lock). The action's transaction now checks
    again, holding the client's row (PostgreSQL: the removal's delete holds it)."""
    act = admin_act
    act.enroll("vic")
    headers = bearer(act)
    answers = []
    with act.bridge.store.begin() as tx:
        tx.remove_client(ADMIN_ID)
        tx.audit("client_removed", time.time(), client_id=ADMIN_ID)
        caller = threading.Thread(target=lambda: answers.append(
            getattr(act.client, method)(path, headers=headers)))
        caller.start()
        caller.join(0.5)
        assert caller.is_alive()  # it waits for the removal...
    caller.join(30)
    [answer] = answers
    assert answer.status_code == 401, answer.get_json()  # ...and then finds it
    assert answer.get_json()["error"] == "invalid_token"
    assert user(act, "vic") is not None
    with act.bridge.store.begin() as tx:
        trail = tx.audit_events(subject=None, event=None, before=None, since=None, limit=1)
    assert trail[0]["event"] == "client_removed"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite: one writer
def test_calls_of_one_tool_do_not_wait_for_each_other(admin_act, monkeypatch):
    """Each call holds its client's row while it acts (above): shared, so a slow look-up does
    not hold up the tool's next call (found by review: FOR UPDATE queued them all)."""
    act = admin_act
    act.enroll("vic")
    headers = bearer(act)
    show, answers = helpdesk.show, []

    def slow_show(*args, **kwargs):
        if not answers:  # the first call: another comes while it holds the row
            other = threading.Thread(target=lambda: answers.append(
                act.client.get("/admin/api/events", headers=headers)))
            other.start()
            other.join(5)
            assert not other.is_alive(), "the second call waited for the first"
        return show(*args, **kwargs)

    monkeypatch.setattr(helpdesk, "show", slow_show)
    assert act.client.get("/admin/api/users/vic", headers=headers).status_code == 200
    assert [a.status_code for a in answers] == [200]


def valid(doc: dict, schema: str, answer: dict) -> None:
    """``answer`` is what the served OpenAPI 3.1 description (JSON Schema 2020-12) says."""
    jsonschema.Draft202012Validator({**doc["components"]["schemas"][schema],
                                     "$defs": doc["components"]["schemas"]}).validate(answer)


def test_answers_match_the_openapi_description(admin_act, clock):
    """Each kind of user the help desk can meet: locked by failures, by a disowned use of
    the factors (unlock then refused with its own error), barred after a disowned reset."""
    act = admin_act
    doc = act.client.get("/admin/api/openapi.json").get_json()
    locked_user(act, clock, "lou")  # tokens live a minute: taken after its waits
    headers = bearer(act)

    def show(subject: str) -> dict:
        answer = act.client.get(f"/admin/api/users/{subject}", headers=headers)
        assert answer.status_code == 200
        valid(doc, "User", answer.get_json())
        return answer.get_json()

    assert (show("lou")["lock_reason"], show("lou")["disowned_event"]) == ("failures", None)
    act.enroll("dot")
    [event] = outbox(act, "dot")
    assert act.bridge.not_me.confirm(act.bridge.not_me.link(event).rsplit("/", 1)[1]) \
        is Outcome.LOCKED
    assert (show("dot")["lock_reason"], show("dot")["disowned_event"]) == ("not_me",
                                                                          "enrollment")
    refused = act.client.post("/admin/api/users/dot/unlock", headers=headers)
    assert refused.status_code == 409 and refused.get_json()["error"] == "factors_disowned"
    assert "Reset" in refused.get_json()["error_description"]
    assert user(act, "dot").locked_at is not None
    # The refused attempt is in the trail: who tried to unlock a user who disowned their
    # factors (a help desk being talked into it), from where.
    [attempt] = audited(act, "helpdesk_refused")
    assert (attempt["subject"], attempt["client_id"], attempt["ip"]) == ("dot", ADMIN_ID,
                                                                         "127.0.0.1")
    assert attempt["detail"] == {"action": "unlock", "reason": "factors_disowned"}
    reset = act.client.post("/admin/api/users/dot/reset", headers=headers)
    assert reset.status_code == 200
    [notice] = [e for e in outbox(act, "dot") if e["event"] == "helpdesk_reset"]
    act.bridge.not_me.confirm(act.bridge.not_me.link(notice).rsplit("/", 1)[1])
    barred = show("dot")
    assert barred["enrolled_at"] is None and barred["factors"] == []


def test_every_error_answer_is_in_the_openapi_description(admin_act, clock, monkeypatch):
    """Each refusal an operation can give is described there, with the headers that come
    with it (WWW-Authenticate, Allow, Retry-After): a generated client knows every answer."""
    act = admin_act
    doc = act.client.get("/admin/api/openapi.json").get_json()
    headers = bearer(act)
    with act.bridge.store.begin() as tx:  # /token gives no other scope: only stored by hand
        tx.save_access_token("other-scope-token", ADMIN_ID, "stepup:other", clock() + 60)
    other_scope = {"Authorization": "Bearer other-scope-token"}
    operations = {("get", "/admin/api/users/{subject}"): "/admin/api/users/ann",
                  ("post", "/admin/api/users/{subject}/unlock"): "/admin/api/users/ann/unlock",
                  ("post", "/admin/api/users/{subject}/reset"): "/admin/api/users/ann/reset",
                  ("get", "/admin/api/events"): "/admin/api/events"}
    assert {(m, p) for p, ops in doc["paths"].items() for m in ops
            if p != "/admin/api/openapi.json"} == set(operations)

    def described(method: str, template: str, answer) -> None:
        declared = doc["paths"][template][method]["responses"][str(answer.status_code)]
        if "$ref" in declared:
            declared = doc["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
        valid(doc, "Error", answer.get_json())
        assert set(declared.get("headers", {})) <= set(answer.headers.keys()), answer.headers

    for (method, template), path in operations.items():
        wrong_method = "DELETE" if method == "get" else "GET"
        answers = [act.client.open(path, method=method),
                   act.client.open(path, method=method, headers=other_scope),
                   act.client.open(path, method=method, headers=headers, data="[]",
                                   content_type="application/json"),  # not a JSON object
                   act.client.open(path, method=wrong_method, headers=headers),
                   act.client.open(path, method=method, headers=headers,
                                   data="x" * (65 * 1024))]
        assert [a.status_code for a in answers] == [401, 403, 400, 405, 413], path
        for answer in answers:
            described(method, template, answer)
    monkeypatch.setattr(Store, "begin", lambda *_a, **_k: (_ for _ in ()).throw(
        sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))))
    for (method, template), path in operations.items():
        down = act.client.open(path, method=method, headers=headers)
        assert down.status_code == 503
        described(method, template, down)


def test_the_openapi_description_is_served(client):
    doc = client.get("/admin/api/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "https://bridge.example"}]
    assert {"/admin/api/users/{subject}", "/admin/api/users/{subject}/unlock",
            "/admin/api/users/{subject}/reset", "/admin/api/events"} <= set(doc["paths"])


def test_a_help_desk_client_is_not_authorized_to_start_sign_ins(admin_act):
    """A client with no redirect URI can never hold a code: RFC 6749 §5.2's
    unauthorized_client at /par and /token, not an error that blames the request's
    parameters (a redirect_uri or verifier it could never get right)."""
    act = admin_act
    pushed, login = act.push("uma", auth=(ADMIN_ID, ADMIN_SECRET), client_id=ADMIN_ID)
    assert pushed.status_code == 400 and pushed.get_json()["error"] == "unauthorized_client"
    assert "help-desk API" in pushed.get_json()["error_description"]
    for form in ({}, {"code_verifier": None, "redirect_uri": None}):
        redeemed = act.client.post("/token", auth=(ADMIN_ID, ADMIN_SECRET), data={
            k: v for k, v in {"grant_type": "authorization_code", "code": "x" * 43,
                              "redirect_uri": login.redirect_uri,
                              "code_verifier": login.verifier, **form}.items() if v})
        assert redeemed.status_code == 400
        assert redeemed.get_json()["error"] == "unauthorized_client"


def test_an_admin_client_cannot_be_an_idp_too(stepup, make_act):  # noqa: F811
    """Least privilege: one leaked secret must not both start sign-ins and reset factors."""
    make_act()
    refused = stepup("client", "add", "--client-id", "both", "--client-secret", ADMIN_SECRET,
                     "--admin", "--redirect-uri", "https://idp.example/cb")
    assert refused.exit_code == 2 and "not an IdP" in refused.output
    assert "both" not in stepup("client", "list").output


def test_an_older_client_with_both_powers_is_pointed_out(stepup, make_act):  # noqa: F811
    """One registered before the rule (an --admin client takes no redirect URI) keeps working,
    and `client list` says what to do about it."""
    act = make_act()
    with act.bridge.store.begin() as tx:
        tx.add_client(replace(new_client(
            act.bridge.secrets.pepper, "both", secret=ADMIN_SECRET, jwks_uri=None,
            redirect_uris=["https://idp.example/cb"], redirect_uri_prefixes=[]), admin=True))
    [line] = [x for x in ok(stepup("client", "list")).splitlines() if x.startswith("both\t")]
    assert line.endswith("add this one again without --admin") and "admin AND IdP" in line
    [plain] = [x for x in ok(stepup("client", "list")).splitlines() if x.startswith(IDP_ID)]
    assert "admin" not in plain


def test_the_cli_registers_an_admin_client_that_gets_a_token(stepup, make_act):  # noqa: F811
    act = make_act()
    ok(stepup("client", "add", "--client-id", "desk", "--client-secret", ADMIN_SECRET,
              "--admin"))
    assert any(line.startswith("desk\t") and line.endswith("\tadmin")
               for line in ok(stepup("client", "list")).splitlines())
    assert get_token(act, auth=("desk", ADMIN_SECRET)).status_code == 200
    # Without --admin a client still needs a redirect URI.
    assert stepup("client", "add", "--client-id", "x", "--client-secret",
                  ADMIN_SECRET).exit_code != 0


def test_the_described_subject_is_the_one_the_server_takes(client):
    """The OpenAPI pattern refuses exactly what the server refuses (``helpdesk.is_subject``)
    for every assigned character of the Basic Multilingual Plane, so a generated client
    never sends a subject the description allows and the server answers 400 to."""
    schemas = client.get("/admin/api/openapi.json").get_json()["components"]["schemas"]
    schema = schemas["Subject"]
    assert schema["$ref"] == "#/components/schemas/Printable"
    pattern = re.compile(schemas["Printable"]["pattern"].removesuffix("$") + r"\Z")  # JSON's "$"
    for point in range(0x10000):
        char = chr(point)
        if unicodedata.category(char) in ("Cn", "Cs"):  # unassigned, surrogates
            continue
        assert bool(pattern.match("a" + char)) == helpdesk.is_subject("a" + char), hex(point)
    assert schema["maxLength"] == helpdesk.SUBJECT_LIMIT


def test_the_help_desk_token_reaches_no_log(admin_act, caplog):
    """authlib logs every issued token at DEBUG; someone debugging turns the level up."""
    from tests.bridge.test_logs import _log_everything, _record_text

    _log_everything(caplog)
    token = get_token(admin_act).get_json()["access_token"]
    assert caplog.records and not [r for r in caplog.records if token in _record_text(r)]
