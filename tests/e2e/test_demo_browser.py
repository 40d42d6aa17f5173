"""The quick-start demo in real Chromium: enrollment → sign out → TOTP → recovery with rotation.

``stepup demo`` runs as a real process (bridge + demo IdP); the "phone" is pyotp reading the
secret shown on the enrollment page. Screenshots of every page land in docs/screenshots/.
"""

from __future__ import annotations

import base64
import json
import time
import zlib

import pytest

from bridge.factors import totp

from .accessibility import page_problems
from .browser import chromium_page, enter_recovery_code, free_port, screenshot, stepup_process

pytestmark = pytest.mark.e2e
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def demo(demo_folder):
    data = demo_folder
    port, idp_port = free_port(), free_port()
    env = {"STEPUP_DATA_DIR": str(data), "STEPUP_ISSUER": f"http://127.0.0.1:{port}",
           "STEPUP_LOCKOUT_LIMIT": "3"}
    with stepup_process(["demo", "--port", str(port), "--idp-port", str(idp_port)], env,
                        f"http://127.0.0.1:{idp_port}/", data / "demo.log"):
        yield f"http://127.0.0.1:{idp_port}", f"http://127.0.0.1:{port}"


def sign_in(page, idp: str, user: str) -> None:
    page.goto(idp)
    page.fill("#username", user)
    page.fill("#password", f"{user}-demo")
    page.click("text=Next")


def enroll(page, idp: str, user: str) -> str:
    """Enroll through the pages; returns the TOTP secret."""
    sign_in(page, idp, user)
    secret = page.text_content("#totp-secret").strip()  # inside a closed <details>
    page.fill("input[name=otp]", totp.code_at(secret, time.time()))
    page.click("text=Verify and continue")
    page.check("input[name=saved]")
    page.click("button:has-text('Continue')")
    page.wait_for_selector("#signed-in")
    page.click("text=Sign out")
    return secret


def click_twice_on_a_slow_network(page, button: str, posts_to: str) -> None:
    """An impatient user clicks ``button`` again while its post's answer is still on the way
    (each answer is held until both clicks are done). The page must send one post: a second
    one would reach a sign-in the first had already finished, and the browser would show that
    answer ("This sign-in cannot continue") instead of following the first to the IdP."""
    held = []
    page.route(posts_to, lambda route: held.append((route, route.fetch(max_redirects=0))))
    box = page.locator(button).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)
    page.wait_for_timeout(200)
    page.mouse.click(x, y)
    page.wait_for_timeout(200)
    assert len(held) == 1, f"{len(held)} posts"
    for route, answer in held:
        route.fulfill(response=answer)
    page.unroute(posts_to)


def cookie_session(page, name: str) -> dict:
    """What a Flask session cookie says (signed, not encrypted: anyone holding it reads it)."""
    (value,) = [c["value"] for c in page.context.cookies() if c["name"] == name]
    compressed, payload = value.startswith("."), value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return json.loads(zlib.decompress(raw) if compressed else raw)


def test_the_demo_idps_pages_pass_the_bridges_checks(demo):
    """The IdP a newcomer meets first, before the bridge's pages: axe light and dark, and its
    buttons visible in forced colours (found by review: borderless, they were plain text
    there; and the page stayed white in dark mode between the bridge's dark pages)."""
    demo, _ = demo
    with chromium_page() as page:
        page.goto(demo)
        assert page_problems(page, "en", "demo sign-in") == []
        dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
        page.emulate_media(color_scheme="dark")
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") != dark
        page.emulate_media(color_scheme="light")
        page.fill("#username", "alice")
        page.fill("#password", "wrong")
        page.click("text=Next")
        page.wait_for_selector("[role=alert]")
        assert page_problems(page, "en", "demo wrong password") == []


def test_enroll_totp_and_recovery_with_rotation(demo):
    demo, _ = demo
    with chromium_page() as page:
        sign_in(page, demo, "alice")
        page.wait_for_selector("#totp-secret", state="attached")
        # The demo keeps the pending hand-off as docs/handoff-client.md asks: on the server,
        # the cookie holding a key per open sign-in only (no state, nonce or PKCE verifier;
        # the sign-in form's CSRF token stays).
        kept = cookie_session(page, "demo_idp")
        assert set(kept) == {"pending", "csrf_token"} and len(kept["pending"]) == 1, kept
        assert "verifier" not in json.dumps(kept) and len(kept["pending"][0]) < 30
        assert page.locator("figure.qr svg").count() == 1
        page.click("summary")  # "Can't scan?" reveals the key
        screenshot(page, "01-enroll")
        secret = page.inner_text("#totp-secret").strip()
        page.fill("input[name=otp]", "000000" if totp.code_at(secret, time.time()) != "000000"
                  else "111111")
        page.click("text=Verify and continue")
        assert page.locator("[role=alert]").is_visible()
        # The key typed by hand stays in view to be checked against the app's entry.
        page.wait_for_selector("#totp-secret", state="visible", timeout=5_000)
        screenshot(page, "02-enroll-wrong-code")
        page.fill("input[name=otp]", totp.code_at(secret, time.time()))
        page.click("text=Verify and continue")

        first_code = page.inner_text("#recovery-code").strip()
        assert "works only once" in page.content()
        screenshot(page, "03-first-recovery-code")
        page.click("button:has-text('Continue')")
        # The required checkbox stops the form in the browser itself.
        assert page.locator("#recovery-code").is_visible()
        page.check("input[name=saved]")
        page.click("button:has-text('Continue')")
        page.wait_for_selector("#signed-in")
        assert page.inner_text("#amr").strip() == "otp"
        screenshot(page, "04-idp-signed-in")
        page.click("text=Sign out")

        # TOTP login: the next time step's code (the enrollment step is spent).
        sign_in(page, demo, "alice")
        page.wait_for_selector("input[name=otp]")
        screenshot(page, "05-totp")
        # Typed on an Arabic keyboard and grouped: the browser must let it through (a
        # pattern attribute blocked it) and the bridge reads it.
        code = totp.code_at(secret, time.time() + 30).translate(ARABIC_INDIC)
        page.fill("input[name=otp]", f"{code[:3]} - {code[3:]}")
        click_twice_on_a_slow_network(page, "button:has-text('Verify')", "**/flow/*/totp")
        page.wait_for_selector("#signed-in")
        page.click("text=Sign out")

        # Recovery code, with rotation.
        sign_in(page, demo, "alice")
        page.click("#use-recovery-code")
        page.wait_for_selector("input[name=recovery_code]")
        screenshot(page, "06-recovery")
        page.fill("input[name=recovery_code]", first_code.lower().replace("-", " "))
        page.click("text=Verify recovery code")
        new_code = page.inner_text("#recovery-code").strip()
        assert new_code != first_code
        assert "Your previous code no longer works" in page.content()
        assert page.locator("text=Set up a new authenticator").is_visible()
        screenshot(page, "07-new-recovery-code")
        page.check("input[name=saved]")
        page.click("button:has-text('Continue')")
        page.wait_for_selector("#signed-in")
        assert page.inner_text("#amr").strip() == "rc"
        page.click("text=Sign out")

        # The old code is spent.
        sign_in(page, demo, "alice")
        enter_recovery_code(page, first_code)
        assert "didn't work" in page.inner_text("[role=alert]")
        screenshot(page, "08-recovery-wrong")


def test_lockout_and_expired_link(demo, demo_folder):
    idp, bridge = demo
    with chromium_page() as page:
        secret = enroll(page, idp, "bob")
        sign_in(page, idp, "bob")
        good = {totp.code_at(secret, time.time() + d) for d in (-30, 0, 30, 60)}
        wrong = next(c for c in ("123456", "654321", "111111", "222222") if c not in good)
        for _ in range(3):
            page.fill("input[name=otp]", wrong)
            page.click("button:has-text('Verify')")
        assert "locked" in page.inner_text("[role=alert]")
        screenshot(page, "09-locked")
        # The demo's terminal shows what the sign-in recorded, as a server's log would.
        logged = [json.loads(line)["audit"] for line in
                  (demo_folder / "demo.log").read_text().splitlines()
                  if line.startswith("{") and '"stepup.audit"' in line]
        assert {"event": "lockout", "subject": "u-1002"}.items() <= logged[-1].items()
        page.click("text=Return to sign-in")
        assert "Second factor not completed" in page.inner_text("[role=alert]")
        # A new sign-in for a locked user shows the locked page at once.
        sign_in(page, idp, "bob")
        assert page.locator("h1").inner_text() == "Two-step verification is locked"

        came_from = page.url
        client_id = f"demo-idp-{idp.rsplit(':', 1)[1]}"  # the demo's IdP, one per IdP port
        page.goto(f"{bridge}/authorize?client_id={client_id}&request_uri=urn:x")
        assert "expired" in page.inner_text("h1")
        screenshot(page, "10-expired-link")
        # No way on that the bridge knows: the page offers the one the browser knows. Another
        # language of the page replaces it in the history: Go back still leaves it.
        page.click("text=Deutsch")
        page.click("button:has-text('Zurück')")
        page.wait_for_url(came_from)
        # A tab opened on the link (from a mail, say): nothing to go back to, no button.
        with page.context.expect_page() as opened:
            page.evaluate("(url) => window.open(url, '_blank', 'noopener')",
                          f"{bridge}/authorize?client_id={client_id}&request_uri=urn:x")
        tab = opened.value
        tab.wait_for_load_state()
        assert tab.evaluate("history.length") == 1 and tab.locator("h1").count() == 1
        assert tab.locator("[data-history-back]").is_hidden()


def test_lost_authenticator_is_replaced_after_a_recovery_login(demo):
    idp, _ = demo
    with chromium_page() as page:
        sign_in(page, idp, "carol")
        old_secret = page.text_content("#totp-secret").strip()
        page.fill("input[name=otp]", totp.code_at(old_secret, time.time()))
        page.click("text=Verify and continue")
        code = page.inner_text("#recovery-code").strip()
        page.check("input[name=saved]")
        page.click("button:has-text('Continue')")
        page.click("text=Sign out")

        sign_in(page, idp, "carol")
        enter_recovery_code(page, code)
        page.check("input[name=saved]")
        page.click("text=Set up a new authenticator")
        assert page.inner_text("h1") == "Set up your new authenticator"
        screenshot(page, "11-reenroll")
        new_secret = page.text_content("#totp-secret").strip()
        assert new_secret != old_secret
        page.fill("input[name=otp]", totp.code_at(new_secret, time.time()))
        page.click("text=Verify and continue")
        page.wait_for_selector("#signed-in")
        assert page.inner_text("#amr").strip() == "rc, otp"
        page.click("text=Sign out")

        sign_in(page, idp, "carol")  # the lost phone's codes no longer work
        page.fill("input[name=otp]", totp.code_at(old_secret, time.time() + 30))
        page.click("button:has-text('Verify')")
        assert "didn't work" in page.inner_text("[role=alert]")
