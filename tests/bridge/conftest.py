"""Fixtures for the bridge: the app, a registered IdP and the actions of one login."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import KeySet

from bridge import create_app
from bridge.factors import totp
from bridge.oidc.clients import new_client
from bridge.store import schema
from tests.bridge.html_reader import Page

IDP_ID = "idp"
IDP_SECRET = "idp-secret-0123456789"
CALLBACK = "https://idp.example/callback"
#: The session cookie behind the tests' https issuer (``__Host-``: bridge/app.py).
SESSION_COOKIE = "__Host-stepup_session"
KC_PREFIX = "https://kc.example/realms/acme/login-actions/authenticate"


def register_idp(app) -> None:
    """Register the test IdP (exact callback and a Keycloak-style prefix), once."""
    bridge = app.extensions["stepup"]
    with bridge.store.begin() as tx:
        if tx.find_client(IDP_ID) is None:
            tx.add_client(new_client(bridge.secrets.pepper, IDP_ID, secret=IDP_SECRET,
                                     jwks_uri=None, redirect_uris=[CALLBACK],
                                     redirect_uri_prefixes=[KC_PREFIX]))


@pytest.fixture
def make_app(tmp_path, clock, database_url):
    """Build a bridge on this test's database with extra settings; an IdP is registered."""
    apps = []

    def make(**config):
        settings = {"data_dir": tmp_path, "issuer": "https://bridge.example",
                    "database_url": database_url, **config}
        app = create_app(settings, environ={}, clock=clock)
        register_idp(app)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["stepup"].store.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def bridge(app):
    return app.extensions["stepup"]


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class Login:
    """One hand-off in progress, as the IdP and the browser see it."""

    subject: str
    verifier: str
    nonce: str
    state: str
    redirect_uri: str
    flow_url: str = ""
    secret: str = ""  # the TOTP secret the "phone" holds
    recovery_code: str = ""
    last_page: str = ""
    extra: dict = field(default_factory=dict)


class Actions:
    """What an IdP and a user do, one call per step, so each test reads as a story."""

    def __init__(self, client, bridge, clock):
        self.client, self.bridge, self.clock = client, bridge, clock

    # -- the IdP's back channel -----------------------------------------------------------
    def push(self, subject="user-1", *, auth=(IDP_ID, IDP_SECRET), redirect_uri=CALLBACK,
             **params) -> tuple[object, Login]:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        login = Login(subject, verifier, secrets.token_urlsafe(16), secrets.token_urlsafe(16),
                      redirect_uri)
        form = {"response_type": "code", "scope": "openid", "client_id": IDP_ID,
                "redirect_uri": redirect_uri, "state": login.state, "nonce": login.nonce,
                "code_challenge": challenge, "code_challenge_method": "S256",
                "login_hint": subject, "preferred_username": f"{subject}@example"}
        form.update({k: v for k, v in params.items() if v is not None})
        for k in [k for k, v in params.items() if v is None]:
            form.pop(k, None)
        response = self.client.post("/par", data=form, auth=auth)
        return response, login

    def redeem(self, code: str, login: Login, *, auth=(IDP_ID, IDP_SECRET), client=None,
               **overrides):
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": login.redirect_uri, "code_verifier": login.verifier}
        form.update(overrides)
        return (client or self.client).post("/token", data=form, auth=auth)

    def verify_id_token(self, id_token: str):
        jwks = KeySet.import_key_set(self.client.get("/jwks").get_json())
        return jwt.decode(id_token, jwks, algorithms=["ES256", "RS256"])

    # -- the browser ----------------------------------------------------------------------
    def start(self, subject="user-1", **params) -> Login:
        response, login = self.push(subject, **params)
        assert response.status_code == 201, response.get_json()
        uri = response.get_json()["request_uri"]
        return self.opened(login, self.client.get(
            f"/authorize?client_id={IDP_ID}&request_uri={uri}"))

    @staticmethod
    def opened(login: Login, page) -> Login:
        """The flow /authorize answered with: its first page."""
        assert page.status_code in (200, 403), page.data  # 403: locked, or may not enroll
        login.last_page = page.get_data(as_text=True)
        login.flow_url = flow_url(login.last_page)
        return login

    def csrf(self, html: str) -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)

    def post(self, login: Login, action: str, **form):
        page = login.last_page or self.client.get(login.flow_url).get_data(as_text=True)
        form.setdefault("csrf_token", self.csrf(page))
        response = self.client.post(f"{login.flow_url}/{action}", data=form)
        if response.status_code == 303 and response.headers["Location"].startswith("/flow/"):
            login.last_page = self.client.get(response.headers["Location"]).get_data(as_text=True)
        elif response.status_code != 303:
            login.last_page = response.get_data(as_text=True)
        return response

    def code_now(self, login: Login) -> str:
        return totp.code_at(login.secret, self.clock())

    def enroll(self, subject="user-1", **params) -> tuple[Login, str]:
        """Enroll a new user all the way; returns the login and the IdP's callback URL."""
        login = self.start(subject, **params)
        login.secret = shown(login.last_page, "totp-secret")
        assert self.post(login, "enroll", otp=self.code_now(login)).status_code == 303
        login.recovery_code = shown(login.last_page, "recovery-code")
        done = self.post(login, "saved", saved="yes")
        assert done.status_code == 303, done.data
        return login, done.headers["Location"]

    def finish(self, login: Login, callback: str) -> dict:
        """The IdP's side of the callback: check state/iss, redeem, verify the assertion."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
        assert query["state"] == login.state
        assert query["iss"] == self.bridge.settings.issuer
        response = self.redeem(query["code"], login)
        assert response.status_code == 200, response.get_json()
        return self.verify_id_token(response.get_json()["id_token"]).claims


def flow_url(html: str) -> str:
    """The flow a page belongs to, from its forms (every flow page has the cancel form)."""
    match = re.search(r'action="(/flow/[^/"]+)/', html)
    assert match, "not a page of a flow"
    return match.group(1)


def shown(html: str, element_id: str) -> str:
    """Text of the element with ``id`` (its children's too, as a script's ``textContent``) —
    the pages' automation contract."""
    return Page(html).one(id=element_id).text.strip()


def callback_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@pytest.fixture
def act(client, bridge, clock) -> Actions:
    return Actions(client, bridge, clock)


@pytest.fixture
def make_act(make_app, clock):
    """An app with extra settings (e.g. a lower lockout limit), and its actions."""
    def make(**config) -> Actions:
        app = make_app(**config)
        return Actions(app.test_client(), app.extensions["stepup"], clock)
    return make


# -- what a test looks at -------------------------------------------------------------------
def user(act: Actions, subject: str):
    with act.bridge.store.begin() as tx:
        return tx.find_user(subject)


def events(act: Actions, subject: str | None = None) -> list[str]:
    """Audit event names, oldest first."""
    query = sa.select(schema.audit_events.c.event).order_by(schema.audit_events.c.id)
    if subject is not None:
        query = query.where(schema.audit_events.c.subject == subject)
    with act.bridge.store.engine.begin() as conn:
        return list(conn.execute(query).scalars())


def flow_of(act: Actions, login: Login):
    flow_id = login.flow_url.rsplit("/", 1)[1]
    with act.bridge.store.begin() as tx:
        return tx.find_flow(flow_id, act.clock())


def wrong_code(secret: str, now: float) -> str:
    """A 6-digit code that no step in the ±1 window shows."""
    window = {totp.code_at(secret, now + k * 30) for k in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in window)


def alert(html: str) -> str:
    match = re.search(r'role="alert"[^>]*>([^<]*)<', html)
    assert match, "no role=alert on the page"
    return match.group(1).strip()


def way_back(html: str) -> dict[str, str]:
    """The query of an ended sign-in's "Return to sign-in" link, back to the IdP."""
    found = re.search(r'<a class="primary" href="([^"]+)"', html)
    assert found, html
    href = unescape(found.group(1))
    assert href.startswith(CALLBACK), href
    return callback_params(href)


def is_callback(response) -> bool:
    return response.status_code == 303 and response.headers["Location"].startswith(CALLBACK)


def returning(act: Actions, subject: str, secret: str) -> Login:
    login = act.start(subject)
    login.secret = secret
    return login


# -- every page a user can meet, walked once for the page tests ----------------------------------
NO_ENROLL_ID = "no-enroll-idp"
NO_ENROLL_SECRET = "no-enroll-secret-0123456789"


@pytest.fixture
def register_no_enroll(bridge):
    with bridge.store.begin() as tx:
        tx.add_client(new_client(bridge.secrets.pepper, NO_ENROLL_ID, secret=NO_ENROLL_SECRET,
                                 jwks_uri=None, redirect_uris=[CALLBACK],
                                 redirect_uri_prefixes=[], allow_enrollment=False))


@pytest.fixture
def pages(act, client, clock, register_no_enroll) -> dict[str, object]:
    """Walk every stage once and keep each response (HTML pages and the download)."""
    seen: dict[str, object] = {}

    def keep(name, response):
        seen[name] = response
        return response

    # Enrollment, with a display name that has a space in it.
    login = act.start("pat", preferred_username="Pat Smith")
    keep("enroll", client.get(login.flow_url))
    login.secret = shown(login.last_page, "totp-secret")
    keep("enroll error", act.post(login, "enroll", otp="000000" if act.code_now(login)
                                  != "000000" else "111111"))
    act.post(login, "enroll", otp=act.code_now(login))
    keep("first code", client.get(login.flow_url))
    link = Page(login.last_page).one("a", download=True)
    keep("download", client.get(link.attrs["href"]))
    login.recovery_code = shown(login.last_page, "recovery-code")
    keep("saved error", act.post(login, "saved"))
    act.post(login, "saved", saved="yes")
    # TOTP and the recovery code.
    clock.advance(30)
    returning = act.start("pat")
    returning.secret = login.secret
    keep("totp", client.get(returning.flow_url))
    bad = next(c for c in ("000000", "111111") if c != act.code_now(returning))
    keep("totp error", act.post(returning, "totp", otp=bad))
    keep("recovery", client.get(f"{returning.flow_url}/recovery"))
    keep("recovery error", act.post(returning, "recovery", recovery_code="nope"))
    act.post(returning, "recovery", recovery_code=login.recovery_code)
    keep("rotation", client.get(returning.flow_url))
    rotation_link = Page(returning.last_page).one("a", download=True)
    keep("rotation download", client.get(rotation_link.attrs["href"]))
    act.post(returning, "saved", saved="yes", next="reenroll")
    keep("reenroll", client.get(returning.flow_url))
    # Locked, not enrolled, and the message pages.
    with act.bridge.store.engine.begin() as conn:
        conn.execute(sa.update(schema.users).values(locked_at=clock()))
    locked = act.start("pat")
    keep("locked", client.get(locked.flow_url))
    response, _ = act.push("quinn", auth=(NO_ENROLL_ID, NO_ENROLL_SECRET),
                           client_id=NO_ENROLL_ID)
    uri = response.get_json()["request_uri"]
    keep("not enrolled", client.get(f"/authorize?client_id={NO_ENROLL_ID}&request_uri={uri}"))
    keep("incomplete link", client.get("/authorize"))
    keep("expired link", client.get(f"/authorize?client_id=idp&request_uri={uri}"))
    keep("unknown flow", client.get("/flow/no-such-flow"))
    keep("csrf", client.post(f"{locked.flow_url}/cancel", data={}))
    return seen


HTML_PAGES = ["enroll", "enroll error", "first code", "saved error", "totp", "totp error",
              "recovery", "recovery error", "rotation", "reenroll", "locked", "not enrolled",
              "incomplete link", "expired link", "unknown flow", "csrf"]
ERROR_PAGES = ["enroll error", "saved error", "totp error", "recovery error", "locked",
               "not enrolled", "incomplete link", "expired link", "unknown flow", "csrf"]


# -- a login waiting at each stage, and what a refused form must leave alone ----------------------
FORMS = [  # (stage, action, field)
    ("enroll", "enroll", "otp"),
    ("totp", "totp", "otp"),
    ("totp", "recovery", "recovery_code"),
    ("enroll_saved", "saved", "saved"),
    ("rotate", "saved", "saved"),
    ("reenroll", "reenroll", "otp"),
]
ALL_ACTIONS = [*FORMS, ("totp", "cancel", "x")]


def at_stage(act: Actions, stage: str) -> Login:
    """A login waiting at ``stage``; the new user of an enrollment is "newbie"."""
    if stage in ("enroll", "enroll_saved"):
        login = act.start("newbie")
        login.secret = shown(login.last_page, "totp-secret")
        if stage == "enroll_saved":
            act.post(login, "enroll", otp=act.code_now(login))
        return login
    first, _ = act.enroll("known")
    login = act.start("known")
    login.secret, login.recovery_code = first.secret, first.recovery_code
    if stage in ("rotate", "reenroll"):
        act.post(login, "recovery", recovery_code=first.recovery_code)
    if stage == "reenroll":
        act.post(login, "saved", saved="yes", next="reenroll")
    return login


def factor_rows(act: Actions) -> list:
    """The users and the authorization codes: what a step that went through would add."""
    with act.bridge.store.engine.begin() as conn:
        return [*conn.execute(sa.select(schema.users.c.subject)).scalars(),
                *conn.execute(sa.select(schema.codes.c.code_digest)).scalars()]


def assert_nothing_moved(act: Actions, login: Login, stage: str, before_rows: list,
                         before_events: list[str]) -> None:
    flow = flow_of(act, login)
    assert flow is not None and flow.stage == stage
    assert factor_rows(act) == before_rows  # in particular no new user, no code issued
    new_events = events(act)[len(before_events):]
    assert not {"success", "enrollment", "rotation", "reenrollment"} & set(new_events)
