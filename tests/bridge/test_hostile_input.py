"""Hostile input found by an attacker's sweep (issue 8), each a clear 4xx with the security
headers instead of a 500; people's names in any script; and what a lock or a help-desk reset
does to sign-ins and codes already under way."""

from __future__ import annotations

import base64
import unicodedata
from urllib.parse import unquote, urlsplit

import pytest
from markupsafe import escape

from bridge.store import schema
from tests.bridge.conftest import (
    callback_params,
    flow_of,
    returning,
    shown,
    user,
    wrong_code,
)

SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy",
                    "X-Frame-Options", "Cache-Control")


def has_security_headers(response) -> bool:
    return all(name in response.headers for name in SECURITY_HEADERS)


# -- 1. HTTP Basic credentials that authlib cannot read ------------------------------------
@pytest.mark.parametrize("header", [
    "Basic\t//46 eA==",          # tab after the scheme; base64 of bytes that are not UTF-8
    "Basic  //46eA==",           # two spaces
    "basic\x0b//46eA==",         # vertical tab; scheme in lower case
    "Basic\t" + base64.b64encode(b"\xff\xfe:x").decode(),
    "Basic \xe9abc",            # not ASCII: base64 cannot even read it (found in review)
    "Basic\t\xe9 x",
])
@pytest.mark.parametrize("path", ["/par", "/token"])
def test_unreadable_basic_credentials_are_invalid_client(client, path, header):
    response = client.post(path, data={"grant_type": "authorization_code"},
                           headers={"Authorization": header})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert has_security_headers(response)


# -- 2. a Host header werkzeug refuses ------------------------------------------------------
@pytest.mark.parametrize("path", ["/healthz", "/authorize", "/flow/x", "/par", "/static/style.css"])
def test_a_host_werkzeug_refuses_is_a_400_page_with_headers(client, path):
    response = client.get(path, headers={"Host": "a" * 64 + ".example"})
    assert response.status_code == 400
    assert has_security_headers(response)
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/not-me//x.1.y", "/flow/abc//totp", "//authorize",
                                  "/.well-known//openid-configuration", "/admin//api/openapi.json"])
def test_a_doubled_slash_is_no_redirect_to_the_hosts_name(client, path):
    """werkzeug would answer 308 to the merged path on the request's own Host (a browser
    re-sends a posted form, its code, there): no redirect, whatever the Host."""
    for method in (client.get, client.post):
        # As a server passes it on: the test client would read "//authorize" as a host.
        response = method(path, headers={"Host": "evil.example"},
                          environ_overrides={"PATH_INFO": path})
        # Refused where it is (404; "//authorize": the route, 400 for want of a request_uri).
        assert response.status_code in (400, 404, 405), (path, response.status_code)
        assert "Location" not in response.headers


# -- 3. plain http to /token from a non-loopback host ---------------------------------------
def test_token_over_plain_http_is_insecure_transport_like_par(client):
    for path in ("/par", "/token"):
        response = client.post(path, data={"grant_type": "authorization_code"},
                               base_url="http://bridge.example")
        assert response.status_code == 400, path
        assert response.get_json()["error"] == "insecure_transport", path
        assert has_security_headers(response)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "127.9.9.9"])
def test_a_loopback_host_header_from_elsewhere_is_still_plain_http(client, host):
    """authlib lets plain http through to a loopback URL, built from the Host header: a client
    on another machine naming ``Host: localhost`` must still be refused."""
    for path in ("/par", "/token"):
        response = client.post(path, data={"grant_type": "client_credentials"},
                               headers={"Host": host}, auth=("idp", "x"),
                               environ_overrides={"REMOTE_ADDR": "192.0.2.9"})
        assert response.status_code == 400, (path, host)
        assert response.get_json()["error"] == "insecure_transport"


@pytest.mark.parametrize(("proxies", "headers", "why"), [
    (0, {"X-Forwarded-Proto": "https"}, "STEPUP_TRUSTED_PROXIES is 0"),
    (1, {}, "did not send X-Forwarded-Proto: https"),
    (0, {}, "serve the bridge behind TLS"),
])
def test_plain_http_tells_the_operator_why_once_a_minute(make_app, monkeypatch, caplog,
                                                         proxies, headers, why):
    """Most often a proxy ended TLS and is not trusted: the log says what to set; the caller
    learns only that https is required. Anyone can send such requests: one line a minute."""
    from bridge.oidc import endpoints

    monkeypatch.setattr(endpoints, "_last_transport_hint", float("-inf"))
    client = make_app(trusted_proxies=proxies).test_client()
    for _ in range(3):
        response = client.post("/par", data={"client_id": "idp"}, headers=headers,
                               base_url="http://bridge.example")
        assert response.get_json()["error"] == "insecure_transport"
        assert "PROXIES" not in response.get_data(as_text=True)
    hints = [r.getMessage() for r in caplog.records if "plain http" in r.getMessage()]
    assert len(hints) == 1 and why in hints[0], hints
    monkeypatch.setattr(endpoints, "_last_transport_hint", float("-inf"))  # a minute later
    client.post("/token", data={"grant_type": "authorization_code"}, headers=headers,
                base_url="http://bridge.example")
    assert len([r for r in caplog.records if "plain http" in r.getMessage()]) == 2


@pytest.mark.parametrize("header", ["X-Forwarded-For", "X-Forwarded-Proto", "Forwarded",
                                    "X-Real-IP", "Via"])
def test_a_proxy_on_this_machine_that_is_not_trusted_is_refused(make_app, monkeypatch, caplog,
                                                                 header):
    """Plain http from 127.0.0.1 is for programs on this machine. Relayed by a local proxy the
    bridge was not told of (STEPUP_TRUSTED_PROXIES 0, an nginx passing Host 127.0.0.1), the
    caller is elsewhere: refused, as configuration.md says, and the log says what to set."""
    from bridge.oidc import endpoints

    monkeypatch.setattr(endpoints, "_last_transport_hint", float("-inf"))
    client = make_app(trusted_proxies=0).test_client()
    value = {"Forwarded": "for=203.0.113.9;proto=https", "X-Real-IP": "203.0.113.9",
             "Via": "1.1 nginx"}.get(header, "https")
    refused = client.post("/par", data={"client_id": "idp"}, headers={header: value},
                          base_url="http://127.0.0.1:8080")
    assert refused.get_json()["error"] == "insecure_transport"
    assert any("STEPUP_TRUSTED_PROXIES is 0" in r.getMessage() for r in caplog.records)
    local = client.post("/par", data={"client_id": "idp"}, base_url="http://127.0.0.1:8080")
    assert local.status_code == 401  # a program on this machine: on to client authentication


def test_a_trusted_proxy_that_ended_tls_is_believed(make_app):
    client = make_app(trusted_proxies=1).test_client()
    response = client.post("/par", data={"client_id": "idp"}, base_url="http://bridge.example",
                           headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.7"})
    assert response.status_code == 401  # past the transport check, to client authentication


@pytest.mark.parametrize(("forwarded", "seen"), [
    ("192.0.2.7", "192.0.2.7"), ("2001:db8::1", "2001:db8::1"),
    ("198.51.100.7:50123", "198.51.100.7"), ("[2001:db8::1]:443", "2001:db8::1"),
    ("not-an-ip", "unknown"), ("1.2.3.4\u00e9", "unknown"), ("A" * 3000, "unknown"),
    ("1.2.3.4 5.6.7.8", "unknown"), ("127.0.0.1:x", "unknown"), ("", "unknown"),
    (",", "unknown"), (" , ", "unknown"),
    # What nginx makes of a client's own X-Forwarded-For (an unclosed quote, a quoted value):
    # the entry the proxy appended counts (ProxyFix's parser dropped the whole header).
    ('", 203.0.113.9', "203.0.113.9"), ('a"b, 203.0.113.9', "203.0.113.9"),
    ('"198.51.100.7", 203.0.113.9', "203.0.113.9"), ('"203.0.113.9"', "unknown"),
])
def test_a_forwarded_address_is_an_ip_address_or_unknown(make_app, forwarded, seen):
    """A trusted proxy that passes on whatever it was sent, or adds a port: the per-IP limit
    and the audit log get an IP address, or "unknown" (not the proxy's own: see below)."""
    from flask import request

    app = make_app(trusted_proxies=1)

    @app.get("/whose-address")
    def whose_address():
        return request.remote_addr or ""

    answer = app.test_client().get("/whose-address", headers={"X-Forwarded-For": forwarded},
                                   environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert answer.get_data(as_text=True) == seen


@pytest.mark.parametrize("proxies, environ, headers", [
    (0, {"REMOTE_ADDR": "::ffff:198.51.100.7"}, {}),
    (1, {"REMOTE_ADDR": "10.9.8.7"}, {"X-Forwarded-For": "::ffff:198.51.100.7"}),
], ids=["dual-stack-socket", "forwarded"])
def test_an_ipv4_address_in_its_ipv6_spelling_is_the_ipv4_one(make_app, proxies, environ,
                                                               headers):
    """A dual-stack listener (or a proxy) gives an IPv4 client as ::ffff:a.b.c.d: one
    spelling, so its per-IP window, its audit lines and `stepup ip unblock a.b.c.d` agree."""
    from flask import request

    app = make_app(trusted_proxies=proxies)

    @app.get("/whose-address")
    def whose_address():
        return request.remote_addr or ""

    answer = app.test_client().get("/whose-address", headers=headers, environ_base=environ)
    assert answer.get_data(as_text=True) == "198.51.100.7"


NAMES_NO_CLIENT = "without the client's address in X-Forwarded-For"


def test_a_proxy_that_sends_no_client_address_is_said_once(make_app, caplog):
    """X-Forwarded-Proto without X-Forwarded-For: every user would count as one address in the
    per-IP limit and the audit, silently. One warning per worker, not one per request."""
    client = make_app(trusted_proxies=1).test_client()
    for _ in range(3):
        client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    client.get("/healthz", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.7"})
    said = [r.getMessage() for r in caplog.records if NAMES_NO_CLIENT in r.getMessage()]
    assert len(said) == 1 and "have the proxy send X-Forwarded-For" in said[0]
    caplog.clear()
    fine = make_app(trusted_proxies=1).test_client()
    fine.get("/healthz", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.7"})
    fine.get("/healthz")  # a direct call: no proxy in the way
    assert NAMES_NO_CLIENT not in caplog.text


@pytest.mark.parametrize(("proxies", "headers"), [
    (1, {"X-Forwarded-Proto": "http"}),
    (1, {"X-Forwarded-For": ","}),
    (1, {"X-Forwarded-For": ""}),
    (1, {"Forwarded": "for=203.0.113.9;proto=http"}),
    (1, {"X-Real-IP": "203.0.113.9"}),
    (1, {"Via": "1.1 nginx"}),
    (2, {"X-Forwarded-For": "203.0.113.9"}),
], ids=["proto-only", "commas", "empty", "rfc7239-only", "x-real-ip", "via", "one-of-two-hops"])
def test_a_proxied_request_that_names_no_client_is_no_local_program(make_app, proxies, headers):
    """Through a proxy on this machine (peer 127.0.0.1) with no client named: the caller is
    somewhere else, so plain http is refused on the back channel (found by a hostile-input
    probe: these passed as a program on this machine, and a help-desk token went over http)."""
    client = make_app(trusted_proxies=proxies).test_client()
    for path in ("/par", "/token"):
        refused = client.post(path, data={"grant_type": "client_credentials"}, headers=headers,
                              base_url="http://127.0.0.1:8000")
        assert refused.get_json()["error"] == "insecure_transport", path
    direct = client.post("/par", data={"client_id": "idp"}, base_url="http://127.0.0.1:8000")
    assert direct.status_code == 401  # no forwarding header: a local program, on to client auth


def test_a_local_program_through_a_local_proxy_is_still_one(make_app):
    """A Keycloak on this machine calling through the nginx on it: X-Forwarded-For names
    127.0.0.1, the proxy's own address too (found by review: taken for "no client named")."""
    client = make_app(trusted_proxies=1).test_client()
    response = client.post("/par", data={"client_id": "idp"}, base_url="http://127.0.0.1:8000",
                           headers={"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http"})
    assert response.status_code == 401  # past the transport check, to client authentication


def test_junk_forwarded_by_a_proxy_on_this_machine_is_no_local_program(make_app):
    """The trusted proxy runs on this machine (peer 127.0.0.1, nginx's default Host): a
    forwarded value that is no address must not leave the caller looking like a local program,
    which plain http is allowed for."""
    client = make_app(trusted_proxies=1).test_client()
    for forwarded in ("unknown", "198.51.100.7:x", "A" * 100, '"', '", 203.0.113.9'):
        refused = client.post("/par", data={"client_id": "idp"},
                              base_url="http://127.0.0.1:8000",
                              headers={"X-Forwarded-For": forwarded,
                                       "X-Forwarded-Proto": "http"})
        assert refused.get_json()["error"] == "insecure_transport", forwarded


# -- the last-resort answer -----------------------------------------------------------------
def test_an_unexpected_error_is_a_page_with_headers_and_no_traceback(app, client, caplog):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret-looking detail 123456")

    app.testing = False  # let the error handler answer, as in production
    response = client.get("/boom")
    assert response.status_code == 500
    assert has_security_headers(response)
    body = response.get_data(as_text=True)
    assert "Something went wrong" in body
    assert "123456" not in body and "Traceback" not in body


@pytest.mark.parametrize("path", ["/admin/api/boom", "/token/boom"])
def test_an_unexpected_error_for_a_program_is_json(app, client, path):
    """The help-desk API and the back channel: their callers parse JSON, not a page."""
    @app.get(path)
    def boom():
        raise RuntimeError("secret-looking detail 123456")

    app.testing = False
    response = client.get(path)
    assert response.status_code == 500
    assert response.get_json() == {"error": "server_error", "error_description":
                                   "The server could not answer this request."}


# -- 6. every name can sign in ---------------------------------------------------------------
NAMES = ["José García", "Zoë", "Łukasz", "山田太郎", "Ngũgĩ wa Thiong'o",
         "\u0645\u062d\u0645\u062f",  # Arabic
         "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"]  # Persian, with a ZWNJ


@pytest.mark.parametrize("name", NAMES)
def test_a_name_in_any_script_enrolls_and_is_shown_and_labelled(act, name):
    login = act.start("named-user", preferred_username=name)
    assert flow_of(act, login).stage == "enroll"
    assert f"<strong dir=\"auto\">{escape(name)}</strong>" in login.last_page  # bidi-isolated
    uri = act.bridge.challenge.enrollment(flow_of(act, login)).uri
    label = urlsplit(uri).path.lstrip("/").removeprefix("totp/")
    assert all(c.isascii() and c not in " +" for c in label)  # RFC 3986 percent-encoding
    assert unquote(label, encoding="utf-8", errors="strict") == f"Stepup:{name}"


@pytest.mark.parametrize("name", ["中" * 255, "\U0001f600" * 255])
def test_the_longest_name_in_any_script_still_gets_a_qr_code_and_enrolls(act, name):
    """255 four-byte characters are more than a QR code holds: the page answered 500 and the
    flow stayed stuck. The label is cut; the page shows the whole name."""
    login = act.start("long-name", preferred_username=name)
    assert 'role="img"' in login.last_page  # the QR code's SVG
    assert escape(name) in login.last_page
    login.secret = shown(login.last_page, "totp-secret")
    assert act.post(login, "enroll", otp=act.code_now(login)).status_code == 303


def test_the_otpauth_label_is_utf8_percent_encoded(act):
    login = act.start("jose", preferred_username="José García")
    uri = act.bridge.challenge.enrollment(flow_of(act, login)).uri
    assert uri.startswith("otpauth://totp/Stepup:Jos%C3%A9%20Garc%C3%ADa?")


@pytest.mark.parametrize(("given", "kept"), [("José\u00a0García", "José García"),
                                             ("山田\u3000太郎", "山田 太郎"),
                                             ("Ana  \u2009Lima", "Ana Lima"),
                                             ("\u200dadmin", "admin")])
def test_every_kind_of_space_in_a_name_is_one_plain_space(act, given, kept):
    login = act.start("spaces", preferred_username=given)
    assert flow_of(act, login).params["preferred_username"] == kept


def test_a_colon_in_a_name_cannot_split_the_otpauth_label(act):
    login = act.start("colon", preferred_username="evil:Bank")
    uri = act.bridge.challenge.enrollment(flow_of(act, login)).uri
    assert uri.startswith("otpauth://totp/Stepup:evil%3ABank?")


def test_a_name_is_normalised_to_nfc(act):
    decomposed = "Jose\u0301"
    assert unicodedata.normalize("NFC", decomposed) != decomposed
    login = act.start("nfc", preferred_username=f"  {decomposed} ")
    assert flow_of(act, login).params["preferred_username"] == "José"


def test_a_name_is_escaped_on_the_page(act):
    login = act.start("html", preferred_username="<b>Bob</b> & \"Co\"")
    assert "<b>Bob</b>" not in login.last_page
    assert "&lt;b&gt;Bob&lt;/b&gt; &amp;" in login.last_page


@pytest.mark.parametrize("name", [
    "evil\u202egnp.exe",     # right-to-left override (CVE-2021-42574)
    "\u2066Bob\u2069",       # isolates
    "Bob\u200e",             # left-to-right mark
    "Bob\x00", "Bob\nAlice", "Bob\x1b[31m", "\x7f",
    "   ", "x" * 256,  # empty is omitted (RFC 6749 §3.1): test_par.py::TestEmptyParameters
])
def test_control_format_and_bidi_characters_are_refused(act, name):
    response, _ = act.push("bad-name", preferred_username=name)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert "preferred_username" in response.get_json()["error_description"]


def test_the_enrolled_users_display_name_is_the_normalised_name(act):
    act.enroll("named", preferred_username="Zoë")
    assert user(act, "named").display_name == "Zoë"


# -- 7. a lock or a help-desk reset voids what was under way --------------------------------
def test_a_code_issued_before_a_help_desk_reset_cannot_be_redeemed(act):
    login, callback = act.enroll("reset-me")
    with act.bridge.store.begin() as tx:
        assert tx.remove_user("reset-me")
    response = act.redeem(callback_params(callback)["code"], login)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_grant"


def test_a_lock_voids_unredeemed_codes_and_ends_every_open_sign_in(make_act, clock):
    act = make_act(lockout_limit=3)
    first, _ = act.enroll("lock-me")
    clock.advance(30)
    done = returning(act, "lock-me", first.secret)
    callback = act.post(done, "totp", otp=act.code_now(done)).headers["Location"]
    staged = act.start("lock-me")  # a recovery code accepted, its replacement not yet saved
    assert act.post(staged, "recovery", recovery_code=first.recovery_code).status_code == 303
    assert flow_of(act, staged).stage == "rotate"

    guesser = returning(act, "lock-me", first.secret)
    for _ in range(3):
        act.post(guesser, "totp", otp=wrong_code(first.secret, clock()))
    assert user(act, "lock-me").locked_at is not None

    assert act.redeem(callback_params(callback)["code"], done).status_code == 400
    assert flow_of(act, staged).stage == "locked"
    assert flow_of(act, staged).staged_code is None
    finish = act.post(staged, "saved", saved="yes")
    assert finish.status_code == 403
    assert user(act, "lock-me").recovery_version == 1  # the staged code never became valid


# -- 5. the per-IP window is shared by every process on the database ------------------------
def test_the_per_ip_window_is_shared_by_two_processes_on_one_database(make_act, clock):
    """Two apps on one database stand for two gunicorn workers (or two nodes)."""
    first, second = make_act(ip_limit=4), make_act(ip_limit=4)
    secrets = {name: first.enroll(name)[0].secret for name in ("w1", "w2", "w3")}
    clock.advance(30)
    for act, name in ((first, "w1"), (second, "w2"), (first, "w1"), (second, "w2")):
        login = returning(act, name, secrets[name])
        assert act.post(login, "totp", otp=wrong_code(secrets[name], clock())).status_code == 400
    for act in (first, second):
        login = returning(act, "w3", secrets["w3"])
        assert act.post(login, "totp", otp=act.code_now(login)).status_code == 429
    with first.bridge.store.begin() as tx:
        assert tx.count_ip_failures("127.0.0.1", clock() - 600) == 4


def test_parallel_guesses_from_one_ip_are_counted_one_after_another(make_act, clock):
    """Wrong codes for five users (one browser holds five sign-ins) from one address at the
    same moment: exactly the limit is judged, the rest are refused (on PostgreSQL the IP's
    window is held per attempt)."""
    from tests.bridge.test_concurrency import race

    act = make_act(ip_limit=2)
    secrets = {f"p{i}": act.enroll(f"p{i}")[0].secret for i in range(5)}
    clock.advance(30)
    logins = {name: returning(act, name, secret) for name, secret in secrets.items()}
    posts = []
    for name, login in logins.items():
        token, wrong = act.csrf(login.last_page), wrong_code(secrets[name], clock())
        posts.append(lambda login=login, token=token, wrong=wrong: act.client.post(
            f"{login.flow_url}/totp", data={"otp": wrong, "csrf_token": token}).status_code)
    statuses = race(*posts)
    assert sorted(statuses) == [400, 400, 429, 429, 429]
    with act.bridge.store.begin() as tx:
        assert tx.count_ip_failures("127.0.0.1", clock() - 600) == 2


def test_old_ip_failures_leave_the_window_and_the_table(make_act, clock):
    act = make_act(ip_limit=2, ip_window=60)
    secret = act.enroll("old")[0].secret
    clock.advance(30)
    for _ in range(2):
        login = returning(act, "old", secret)
        act.post(login, "totp", otp=wrong_code(secret, clock()))
    clock.advance(61 + 8)  # past the window and the user's growing delay
    login = returning(act, "old", secret)
    assert act.post(login, "totp", otp=act.code_now(login)).status_code == 303
    act.bridge._swept_at = 0  # housekeeping runs on the next pushed request
    act.push("anyone")
    with act.bridge.store.engine.begin() as conn:
        assert conn.execute(schema.ip_failures.select()).first() is None


def test_a_hostile_recovery_code_field_is_a_clear_error(act):
    login, _ = act.enroll("rc-user")
    login = act.start("rc-user")
    response = act.post(login, "recovery", recovery_code="\x00" * 5000)
    assert response.status_code == 400
    assert shown(login.last_page, "page-title")
