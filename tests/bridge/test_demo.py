"""The demo IdP (``stepup demo``) against a real bridge served on 127.0.0.1: the hand-off
client talks to it over HTTP, as in the demo; the browser is a test client on each side."""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from bridge import create_app
from bridge.demo import DEMO_USERS, create_demo_idp
from bridge.oidc.clients import new_client
from bridge.security import HEADERS
from tests.bridge.conftest import shown

IDP = "http://127.0.0.1:5749"  # never listened on: the IdP is a test client
SECRET = "demo-test-secret-0123456789"
GONE = "This sign-in was finished, replaced or has expired; sign in again."


@pytest.fixture
def served(tmp_path, clock, database_url):
    """The bridge on a free port (its issuer names that port), with the demo IdP registered."""
    apps = []
    server = make_server("127.0.0.1", 0, lambda env, start: apps[0](env, start), threaded=True)
    issuer = f"http://127.0.0.1:{server.server_port}"
    app = create_app({"data_dir": tmp_path, "issuer": issuer, "database_url": database_url},
                     environ={}, clock=clock)
    apps.append(app)
    bridge = app.extensions["stepup"]
    with bridge.store.begin() as tx:
        tx.add_client(new_client(bridge.secrets.pepper, "demo-idp", secret=SECRET,
                                 jwks_uri=None, redirect_uris=[f"{IDP}/callback"],
                                 redirect_uri_prefixes=[]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    bridge.store.engine.dispose()


@pytest.fixture
def idp(served):
    # The bridge's clock (found flaky: FakeClock starts up to 30 s behind real time, and the
    # assertion's auth_time then fell before the push by the client's real clock)
    app = create_demo_idp(served.extensions["stepup"].settings.issuer, "demo-idp", SECRET, IDP,
                          clock=served.extensions["stepup"].clock)
    app.config["WTF_CSRF_ENABLED"] = False
    return app.test_client()


class Tab:
    """One sign-in in one tab: the IdP's browser and the bridge's are one browser's."""

    def __init__(self, idp, bridge_browser, clock, name: str):
        self.idp, self.browser, self.clock, self.name = idp, bridge_browser, clock, name

    def sign_in(self) -> Tab:
        answer = self.idp.post("/login", data={"username": self.name,
                                               "password": f"{self.name}-demo"})
        assert answer.status_code == 303, answer.get_data(as_text=True)
        page = self.browser.get(urlsplit(answer.headers["Location"])._replace(
            scheme="", netloc="").geturl())
        self.html = page.get_data(as_text=True)
        self.flow = re.search(r'action="(/flow/[^/"]+)/', self.html).group(1)
        return self

    def enroll(self) -> str:
        """Enrolls at the bridge; returns the callback the browser is sent to."""
        from bridge.factors import totp

        secret = shown(self.html, "totp-secret")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', self.html).group(1)
        self.browser.post(f"{self.flow}/enroll", data={
            "otp": totp.code_at(secret, self.clock()), "csrf_token": csrf})
        done = self.browser.post(f"{self.flow}/saved", data={"saved": "yes", "csrf_token": csrf})
        assert done.status_code == 303 and done.headers["Location"].startswith(IDP), done.data
        return done.headers["Location"][len(IDP):]


def test_the_demo_idp_sends_the_bridges_security_headers(idp):
    """Found by review: its pages had none (no CSP, framing or no-store)."""
    for path in ("/", "/static/demo.css"):
        headers = idp.get(path).headers
        assert all(headers.get(name) == value for name, value in HEADERS.items()), path
    assert idp.get("/").headers["Cache-Control"] == "no-store"


def signed_in(idp) -> str | None:
    found = re.search(r'id="signed-in">Welcome, (\w+)<', idp.get("/").get_data(as_text=True))
    return found and found.group(1)


def test_two_tabs_each_finish_their_own_sign_in(idp, served, clock):
    """alice in tab A, bob in tab B of one browser: each callback finds its own hand-off."""
    browser = served.test_client()
    alice, bob = (Tab(idp, browser, clock, n).sign_in() for n in ("alice", "bob"))
    back_a, back_b = alice.enroll(), bob.enroll()
    assert idp.get(back_a).status_code == 303
    assert signed_in(idp) == "alice"
    assert idp.get(back_b).status_code == 303
    assert signed_in(idp) == "bob"


def test_a_forged_callback_leaves_the_real_sign_in_open(idp, served, clock):
    tab = Tab(idp, served.test_client(), clock, "carol").sign_in()
    forged = idp.get("/callback?code=x&state=forged")
    assert forged.status_code == 400 and GONE in forged.get_data(as_text=True)
    assert idp.get(tab.enroll()).status_code == 303
    assert signed_in(idp) == "carol"


def test_a_callback_used_twice_says_to_sign_in_again(idp, served, clock):
    """Not a silent page with the sign-in form, nor a raw "state does not match"."""
    tab = Tab(idp, served.test_client(), clock, "alice").sign_in()
    back = tab.enroll()
    assert idp.get(back).status_code == 303
    idp.post("/logout")
    again = idp.get(back)
    page = again.get_data(as_text=True)
    assert again.status_code == 400 and GONE in page and 'id="username"' in page


def test_one_browser_keeps_its_last_few_sign_ins(idp, served, clock):
    # (a bridge browser each: the bridge keeps a few flows per browser too)
    tabs = [Tab(idp, served.test_client(), clock, name).sign_in()
            for name in [n for n, _ in DEMO_USERS.values()] * 2]
    with idp.session_transaction() as session:
        assert len(session["pending"]) == 5 < len(tabs)
    oldest, newest = tabs[0].enroll(), tabs[-1].enroll()
    assert GONE in idp.get(oldest).get_data(as_text=True)
    assert idp.get(newest).status_code == 303


def test_a_late_callback_says_the_sign_in_took_too_long(idp, served, clock):
    """The code ran out (a minute) before the IdP redeemed it: not authlib's "Invalid 'code'
    in request."."""
    tab = Tab(idp, served.test_client(), clock, "bob").sign_in()
    back = tab.enroll()
    clock.advance(served.extensions["stepup"].settings.code_ttl + 1)
    late = idp.get(back)
    page = late.get_data(as_text=True)
    assert late.status_code == 403, page
    assert "This sign-in took too long; sign in again." in page and "Invalid" not in page
