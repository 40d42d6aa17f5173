"""What the accessibility tests share: a bridge served over HTTP to real Chromium, a fake IdP
callback, axe-core (npm, installed by scripts/bootstrap.sh) and a walk through every state of
the challenge pages."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from werkzeug.serving import make_server

from bridge import create_app
from bridge.factors import totp
from bridge.i18n import RTL
from bridge.oidc.clients import new_client

from .browser import free_port

AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
#: WCAG 2.0, 2.1 and 2.2, levels A and AA (axe-core's tags).
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
IDP_PAGE = (b"<!doctype html><html lang='en'><title>IdP</title>"
            b"<h1 id='back-at-idp'>Back at the IdP</h1></html>")
SECRET = "a11y-idp-secret-0123456789"


@dataclass
class Bridge:
    """A bridge on a free port and the IdP's back channel to it."""

    url: str
    app: object
    callback: str

    def authorize_url(self, subject: str, lang: str, client_id: str = "idp") -> str:
        """Push a request as the IdP would (with ``ui_locales``) and return the browser URL."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        response = requests.post(f"{self.url}/par", auth=(client_id, SECRET), timeout=10, data={
            "response_type": "code", "scope": "openid", "client_id": client_id,
            "redirect_uri": self.callback, "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8), "code_challenge": challenge,
            "code_challenge_method": "S256", "login_hint": subject,
            "preferred_username": f"{subject}@example.com", "ui_locales": lang})
        assert response.status_code == 201, response.text
        uri = response.json()["request_uri"]
        return f"{self.url}/authorize?client_id={client_id}&request_uri={uri}"

    def lock(self, subject: str) -> None:
        """Locked as after too many wrong codes (the locked page says why from the audit)."""
        with self.app.extensions["stepup"].store.begin() as tx:
            tx.lock_user(subject, time.time())
            tx.audit("lockout", time.time(), subject=subject)


def _idp(environ, start_response):
    """The IdP's callback: the walk ends at the bridge's edge."""
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [IDP_PAGE]


@contextmanager
def _serving(port: int, app) -> Iterator[None]:
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()


@contextmanager
def serve_bridge(data_dir: Path) -> Iterator[Bridge]:
    port, idp_port = free_port(), free_port()
    url, callback = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{idp_port}/callback"
    # A help link in every footer, so every state's checks cover it too.
    app = create_app({"data_dir": data_dir, "issuer": url, "ip_limit": 100_000,
                      "help_url": "https://help.example.com/sign-in"}, environ={})
    bridge = app.extensions["stepup"]
    with bridge.store.begin() as tx:
        for client_id, enroll in (("idp", True), ("closed-idp", False)):
            tx.add_client(new_client(bridge.secrets.pepper, client_id, secret=SECRET,
                                     jwks_uri=None, redirect_uris=[callback],
                                     redirect_uri_prefixes=[], allow_enrollment=enroll))
    try:
        with _serving(port, app), _serving(idp_port, _idp):
            yield Bridge(url, app, callback)
    finally:
        bridge.store.engine.dispose()


def axe_violations(page) -> list[str]:
    """Run axe-core with the WCAG A/AA rules; one line per violation (rule, what, where).

    Injected with ``evaluate`` (DevTools protocol), which the page's CSP does not block.
    """
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result = page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags},"
        " resultTypes: ['violations']})).violations.map(v => `${v.id} (${v.impact}): "
        "${v.help} -- ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)", WCAG_TAGS)
    return list(result)


def wrong_code(secret: str) -> str:
    """A code no step within ±15 minutes shows: plainly wrong, not a wrong clock."""
    near = {totp.code_at(secret, time.time() + k * 30) for k in range(-31, 32)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444") if c not in near)


def submit_code(page, field: str, value: str) -> None:
    page.fill(f"input[name={field}]", value)
    with page.expect_navigation():
        page.press(f"input[name={field}]", "Enter")


def walk(bridge: Bridge, page, lang: str, visit: Callable[[str], None]) -> None:
    """Every state a user can meet, in order; ``visit(state)`` runs at each."""
    user, closed = f"walk-{lang}-{secrets.token_hex(4)}", f"closed-{secrets.token_hex(4)}"
    page.goto(bridge.authorize_url(user, lang))
    page.click("details.manual summary")  # "Can't scan?" open: the key is checked too
    visit("enroll")
    secret = page.inner_text("#totp-secret").strip()
    submit_code(page, "otp", wrong_code(secret))
    visit("enroll-wrong-code")
    submit_code(page, "otp", totp.code_at(secret, time.time() - 7 * 60))
    visit("enroll-wrong-clock")
    submit_code(page, "otp", totp.code_at(secret, time.time()))
    first_code = page.inner_text("#recovery-code").strip()
    visit("first-recovery-code")
    page.check("input[name=saved]")
    page.click("button[name=next][value=continue]")
    page.wait_for_selector("#back-at-idp")

    page.goto(bridge.authorize_url(user, lang))
    visit("totp")
    submit_code(page, "otp", wrong_code(secret))
    visit("totp-wrong-code")
    submit_code(page, "otp", totp.code_at(secret, time.time() + 5 * 60))
    visit("totp-wrong-clock")
    page.click("#use-recovery-code")
    page.wait_for_selector("input[name=recovery_code]")
    visit("recovery")
    submit_code(page, "recovery_code", "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
    visit("recovery-wrong-code")
    submit_code(page, "recovery_code", first_code)
    page.wait_for_selector("#recovery-code")
    visit("new-recovery-code")
    page.check("input[name=saved]")
    page.click("button[name=next][value=reenroll]")
    page.wait_for_selector("#totp-secret", state="attached")
    visit("reenroll")
    submit_code(page, "otp", wrong_code(page.text_content("#totp-secret").strip()))
    visit("reenroll-wrong-code")

    bridge.lock(user)
    page.goto(bridge.authorize_url(user, lang))
    visit("locked")
    page.goto(bridge.authorize_url(closed, lang, client_id="closed-idp"))
    visit("not-enrolled")
    page.goto(f"{bridge.url}/authorize?client_id=idp&request_uri=urn:spent")
    visit("expired-link")
    page.goto(f"{bridge.url}/flow/no-such-flow")
    visit("not-found")
    page.goto(f"{bridge.url}/")
    visit("home")


# -- what "visible" means for the checks -------------------------------------------------------
FOCUS_RING = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const cs = getComputedStyle(el);
  const ring = cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2;
  return {tag: el.tagName.toLowerCase(), id: el.id, name: el.getAttribute('name'),
          text: (el.innerText || el.value || '').trim().slice(0, 40), ring: ring,
          role: el.getAttribute('role')};
}"""

HORIZONTAL_OVERFLOW = """() => document.documentElement.scrollWidth - window.innerWidth"""

# Visible elements whose own text is smaller than ``min`` CSS px: with the browser's default text
# size doubled, a size the reader's setting does not reach (px instead of rem) stays small.
SMALL_TEXT = """(min) => [...document.querySelectorAll('body *')]
  .filter(el => el instanceof HTMLElement && el.getClientRects().length > 0
          && [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
  .map(el => [el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''),
              parseFloat(getComputedStyle(el).fontSize)])
  .filter(([, size]) => size < min)
  .map(([what, size]) => `${what} ${size}px`)"""

# Every control a user can see: its text must differ from its background, and a control that is
# not a text link keeps a border (forced colours remove backgrounds and shadows).
INVISIBLE_CONTROLS = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('button, input, summary, a, select, textarea')) {
    const box = el.getBoundingClientRect();
    if (el.type === 'hidden' || box.width === 0 || box.height === 0) continue;
    const cs = getComputedStyle(el);
    const bordered = parseFloat(cs.borderTopWidth) > 0 && cs.borderTopStyle !== 'none'
                     && cs.borderTopColor !== cs.backgroundColor;
    const underlined = cs.textDecorationLine.includes('underline');
    const native = el.tagName === 'INPUT' && ['checkbox', 'radio'].includes(el.type);
    const summary = el.tagName === 'SUMMARY';  // has its disclosure triangle
    const textLike = el.tagName === 'A' || el.classList.contains('link');
    if (cs.color === cs.backgroundColor || !(bordered || native || summary ||
        (textLike && underlined))) {
      bad.push(`${el.tagName.toLowerCase()}#${el.id || el.name || el.className}`);
    }
  }
  return bad;
}"""


def page_problems(page, lang: str, state: str, shoot=None) -> list[str]:
    """Every check a page state gets: its language and direction; axe-core light and dark;
    controls visible in forced colours, light and dark; no sideways scrolling at 320 CSS px
    (WCAG 1.4.10) nor at 640 (200 % zoom of a 1280 px window). ``shoot(scheme)`` may take a
    screenshot while each scheme is on."""
    problems: list[str] = []
    root = page.locator("html")
    assert root.get_attribute("lang") == lang, state
    assert root.get_attribute("dir") == ("rtl" if lang in RTL else "ltr"), state
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme, forced_colors="none")
        problems.extend(f"{state} {scheme}: {v}" for v in axe_violations(page))
        if shoot:
            shoot(scheme)
    page.emulate_media(color_scheme="light", forced_colors="active")
    problems.extend(f"{state} forced colours: {c} not visible"
                    for c in page.evaluate(INVISIBLE_CONTROLS))
    page.emulate_media(color_scheme="dark", forced_colors="active")
    problems.extend(f"{state} forced colours dark: {c} not visible"
                    for c in page.evaluate(INVISIBLE_CONTROLS))
    page.emulate_media(color_scheme="light", forced_colors="none")
    for width in (320, 640):
        page.set_viewport_size({"width": width, "height": 800})
        if (overflow := page.evaluate(HORIZONTAL_OVERFLOW)) > 0:
            problems.append(f"{state} at {width}px: scrolls sideways by {overflow}px")
    page.set_viewport_size({"width": 900, "height": 1000})
    return problems
