"""The challenge pages as a browser and a screen reader meet them: the automation contract,
headers and cookies, labels and CSRF tokens, the QR code and the download, and bad input on
every form (a clear 4xx page, never a 500, nothing half-written)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
import segno
import sqlalchemy as sa

from bridge.factors import recovery, totp
from bridge.oidc.clients import new_client
from bridge.store import schema
from tests.bridge.conftest import CALLBACK, Actions, callback_params, shown

NO_ENROLL_ID = "no-enroll-idp"
NO_ENROLL_SECRET = "no-enroll-secret-0123456789"
SINGLE_USE = "This code works only once"


# -- a small HTML reader ------------------------------------------------------------------
@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    in_label: bool = False
    form: int | None = None
    text: str = ""


@dataclass
class Page(HTMLParser):
    html: str
    elements: list[Element] = field(default_factory=list)

    def __post_init__(self):
        super().__init__(convert_charrefs=True)
        self._labels = 0
        self._form: int | None = None
        self._forms = 0
        self._open: list[Element] = []
        self.feed(self.html)

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs), self._labels > 0, self._form)
        self.elements.append(element)
        if tag == "label":
            self._labels += 1
        elif tag == "form":
            self._form = self._forms
            self._forms += 1
        if tag not in ("input", "meta", "link", "br", "img", "path"):
            self._open.append(element)

    def handle_endtag(self, tag):
        if tag == "label":
            self._labels -= 1
        elif tag == "form":
            self._form = None
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data):
        for element in self._open:
            element.text += data

    def all(self, tag: str | None = None, **attrs) -> list[Element]:
        """Elements with these attribute values; ``True`` means "present, any value"."""
        def matches(e: Element, name: str, value) -> bool:
            return name in e.attrs if value is True else e.attrs.get(name) == value
        return [e for e in self.elements if (tag is None or e.tag == tag)
                and all(matches(e, k.rstrip("_"), v) for k, v in attrs.items())]

    def one(self, tag: str | None = None, **attrs) -> Element:
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"expected one {tag} {attrs}, found {len(found)}"
        return found[0]


# -- every page a user can meet ---------------------------------------------------------------
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
    with act.bridge.store.begin() as tx:
        tx.conn.execute(sa.update(schema.users).values(locked_at=clock()))
    locked = act.start("pat")
    keep("locked", client.get(locked.flow_url))
    response, _ = act.push("quinn", auth=(NO_ENROLL_ID, NO_ENROLL_SECRET),
                           client_id=NO_ENROLL_ID)
    uri = response.get_json()["request_uri"]
    page = client.get(f"/authorize?client_id={NO_ENROLL_ID}&request_uri={uri}")
    keep("not enrolled", client.get(page.headers["Location"]))
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


def test_the_walk_met_every_page_with_the_expected_status(pages):
    statuses = {name: response.status_code for name, response in pages.items()}
    assert statuses == {
        "enroll": 200, "enroll error": 400, "first code": 200, "download": 200,
        "saved error": 400, "totp": 200, "totp error": 400, "recovery": 200,
        "recovery error": 400, "rotation": 200, "rotation download": 200, "reenroll": 200,
        "locked": 403, "not enrolled": 403, "incomplete link": 400, "expired link": 400,
        "unknown flow": 404, "csrf": 400,
    }


# -- headers and cookies ----------------------------------------------------------------------
def test_every_page_has_the_security_headers(pages):
    for name, response in pages.items():
        headers = response.headers
        assert "no-store" in headers.get("Cache-Control", ""), name
        csp = headers.get("Content-Security-Policy", "")
        directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, name
        assert directives.get("frame-ancestors") == ["'none'"], name
        assert "script-src" in directives or directives.get("default-src") == ["'none'"], name
        assert headers.get("Referrer-Policy") == "no-referrer", name
        assert headers.get("X-Content-Type-Options") == "nosniff", name
        assert headers.get("Strict-Transport-Security", "").startswith("max-age="), name


def test_no_inline_script_or_style_that_the_csp_would_block(pages):
    for name in HTML_PAGES:
        page = Page(pages[name].get_data(as_text=True))
        for script in page.all("script"):
            assert script.attrs.get("src"), f"inline script on {name}"
        for element in page.elements:
            assert not any(a.startswith("on") for a in element.attrs), name
            assert "style" not in element.attrs, f"inline style on {name}: {element.tag}"
            assert not (element.attrs.get("href") or "").startswith("javascript:"), name
        assert not page.all("style"), name


def _session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie")
               if c.startswith("stepup_session=")]
    assert cookies, "no session cookie set"
    return cookies[-1]


def test_session_cookie_is_httponly_lax_and_secure_behind_https(act):
    response, _ = act.push("rae")
    uri = response.get_json()["request_uri"]
    page = act.client.get(f"/authorize?client_id=idp&request_uri={uri}")
    cookie = _session_cookie(page).lower()
    attributes = {part.strip().split("=")[0] for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite"} <= attributes
    assert "samesite=lax" in cookie


def test_session_cookie_is_not_secure_for_a_local_http_issuer(make_app, clock):
    app = make_app(issuer="http://127.0.0.1:5000")
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    response, _ = act.push("rae")
    uri = response.get_json()["request_uri"]
    page = act.client.get(f"/authorize?client_id=idp&request_uri={uri}")
    cookie = _session_cookie(page).lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie
    assert "Strict-Transport-Security" not in page.headers


# -- accessibility and forms ----------------------------------------------------------------
def test_every_input_has_a_label(pages):
    for name in HTML_PAGES:
        page = Page(pages[name].get_data(as_text=True))
        label_targets = {e.attrs.get("for") for e in page.all("label")}
        for field_ in page.all("input") + page.all("textarea") + page.all("select"):
            if field_.attrs.get("type") in ("hidden", "submit", "button"):
                continue
            assert field_.in_label or (field_.attrs.get("id") in label_targets), (
                f"unlabelled {field_.attrs.get('name')} on {name}")


def test_every_form_carries_a_csrf_token(pages):
    for name in HTML_PAGES:
        page = Page(pages[name].get_data(as_text=True))
        forms = page.all("form")
        for index, form in enumerate(forms):
            assert form.attrs.get("method", "").lower() == "post", name
            tokens = [e for e in page.all("input", name="csrf_token") if e.form == index]
            assert len(tokens) == 1, f"form {form.attrs.get('action')} on {name}"
            assert tokens[0].attrs.get("type") == "hidden"
            assert len(tokens[0].attrs.get("value") or "") > 20


def test_errors_are_announced_in_role_alert(pages):
    for name in ERROR_PAGES:
        page = Page(pages[name].get_data(as_text=True))
        alerts = page.all(role="alert")
        assert alerts and alerts[0].text.strip(), f"no role=alert text on {name}"


def test_pages_have_a_language_and_a_title(pages):
    for name in HTML_PAGES:
        page = Page(pages[name].get_data(as_text=True))
        assert page.one("html").attrs.get("lang") == "en"
        assert page.all("title")[0].text.strip(), name
        assert page.one("h1").text.strip(), name


# -- the automation contract ----------------------------------------------------------------
def _otp_input(page: Page) -> Element:
    field_ = page.one("input", name="otp")
    assert field_.attrs.get("autocomplete") == "one-time-code"
    assert field_.attrs.get("inputmode") == "numeric"
    return field_


def test_totp_page_contract(pages):
    page = Page(pages["totp"].get_data(as_text=True))
    _otp_input(page)
    link = page.one("a", id="use-recovery-code")
    assert link.attrs["href"].endswith("/recovery")
    assert "recovery code" in link.text.lower()
    assert not page.all("input", name="recovery_code")


def test_totp_error_page_keeps_the_contract(pages):
    page = Page(pages["totp error"].get_data(as_text=True))
    _otp_input(page)
    page.one("a", id="use-recovery-code")


def test_recovery_page_contract(pages):
    for name in ("recovery", "recovery error"):
        page = Page(pages[name].get_data(as_text=True))
        field_ = page.one("input", name="recovery_code")
        assert field_.attrs.get("type") == "text"
        assert not page.all("input", name="otp")


def test_enrollment_page_contract(pages):
    html = pages["enroll"].get_data(as_text=True)
    page = Page(html)
    secret = page.one(id="totp-secret").text.strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    _otp_input(page)
    # The QR code is an inline SVG of the otpauth URI (no image request, nothing external).
    svgs = page.all("svg")
    assert any("qr" in (s.attrs.get("class") or "") or s.text.strip() for s in svgs)
    assert not page.all("img")
    uri = totp.provisioning_uri(secret, "Stepup", "Pat Smith")
    assert "Stepup:Pat%20Smith" in uri and "+" not in uri
    expected = segno.make(uri, error="m").svg_inline(scale=5, border=4)
    path = re.search(r' d="([^"]+)"', expected).group(1)
    assert f' d="{path}"' in html, "the QR code does not encode the expected otpauth URI"
    # Scaled by CSS through its viewBox, never cropped by a fixed width and height.
    qr = re.search(r'<svg[^>]*class="segno"[^>]*>', html).group(0)
    assert "viewBox=" in qr and "width=" not in qr


def test_reenrollment_page_contract(pages):
    page = Page(pages["reenroll"].get_data(as_text=True))
    assert re.fullmatch(r"[A-Z2-7]{32}", page.one(id="totp-secret").text.strip())
    _otp_input(page)
    assert page.all("svg")


@pytest.mark.parametrize("name", ["first code", "rotation"])
def test_new_code_page_contract(pages, name):
    html = pages[name].get_data(as_text=True)
    page = Page(html)
    code = page.one(id="recovery-code").text.strip()
    assert recovery.normalize(code) is not None
    checkbox = page.one("input", name="saved")
    assert checkbox.attrs.get("type") == "checkbox"
    assert "required" in checkbox.attrs
    assert SINGLE_USE in html
    assert page.one("a", download=True).attrs["href"].endswith("/recovery-code.txt")


def test_rotation_page_says_the_old_code_is_gone_and_offers_a_new_authenticator(pages):
    html = pages["rotation"].get_data(as_text=True)
    assert "Your previous code no longer works" in html
    assert "Successful!" in html
    page = Page(html)
    assert page.one("button", name="next", value="reenroll")


def test_single_use_sentence_on_every_page_that_shows_a_code(pages):
    for name in HTML_PAGES:
        html = pages[name].get_data(as_text=True)
        if 'id="recovery-code"' in html:
            assert SINGLE_USE in html, name
    for name in ("download", "rotation download"):
        assert SINGLE_USE in pages[name].get_data(as_text=True), name


@pytest.mark.parametrize(("download", "page"), [("download", "first code"),
                                                 ("rotation download", "rotation")])
def test_download_is_a_plain_text_attachment_with_the_code(pages, download, page):
    response = pages[download]
    code = shown(pages[page].get_data(as_text=True), "recovery-code")
    assert response.mimetype == "text/plain"
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert ".txt" in response.headers["Content-Disposition"]
    assert "no-store" in response.headers["Cache-Control"]
    assert code in response.get_data(as_text=True)


def test_locked_page_returns_to_sign_in(pages):
    page = Page(pages["locked"].get_data(as_text=True))
    assert not page.all("input", name="otp") and not page.all("input", name="recovery_code")
    form = page.one("form")
    assert form.attrs["action"].endswith("/cancel")
    assert "Return to sign-in" in form.text


# -- bad input on every form --------------------------------------------------------------------
BAD_VALUES = {
    "empty": "",
    "overlong": "7" * 10_240,
    "non-ascii": "ünïcødé ✓ 一二三四五六",
    "arabic digits": "١٢٣٤٥٦",
    "nul bytes": "123\x00456",
    "only nul": "\x00" * 6,
    "control": "\r\n\t\x1b[31m",
}


def _user_rows(act: Actions) -> list:
    with act.bridge.store.begin() as tx:
        return list(tx.conn.execute(sa.select(schema.users.c.subject)).scalars())


def _flow(act: Actions, login):
    flow_id = login.flow_url.rsplit("/", 1)[1]
    with act.bridge.store.begin() as tx:
        return tx.find_flow(flow_id, act.clock())


def _events(act: Actions) -> list[str]:
    with act.bridge.store.begin() as tx:
        return list(tx.conn.execute(sa.select(schema.audit_events.c.event)).scalars())


def _at_stage(act: Actions, stage: str):
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


FORMS = [  # (stage, action, field)
    ("enroll", "enroll", "otp"),
    ("totp", "totp", "otp"),
    ("totp", "recovery", "recovery_code"),
    ("enroll_saved", "saved", "saved"),
    ("rotate", "saved", "saved"),
    ("reenroll", "reenroll", "otp"),
]


def _assert_nothing_moved(act, login, stage, before_users, before_events):
    flow = _flow(act, login)
    assert flow is not None and flow.stage == stage
    assert _user_rows(act) == before_users  # in particular no new user row
    new_events = _events(act)[len(before_events):]
    assert not {"success", "enrollment", "rotation", "reenrollment"} & set(new_events)


@pytest.mark.parametrize(("stage", "action", "field_"), FORMS)
@pytest.mark.parametrize("value", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_bad_values_get_a_clear_4xx_page_and_change_nothing(act, stage, action, field_,
                                                            value):
    login = _at_stage(act, stage)
    before_users, before_events = _user_rows(act), _events(act)
    response = act.post(login, action, **{field_: value})
    assert 400 <= response.status_code < 500
    html = response.get_data(as_text=True)
    assert Page(html).all(role="alert"), "no role=alert on the error page"
    assert "Traceback" not in html
    _assert_nothing_moved(act, login, stage, before_users, before_events)


@pytest.mark.parametrize(("stage", "action", "field_"), FORMS)
def test_invalid_utf8_gets_a_4xx_page(act, stage, action, field_):
    login = _at_stage(act, stage)
    before_users, before_events = _user_rows(act), _events(act)
    token = act.csrf(login.last_page)
    body = f"{field_}=%FF%FE%00%C3&csrf_token={token}".encode()
    response = act.client.post(f"{login.flow_url}/{action}", data=body,
                               content_type="application/x-www-form-urlencoded")
    assert 400 <= response.status_code < 500
    _assert_nothing_moved(act, login, stage, before_users, before_events)


def test_a_request_body_over_the_limit_gets_a_413_page(act):
    login = _at_stage(act, "totp")
    token = act.csrf(login.last_page)
    response = act.client.post(f"{login.flow_url}/totp",
                               data={"otp": "1" * 100_000, "csrf_token": token})
    assert response.status_code == 413
    assert Page(response.get_data(as_text=True)).all(role="alert")
    assert _flow(act, login).stage == "totp"


ALL_ACTIONS = [*FORMS, ("totp", "cancel", "x")]


CSRF_CASES = [(*form, token) for form in ALL_ACTIONS for token in (None, "wrong")] + [
    (*ALL_ACTIONS[1], token) for token in ("", "x" * 10_240, "ünï\x00", "IjEyMyI.Zz9vYQ.abc")]


@pytest.mark.parametrize(("stage", "action", "field_", "token"), CSRF_CASES)
def test_missing_or_wrong_csrf_token_gets_the_400_page(act, stage, action, field_, token):
    login = _at_stage(act, stage)
    before_users, before_events = _user_rows(act), _events(act)
    right = {"otp": act.code_now(login) if login.secret else "123456",
             "recovery_code": login.recovery_code, "saved": "yes", "x": ""}[field_]
    form = {field_: right}
    if token is not None:
        form["csrf_token"] = token
    response = act.client.post(f"{login.flow_url}/{action}", data=form)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "This page expired" in html and Page(html).all(role="alert")
    _assert_nothing_moved(act, login, stage, before_users, before_events)


def test_another_sessions_csrf_token_is_refused(act, app, clock):
    login = _at_stage(act, "totp")
    other = Actions(app.test_client(), act.bridge, clock)
    stranger = other.start("stranger")
    response = act.client.post(f"{login.flow_url}/totp", data={
        "otp": act.code_now(login), "csrf_token": other.csrf(stranger.last_page)})
    assert response.status_code == 400
    assert _flow(act, login).stage == "totp"


FLOW_IDS = ["no-such-flow", "A" * 32, "x" * 65, "x" * 5000, "%00", "%C3%BC", "..%2F..%2Fetc"]


@pytest.mark.parametrize("flow_id", FLOW_IDS)
def test_unknown_flow_id_gets_a_404_page(act, flow_id):
    login = _at_stage(act, "totp")
    for action in ("totp", "recovery", "enroll", "reenroll", "saved", "cancel"):
        response = act.client.post(f"/flow/{flow_id}/{action}", data={
            "otp": "123456", "saved": "yes", "csrf_token": act.csrf(login.last_page)})
        assert response.status_code == 404, action
        assert Page(response.get_data(as_text=True)).all(role="alert")
    assert _flow(act, login).stage == "totp"


@pytest.mark.parametrize("path", ["", "/recovery", "/recovery-code.txt"])
def test_unknown_flow_id_get_is_404(act, path):
    assert act.client.get(f"/flow/no-such-flow{path}").status_code == 404


@pytest.mark.parametrize(("stage", "action", "field_"), ALL_ACTIONS)
def test_another_browsers_flow_id_gets_a_404(act, app, clock, stage, action, field_):
    login = _at_stage(act, stage)
    before_users, before_events = _user_rows(act), _events(act)
    other = Actions(app.test_client(), act.bridge, clock)
    stranger = other.start("stranger")  # the other browser has a session and a CSRF token
    right = {"otp": act.code_now(login) if login.secret else "123456",
             "recovery_code": login.recovery_code, "saved": "yes", "x": ""}[field_]
    response = other.client.post(f"{login.flow_url}/{action}",
                                 data={field_: right, "csrf_token": other.csrf(stranger.last_page)})
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert Page(html).all(role="alert")
    assert 'id="totp-secret"' not in html and 'id="recovery-code"' not in html
    _assert_nothing_moved(act, login, stage, before_users, before_events)


@pytest.mark.parametrize("stage", ["enroll", "enroll_saved", "totp", "rotate", "reenroll"])
@pytest.mark.parametrize("path", ["", "/recovery", "/recovery-code.txt"])
def test_another_browser_cannot_see_a_flow(act, app, clock, stage, path):
    login = _at_stage(act, stage)
    other = app.test_client()
    response = other.get(f"{login.flow_url}{path}")
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert 'id="totp-secret"' not in body and 'id="recovery-code"' not in body
    assert login.secret not in body


def test_a_session_that_lists_the_flow_but_lacks_its_binding_gets_404(act, app):
    """Each layer alone holds: the flow is bound to the browser that opened it."""
    login = _at_stage(act, "totp")
    other = app.test_client()
    with other.session_transaction() as session:
        session["flows"] = [login.flow_url.rsplit("/", 1)[1]]
    assert other.get(login.flow_url).status_code == 404


def test_a_session_with_the_binding_but_not_the_flow_listed_gets_404(act, app):
    login = _at_stage(act, "totp")
    with act.client.session_transaction() as session:
        binding = session["binding"]
    other = app.test_client()
    with other.session_transaction() as session:
        session["binding"] = binding
        session["flows"] = []
    assert other.get(login.flow_url).status_code == 404


WRONG_STAGE = [  # (stage, action, form)
    ("enroll", "recovery", {"recovery_code": recovery.generate()}),
    ("enroll", "totp", {"otp": "123456"}),
    ("enroll", "reenroll", {"otp": "123456"}),
    ("enroll", "saved", {"saved": "yes"}),
    ("totp", "enroll", {"otp": "123456"}),
    ("totp", "reenroll", {"otp": "123456"}),
    ("totp", "saved", {"saved": "yes"}),
    ("rotate", "totp", {"otp": "123456"}),
    ("rotate", "enroll", {"otp": "123456"}),
    ("rotate", "recovery", {"recovery_code": recovery.generate()}),
    ("enroll_saved", "enroll", {"otp": "123456"}),
    ("enroll_saved", "recovery", {"recovery_code": recovery.generate()}),
    ("reenroll", "totp", {"otp": "123456"}),
    ("reenroll", "enroll", {"otp": "123456"}),
    ("reenroll", "saved", {"saved": "yes"}),
]


@pytest.mark.parametrize(("stage", "action", "form"), WRONG_STAGE,
                         ids=[f"{s}-{a}" for s, a, _ in WRONG_STAGE])
def test_a_form_for_another_stage_gets_a_clear_4xx_page(act, stage, action, form):
    login = _at_stage(act, stage)
    before_users, before_events = _user_rows(act), _events(act)
    response = act.post(login, action, **form)
    assert 400 <= response.status_code < 500
    html = response.get_data(as_text=True)
    assert Page(html).all(role="alert")
    # The page is the one for the stage the flow is at, not the form that was posted.
    if stage != "totp":
        assert 'name="recovery_code"' not in html
    _assert_nothing_moved(act, login, stage, before_users, before_events)


def test_a_wrong_stage_get_of_the_recovery_form_goes_back_to_the_flow(act):
    login = _at_stage(act, "enroll")
    response = act.client.get(f"{login.flow_url}/recovery")
    assert response.status_code == 303
    assert response.headers["Location"] == login.flow_url


def test_the_download_needs_a_code_to_show(act):
    login = _at_stage(act, "totp")
    assert act.client.get(f"{login.flow_url}/recovery-code.txt").status_code == 404


def test_a_finished_flow_is_gone(act, clock):
    login = _at_stage(act, "totp")
    clock.advance(30)
    done = act.post(login, "totp", otp=act.code_now(login))
    assert "code" in callback_params(done.headers["Location"])
    assert act.client.get(login.flow_url).status_code == 404
    again = act.post(login, "totp", otp=act.code_now(login))
    assert again.status_code in (400, 404)
    assert Page(again.get_data(as_text=True)).all(role="alert")
