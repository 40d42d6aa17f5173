"""Property-based hostile requests (Hypothesis) to every endpoint and every page's form, in
every stage of a sign-in: hostile query, form, headers (Host, Authorization, Cookie,
Content-Type, Transfer-Encoding), bodies that are not UTF-8, repeated and missing parameters.

Whatever arrives: no 5xx, the security headers on every answer, no traceback or secret in an
answer or a log line (each log line one JSON object), and a normal sign-in still works after.

CI runs the ``ci`` profile (a bounded number of examples); ``HYPOTHESIS_PROFILE=long`` runs
many more on demand: ``HYPOTHESIS_PROFILE=long scripts/test.sh tests/bridge/test_fuzz.py``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import create_app
from bridge.logs import JsonFormatter
from tests.bridge.conftest import (
    IDP_ID,
    IDP_SECRET,
    Actions,
    register_idp,
    returning,
    shown,
)
from tests.conftest import FakeClock

settings.register_profile("ci", max_examples=250, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy",
                    "X-Frame-Options", "Cache-Control", "X-Request-ID")

FLOW_ACTIONS = ["", "/recovery", "/totp", "/enroll", "/reenroll", "/saved", "/cancel",
                "/recovery-code.txt"]
PATHS = ["/", "/.well-known/openid-configuration", "/jwks", "/par", "/token", "/authorize",
         "/healthz", "/readyz", "/metrics", "/static/style.css", "/static/../settings.py",
         "/flow/", "/flow/%00", "/flow/" + "x" * 300]
PARAMS = ["response_type", "scope", "client_id", "redirect_uri", "state", "nonce",
          "code_challenge", "code_challenge_method", "login_hint", "preferred_username",
          "acr_values", "max_age", "prompt", "ui_locales", "request_uri", "request",
          "stepup_allow_enrollment", "grant_type", "code", "code_verifier", "client_secret",
          "client_assertion", "client_assertion_type", "otp", "recovery_code", "saved", "next",
          "new_recovery_code", "csrf_token"]
CONTENT_TYPES = ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; "
                 "charset=latin-1", "multipart/form-data", "multipart/form-data; boundary=x",
                 "application/json", "text/plain", "", "application/x-www-form-urlencoded;;"]


@dataclass
class World:
    """One bridge with a sign-in waiting in every stage, and every secret it must keep."""

    act: Actions
    flows: list[str] = field(default_factory=list)
    csrf: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)


class _Lines(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__()
        self.sink = sink
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))


@pytest.fixture(scope="module")
def world(tmp_path_factory, app_template):
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(app_template, folder, dirs_exist_ok=True)
    clock = FakeClock()
    app = create_app({"data_dir": folder, "issuer": "https://bridge.example",
                      "lockout_limit": 100, "ip_limit": 100_000}, environ={}, clock=clock)
    app.testing = False  # errors go through the handlers, as in production
    register_idp(app)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    w = World(act)
    handler = _Lines(w.lines)
    logging.getLogger().addHandler(handler)

    enrolled, _ = act.enroll("fuzz-user")
    w.secrets |= {enrolled.secret, enrolled.recovery_code, IDP_SECRET}
    clock.advance(30)
    stages = [act.start("fuzz-user"), act.start("new-user"), act.start("other-new")]
    rotating = act.start("fuzz-user")
    act.post(rotating, "recovery", recovery_code=enrolled.recovery_code)
    saving = act.start("third-user")
    saving.secret = shown(saving.last_page, "totp-secret")
    act.post(saving, "enroll", otp=act.code_now(saving))
    stages += [rotating, saving]
    for login in stages:
        w.flows.append(login.flow_url)
        w.csrf.append(act.csrf(login.last_page))
    w.secrets |= {act.bridge.secrets.pepper.hex()}
    yield w
    logging.getLogger().removeHandler(handler)
    app.extensions["stepup"].store.engine.dispose()


# -- strategies ------------------------------------------------------------------------------
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="latin-1"), max_size=40),
    st.sampled_from(["", " ", "\x00", "%", "%zz", "../..", "\u202e", "a" * 5000, "null",
                     "{}", "[]", "Basic", "Bearer x", "\ud800".encode("utf-8", "surrogatepass")
                     .decode("latin-1"), "0" * 6, "-1", "1e309", "é" * 300]),
)
header_text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=80)


basic = st.builds(lambda sep, raw: f"Basic{sep}{base64.b64encode(raw).decode()}",
                  st.sampled_from([" ", "\t", "  ", "\x0b"]), st.binary(max_size=30))
HEADERS = {
    "Host": st.one_of(st.just("bridge.example"), header_text,
                      st.sampled_from(["a" * 64 + ".example", "[::1", "x:99999", ".."])),
    "Authorization": st.one_of(header_text, basic, st.builds(
        lambda sep, text: f"Basic{sep}{text}", st.sampled_from([" ", "\t"]), header_text),
        st.just(
        "Basic " + base64.b64encode(f"{IDP_ID}:{IDP_SECRET}x".encode()).decode())),
    "Cookie": header_text,
    "Content-Type": st.one_of(st.sampled_from(CONTENT_TYPES), header_text),
    "Transfer-Encoding": st.sampled_from(["chunked", "gzip", "identity", "x"]),
    "X-Request-ID": header_text,
    "Accept-Language": header_text,
}


@st.composite
def form_bodies(draw) -> bytes:
    """A form body: well-formed pairs (some repeated, some missing), or raw bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    pairs = draw(st.lists(st.tuples(st.sampled_from(PARAMS), hostile_text), max_size=8))
    encoded = [f"{quote_from_bytes(k.encode())}="
               f"{quote_from_bytes(v.encode('utf-8', 'surrogatepass'))}" for k, v in pairs]
    if draw(st.booleans()):
        encoded.append(draw(st.sampled_from(["%ff%fe", "a=%ZZ", "&&&", "=", "x=1&x=2"])))
    return "&".join(encoded).encode()


@st.composite
def requests_(draw, world_: World):
    if draw(st.booleans()):
        i = draw(st.integers(0, len(world_.flows) - 1))
        path = world_.flows[i] + draw(st.sampled_from(FLOW_ACTIONS))
        csrf = world_.csrf[i]
    else:
        path, csrf = draw(st.sampled_from(PATHS)), ""
    method = draw(st.sampled_from(["GET", "POST", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"]))
    body = draw(form_bodies())
    if csrf and method == "POST" and draw(st.booleans()):
        body += b"&csrf_token=" + csrf.encode()
    headers = {name: draw(values) for name, values in HEADERS.items()
               if draw(st.integers(0, 3)) == 0}
    query = draw(st.one_of(st.just(b""), st.binary(max_size=60),
                           form_bodies()))
    return method, path, query, body, headers


# -- properties ------------------------------------------------------------------------------
def check(world_: World, response, before: int) -> None:
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    for name in SECURITY_HEADERS:
        assert name in response.headers, (name, response.status_code)
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    for secret in world_.secrets:
        assert secret not in body
    for line in world_.lines[before:]:
        assert "\n" not in line
        assert "Traceback" not in line
        assert isinstance(json.loads(line), dict)
        for secret in world_.secrets:
            assert secret not in line


def test_hostile_requests_never_get_a_5xx_and_leak_nothing(world):
    @settings(settings.get_profile(PROFILE))
    @given(data=st.data())
    def run(data):
        method, path, query, body, headers = data.draw(requests_(world))
        before = len(world.lines)
        response = world.act.client.open(
            path, method=method, data=body, headers=headers,
            query_string=quote_from_bytes(query, safe="=&%+;/?"))
        check(world, response, before)

    run()


def test_a_normal_sign_in_still_works_after_the_fuzzing(world):
    act = world.act
    act.clock.advance(30)
    fresh, callback = act.enroll("after-fuzz")
    assert act.finish(fresh, callback)["sub"] == "after-fuzz"
    act.clock.advance(30)
    login = returning(act, "after-fuzz", fresh.secret)
    done = act.post(login, "totp", otp=act.code_now(login))
    assert done.status_code == 303
    assert act.finish(login, done.headers["Location"])["amr"] == ["otp"]
