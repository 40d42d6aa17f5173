"""WCAG 2.2 AA in real Chromium: axe-core on every state of the challenge pages in every
language (left to right and right to left), light and dark; forced colours keep every control
visible; no horizontal scrolling at 320 CSS px or at 200 % zoom (WCAG 1.4.10); text that follows
the browser's text-size setting (WCAG 1.4.4); keyboard-only walks through enrollment, TOTP and
recovery (visible focus, focus on the error); the QR code's text alternative. Screenshots of the
main pages land in docs/screenshots/."""

from __future__ import annotations

import contextlib
import itertools
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from babel.support import Translations
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

import bridge as bridge_package
from bridge.challenge import LONGEST_FLOW
from bridge.factors import totp
from bridge.i18n import LANGUAGES
from bridge.store.schema import flows

from .accessibility import (
    AXE,
    FOCUS_RING,
    HORIZONTAL_OVERFLOW,
    INVISIBLE_CONTROLS,
    SMALL_TEXT,
    axe_violations,
    page_problems,
    serve_bridge,
    submit_code,
    walk,
    wrong_code,
)
from .browser import CHROMIUM, CHROMIUM_ARGS, screenshot

pytestmark = pytest.mark.e2e

#: Pages photographed for docs/screenshots (language -> states), light and dark.
SCREENSHOTS = {"en": ("enroll", "totp-wrong-clock", "new-recovery-code", "locked"),
               "de": ("enroll", "totp-wrong-clock", "new-recovery-code"),
               "ar": ("enroll", "totp-wrong-clock", "new-recovery-code", "locked", "home")}
DARK_SCREENSHOTS = {"en": ("enroll", "totp-wrong-code", "new-recovery-code"),
                    "ar": ("totp-wrong-clock",)}
STATES = 17


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    assert AXE.exists(), "axe-core is missing: run scripts/bootstrap.sh"
    with serve_bridge(tmp_path_factory.mktemp("a11y")) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        yield chromium
        chromium.close()


def new_page(browser, lang: str, width: int = 900):
    context = browser.new_context(locale=lang, viewport={"width": width, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def test_text_follows_the_browsers_text_size_setting(bridge, browser):
    """WCAG 1.4.4: a reader who sets the browser's text size to 200 % (32 px) gets every text
    of every state at least twice the smallest size the style sheet uses (12 px), and no
    state then scrolls sideways in a 640 px window."""
    page = new_page(browser, "en", width=640)
    page.context.new_cdp_session(page).send("Page.setFontSizes",
                                            {"fontSizes": {"standard": 32}})
    problems: list[str] = []

    def check(state: str) -> None:
        problems.extend(f"{state}: {small}" for small in page.evaluate(SMALL_TEXT, 24))
        if (overflow := page.evaluate(HORIZONTAL_OVERFLOW)) > 0:
            problems.append(f"{state}: scrolls sideways by {overflow}px")

    try:
        walk(bridge, page, "en", check)
    finally:
        page.context.close()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_state_in_every_language_meets_wcag_22_aa(bridge, browser, lang):
    page = new_page(browser, lang)
    problems: list[str] = []
    seen: list[str] = []

    def check(state: str) -> None:
        seen.append(state)

        def shoot(scheme: str) -> None:
            if state in (SCREENSHOTS if scheme == "light" else DARK_SCREENSHOTS).get(lang, ()):
                screenshot(page, f"{'dark' if scheme == 'dark' else 'lang'}-{lang}-{state}")

        problems.extend(page_problems(page, lang, state, shoot))

    walk(bridge, page, lang, check)
    assert len(seen) == STATES, seen
    assert not problems, "\n".join(problems)
    page.context.close()


def test_axe_finds_violations_when_there_are_some(bridge, browser):
    """The check can fail: a page with a known violation is reported."""
    page = new_page(browser, "en")
    page.goto(f"{bridge.url}/flow/no-such-flow")
    page.evaluate("() => { document.documentElement.removeAttribute('lang');"
                  " document.querySelector('.alert').style.color = '#eee'; }")
    found = " ".join(axe_violations(page))
    assert "html-has-lang" in found and "color-contrast" in found
    page.context.close()


def focused(page) -> dict:
    # `autofocus` lands at the browser's next rendering step, which can come after "load".
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function("() => document.activeElement !== document.body",
                               timeout=2000)
    info = page.evaluate(FOCUS_RING)
    assert info is not None, "focus was lost to the page body"
    assert info["ring"], f"no visible focus on {info}"
    return info


def tab_to(page, match, key: str = "Tab", limit: int = 12) -> dict:
    """Press Tab (or Shift+Tab) until ``match(focused)``; every stop shows its focus."""
    for _ in range(limit):
        page.keyboard.press(key)
        info = focused(page)
        if match(info):
            return info
    raise AssertionError(f"{key} never reached the control")


def type_code(page, code: str) -> None:
    """Type into the focused field and press Enter: a keyboard, nothing else."""
    page.keyboard.type(code)
    with page.expect_navigation():
        page.keyboard.press("Enter")


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_keyboard_only_enrollment_totp_and_recovery(bridge, browser, lang):
    page = new_page(browser, lang)
    user = f"keys-{lang}-{int(time.time() * 1000)}"
    page.goto(bridge.authorize_url(user, lang))
    # A setup starts at its top, its instructions and QR code: no field takes the focus (on a
    # phone it would scroll them away). Tab to "Can't scan?", open it with Enter, copy the key
    # with Space.
    page.wait_for_timeout(200)  # when an autofocus would have landed
    assert page.evaluate("document.activeElement === document.body")
    tab_to(page, lambda f: f["tag"] == "summary")
    page.keyboard.press("Enter")
    assert page.locator("details.manual").get_attribute("open") is not None
    secret = page.inner_text("#totp-secret").strip()  # what the user reads off the screen
    tab_to(page, lambda f: f["tag"] == "button")
    page.keyboard.press("Space")
    page.wait_for_function("() => document.querySelector('.copied').textContent.length > 0")
    tab_to(page, lambda f: f["name"] == "otp")
    type_code(page, wrong_code(secret))
    # The error is announced (role=alert) and has focus; the next Tab is the field (the error
    # sits by it, below the QR code and its "Can't scan?").
    error = focused(page)
    assert error["role"] == "alert" and error["id"] == "error", error
    tab_to(page, lambda f: f["name"] == "otp", limit=1)
    type_code(page, totp.code_at(secret, time.time()))
    code = page.inner_text("#recovery-code").strip()
    tab_to(page, lambda f: f["name"] == "saved")
    page.keyboard.press("Space")
    tab_to(page, lambda f: f["name"] == "next")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector("#back-at-idp")

    page.goto(bridge.authorize_url(user, lang))  # TOTP
    assert focused(page)["name"] == "otp"
    type_code(page, totp.code_at(secret, time.time() + 30))
    page.wait_for_selector("#back-at-idp")

    page.goto(bridge.authorize_url(user, lang))  # recovery code, reached by keyboard
    tab_to(page, lambda f: f["id"] == "use-recovery-code")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector("input[name=recovery_code]")
    assert focused(page)["name"] == "recovery_code"
    type_code(page, "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
    assert focused(page)["role"] == "alert"
    tab_to(page, lambda f: f["name"] == "recovery_code", limit=1)
    # The whole code stays in view in the field, to be checked and corrected, down to 320 px.
    for width in (900, 360, 320):
        page.set_viewport_size({"width": width, "height": 1000})
        assert page.evaluate("() => { const f = document.querySelector('#recovery_code');"
                             " return f.scrollWidth <= f.clientWidth; }"), width
    page.set_viewport_size({"width": 900, "height": 1000})
    type_code(page, code)
    new_code = page.inner_text("#recovery-code").strip()
    assert new_code != code
    tab_to(page, lambda f: f["name"] == "saved")
    page.keyboard.press("Space")
    tab_to(page, lambda f: f["name"] == "next" and f["text"])
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_selector("#back-at-idp")
    page.context.close()


def test_the_language_switcher_by_keyboard_keeps_the_step(bridge, browser):
    """The IdP asked for Arabic; the user reads German. Tab to "Deutsch", Enter: the same setup
    (the same key) in German, and the sign-in finishes in German."""
    page = new_page(browser, "ar")
    page.goto(bridge.authorize_url(f"switch-{int(time.time() * 1000)}", "ar"))
    secret = page.text_content("#totp-secret").strip()
    link = tab_to(page, lambda f: f["tag"] == "a" and f["text"] == "Deutsch", limit=20)
    assert link["ring"]
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == [
        "de", "ltr"]
    assert page.text_content("#totp-secret").strip() == secret
    assert page.get_attribute("nav.languages [aria-current]", "lang") is None  # on its <li>
    assert page.inner_text("nav.languages [aria-current]") == "Deutsch"
    tab_to(page, lambda f: f["name"] == "otp", limit=20)
    type_code(page, totp.code_at(secret.replace(" ", ""), time.time()))
    assert page.evaluate("document.documentElement.lang") == "de"
    assert page.inner_text("h1").strip().endswith("code speichern")  # the first recovery code
    page.context.close()


def test_shift_tab_walks_back_the_same_way(bridge, browser):
    page = new_page(browser, "en")
    page.goto(bridge.authorize_url(f"back-{int(time.time() * 1000)}", "en"))
    start = tab_to(page, lambda f: True)
    forward = [tab_to(page, lambda f: True) for _ in range(2)]
    backward = [tab_to(page, lambda f: True, key="Shift+Tab") for _ in range(2)]
    assert backward == [forward[0], start]
    page.context.close()


def test_the_qr_code_has_a_text_alternative_and_the_key_can_be_copied(bridge, browser):
    page = new_page(browser, "de")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(bridge.authorize_url(f"qr-{int(time.time() * 1000)}", "de"))
    name = page.evaluate("""() => {
        const svg = document.querySelector('figure.qr svg');
        const title = svg.querySelector('title');
        return {role: svg.getAttribute('role'), label: svg.getAttribute('aria-label'),
                title: title && title.textContent};
    }""")
    assert name["title"] == "QR-Code für Ihre Authenticator-App"
    assert page.get_by_role("img", name="QR-Code für Ihre Authenticator-App").count() == 1
    page.click("details.manual summary")
    secret = page.inner_text("#totp-secret").strip()
    page.click("button[data-copy=totp-secret]")
    page.wait_for_function("() => document.querySelector('.copied').textContent.length > 0")
    assert page.evaluate("() => navigator.clipboard.readText()") == secret
    assert page.inner_text(".copied") == "In die Zwischenablage kopiert."
    # Shown in groups of four with a gap between them (as authenticator apps show keys), yet
    # selected by hand it is the unbroken key, as the copy button gives it.
    boxes = page.eval_on_selector_all("#totp-secret span", """spans => spans.map(s => {
        const box = s.getBoundingClientRect();
        return {text: s.textContent, left: box.left, right: box.right, top: box.top};
    })""")
    assert [box["text"] for box in boxes] == [secret[i:i + 4] for i in range(0, 32, 4)]
    assert all(b["left"] - a["right"] >= 5 for a, b in itertools.pairwise(boxes)
               if a["top"] == b["top"])
    page.evaluate("() => getSelection().selectAllChildren(document.getElementById('totp-secret'))")
    assert page.evaluate("() => getSelection().toString()").strip() == secret
    page.context.close()


@pytest.mark.parametrize("touch", [True, False], ids=["phone", "desktop"])
def test_on_a_phone_the_key_goes_straight_to_the_app(bridge, browser, touch):
    """A user setting up on the phone that holds the authenticator cannot scan its own screen:
    a touch screen offers the QR code's otpauth:// URI as a link, above the QR code, and the
    steps say to use it; a desktop sees neither."""
    context = browser.new_context(locale="en", viewport={"width": 390, "height": 844},
                                  has_touch=touch, is_mobile=touch)
    page = context.new_page()
    page.goto(bridge.authorize_url(f"phone-{touch}-{int(time.time() * 1000)}", "en"))
    link = page.locator(".on-this-device a")
    assert link.is_visible() is touch
    steps = page.inner_text("ol.howto")
    assert ("use the link below" in steps) is touch and ("Scan this QR code" in steps) is not touch
    if touch:
        assert link.bounding_box()["y"] < page.locator("figure.qr").bounding_box()["y"]
    href = link.get_attribute("href")
    key = page.text_content("#totp-secret")
    assert href.startswith("otpauth://totp/") and f"secret={key}" in href
    assert page_problems(page, "en", "phone" if touch else "desktop") == []
    context.close()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_sign_in_warns_before_it_ends_and_gives_more_time(bridge, browser, lang):
    """WCAG 2.2.1: two minutes before the flow's end (15 minutes) a warning is read out and a
    button gives more time; the page comes back as it was (the same key to scan)."""
    page = new_page(browser, lang, width=320)
    page.clock.install()
    page.goto(bridge.authorize_url(f"late-{lang}-{int(time.time() * 1000)}", lang))
    key = page.text_content("#totp-secret")
    assert not page.is_visible(".expiry")
    page.clock.run_for(12 * 60 * 1000)
    assert not page.is_visible(".expiry")  # not yet: three minutes are left
    page.clock.run_for(61 * 1000)
    assert page.is_visible(".expiry [aria-live]")
    assert page.inner_text(".expiry [aria-live]") == page.get_attribute(
        ".expiry [aria-live]", "data-text")
    assert page.locator("[role=alert]").count() == 0  # role=alert stays the errors' alone
    assert page_problems(page, lang, "time warning") == []
    page.fill("input[name=otp]", "123")  # half typed when the warning came
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.click(".expiry button")
    page.wait_for_selector(".expiry form", state="hidden")
    # The page stays (nothing typed is lost), the focus back in the field; its countdown and
    # form tokens are the server's new ones.
    assert [url.rsplit("/", 1)[1] for url in posts] == ["extend"]
    assert page.text_content("#totp-secret") == key
    assert page.input_value("input[name=otp]") == "123"
    assert focused(page)["name"] == "otp"
    assert int(page.get_attribute(".expiry", "data-expires-in")) > 890
    assert not page.is_visible(".expiry")
    page.clock.run_for(12 * 60 * 1000)
    assert not page.is_visible(".expiry")  # the warning comes anew, from the new end
    # Left to run out, the page says it has ended, and no longer offers more time nor a form
    # to send (each would meet a session that ended with the sign-in: a dead end). Its one
    # way on goes back to the IdP, which hears that the sign-in ended without a factor.
    page.clock.run_for(3 * 60 * 1000 + 1000)
    assert page.inner_text(".expiry [aria-live]") == page.get_attribute(
        ".expiry [aria-live]", "data-expired")
    assert not page.is_visible(".expiry button")
    assert page.locator("main form:visible").count() == 0
    # The focus was in the code field, now hidden: on the way on, not lost to the page.
    assert page.evaluate("document.activeElement.closest('[data-way-back]') !== null")
    # Nor what the forms were for (found by a user probe: the instructions stayed, and the
    # other factor's link, which led to a dead end).
    assert not page.is_visible("ol.howto") and not page.is_visible("details.manual")
    # Found by review: the heading still asked for a code over an emptied card, and the one
    # message sat in a bar at the window's foot. Now the page says only that it ended, in the
    # card, under the heading, in its title too.
    catalogue = Translations.load(Path(bridge_package.__file__).parent / "translations", [lang])
    ended = catalogue.gettext("This page expired")
    assert page.inner_text("h1") == ended and page.title().startswith(ended)
    heading = page.locator("h1").bounding_box()
    message = page.locator(".expiry [aria-live]").bounding_box()
    card = page.locator("main").bounding_box()
    assert heading["y"] + heading["height"] <= message["y"] <= heading["y"] + 200, message
    assert message["y"] + message["height"] <= card["y"] + card["height"], (message, card)
    back = page.locator("[data-way-back] a")
    assert back.is_visible() and back.inner_text() == catalogue.gettext("Return to sign-in")
    assert back.get_attribute("href").startswith(f"{bridge.callback}?") and (
        "error=access_denied" in back.get_attribute("href"))
    assert page_problems(page, lang, "time ran out") == []
    page.context.close()


def test_the_last_more_time_takes_the_button_away(bridge, browser):
    """A sign-in lives at most LONGEST_FLOW x flow_ttl: the extension that reaches it leaves the
    page as it was but with no button for more, and the next warning comes without one."""
    page = new_page(browser, "en", width=320)
    page.clock.install()
    subject = f"longest-{int(time.time() * 1000)}"
    page.goto(bridge.authorize_url(subject, "en"))
    stepup = bridge.app.extensions["stepup"]
    store, ttl = stepup.store, stepup.settings.flow_ttl
    with store.engine.begin() as conn:  # opened long ago: one more extension is the last
        params = conn.execute(sa.select(flows.c.params).where(flows.c.subject == subject)
                              ).scalar_one()
        params["opened_at"] = time.time() - (LONGEST_FLOW - 1) * ttl
        conn.execute(sa.update(flows).where(flows.c.subject == subject).values(params=params))
    page.clock.run_for((ttl - 100) * 1000)
    page.click(".expiry button")
    page.wait_for_function("() => !document.querySelector('.expiry form')")
    assert int(page.get_attribute(".expiry", "data-expires-in")) <= ttl
    assert not page.is_visible(".expiry") and page.is_visible("input[name=otp]")
    page.clock.run_for((ttl - 100) * 1000)
    assert page.is_visible(".expiry [aria-live]") and page.locator(".expiry button").count() == 0
    assert page_problems(page, "en", "time warning, no more time") == []
    page.context.close()


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (320, 568)])
def test_the_warning_comes_into_view_without_moving_the_field(bridge, browser, width, height,
                                                              tmp_path):
    """Found by review: put above the page, the warning pushed the code field out of a
    1280 x 720 window while the user typed in it, and at 320 px it came above the screen.
    Now at the window's foot, with the field the user is in kept in view above it."""
    context = browser.new_context(locale="en", viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.clock.install()
    page.goto(bridge.authorize_url(f"inview-{width}-{int(time.time() * 1000)}", "en"))
    field = page.locator("input[name=otp]")
    field.scroll_into_view_if_needed()
    field.focus()
    page.clock.run_for(13 * 60 * 1000 + 1000)
    assert page.is_visible(".expiry button")
    box, bar = field.bounding_box(), page.locator(".expiry").bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= bar["y"], (box, bar)
    for part in (".expiry [aria-live]", ".expiry button"):
        box = page.locator(part).bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= height, (part, box)
    page.screenshot(path=str(tmp_path / "warning.png"))  # to look at
    page.emulate_media(media="print")  # a printout of the page has no bar over its foot
    assert not page.is_visible(".expiry [aria-live]")
    context.close()


def test_a_warning_that_comes_late_does_not_promise_two_minutes(bridge, browser):
    """A background tab's timers run late (or a laptop slept): the warning that fires with
    half a minute left says "soon", not "in 2 minutes"; on time, it says how long is left."""
    page = new_page(browser, "en")
    page.clock.install()
    page.goto(bridge.authorize_url(f"slept-{int(time.time() * 1000)}", "en"))
    page.clock.fast_forward(14 * 60 * 1000 + 30 * 1000)  # the 13-minute timer fires once, now
    assert page.inner_text(".expiry [aria-live]") == "This page will expire soon."
    assert page.is_visible(".expiry button")
    page.context.close()
    page = new_page(browser, "en")
    page.clock.install()
    page.goto(bridge.authorize_url(f"awake-{int(time.time() * 1000)}", "en"))
    page.clock.run_for(13 * 60 * 1000 + 1000)
    assert page.inner_text(".expiry [aria-live]") == "This page will expire in 2 minutes."
    page.context.close()


def test_an_empty_code_gets_the_pages_own_message_not_the_browsers(bridge, browser):
    """The forms are ``novalidate``: Chromium's own bubble for a ``required`` field would be in
    the browser's language (English here) and fade; the bridge's alert is in the language the
    IdP asked for, stays, and takes focus."""
    page = new_page(browser, "en")
    page.goto(bridge.authorize_url(f"empty-{int(time.time() * 1000)}", "de"))
    with page.expect_navigation():
        page.click("form button.primary")
    assert focused(page)["role"] == "alert"
    assert page.inner_text("[role=alert]") == (
        "Geben Sie den 6-stelligen Code aus Ihrer Authenticator-App ein.")
    page.context.close()


def test_reload_and_back_after_a_refused_code_show_the_page_again_not_post_it(bridge, browser):
    """A refused code's page answers a post. Reload or Back would have offered to post the
    form again (Chromium: "Confirm Form Resubmission"; Back a dead end, ERR_CACHE_MISS), and
    the same wrong code would count once more against the lockout. The history entry is the
    page's own address instead: both fetch it afresh, without the old error."""
    page = new_page(browser, "en")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(f"{r.method} {r.url.partition('/flow/')[2]}")
            if "/flow/" in r.url else None)
    user = f"reload-{int(time.time() * 1000)}"
    page.goto(bridge.authorize_url(user, "en"))
    page.click("details.manual summary")
    secret = page.inner_text("#totp-secret").strip()
    for _ in range(2):
        submit_code(page, "otp", wrong_code(secret))
    assert page.locator("[role=alert]").count() == 1
    flow = page.url.partition("/flow/")[2]
    assert "/" not in flow  # the page's address, not the form's /enroll
    sent.clear()
    page.reload()
    assert sent == [f"GET {flow}"] and page.locator("[role=alert]").count() == 0
    submit_code(page, "otp", wrong_code(secret))
    sent.clear()
    page.go_back()  # to the second refusal's entry
    assert sent == [f"GET {flow}"] and page.locator("input[name=otp]").count() == 1
    submit_code(page, "otp", totp.code_at(secret, time.time()))
    page.check("input[name=saved]")
    page.click("button[name=next][value=continue]")
    page.wait_for_selector("#back-at-idp")

    page.goto(bridge.authorize_url(user, "en"))  # the recovery form has an address of its own
    page.click("#use-recovery-code")
    page.wait_for_selector("input[name=recovery_code]")
    submit_code(page, "recovery_code", "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
    sent.clear()
    page.reload()
    assert [line.split("/", 1)[-1] for line in sent] == ["recovery"]
    assert sent[0].startswith("GET ") and page.locator("input[name=recovery_code]").count() == 1
    page.context.close()


#: The contrast (WCAG 1.4.3) of the seconds counting down on the held button against the
#: button (axe-core skips a control that is aria-disabled).
COUNTDOWN_CONTRAST = """(selector) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const pill = document.querySelector(selector + ' .seconds-left');
  const [a, b] = [lum(rgb(getComputedStyle(pill).color)),
                  lum(rgb(getComputedStyle(pill.parentElement).backgroundColor))];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_after_wrong_codes_the_button_waits_as_long_as_the_page_says(bridge, browser, lang):
    """From the fourth wrong code in a row the next one is looked at only after a wait (2 s,
    then 4 …), which the error names. Until it has passed the button is held
    (``aria-disabled``), counts the seconds down, and Enter sends nothing, rather than a
    refusal that says "Too many wrong codes" and drops the typed code; then the code goes.
    The page's clock is Playwright's, so the held page is checked as long as it takes."""
    page = new_page(browser, lang)
    page.clock.install()
    user = f"wait-{lang}-{int(time.time() * 1000)}"
    secret, spent = enroll_by_page(page, bridge, user)
    page.goto(bridge.authorize_url(user, lang))
    for _ in range(3):
        submit_code(page, "otp", wrong_code(secret))
        assert page.get_attribute("form button.primary", "aria-disabled") is None
    submit_code(page, "otp", wrong_code(secret))
    posted_at = time.time()
    # Held here (Unix seconds, a millisecond on): the countdown waits for the checks.
    page.clock.pause_at((page.evaluate("Date.now()") + 1) / 1000)
    button = "form:has(input[name=otp]) button.primary"
    assert page.get_attribute(button, "aria-disabled") == "true"
    # The seconds left are counted down on the button, seen but not read out: its name stays.
    assert page.inner_text(f"{button} .seconds-left") == "2"
    name = page.inner_text(f"{button}").replace("2", "").strip()
    assert page.get_by_role("button", name=name, exact=True).count() == 1
    # What page_problems checks but axe-core (whose run needs the clock going, and which skips
    # a held control anyway): the countdown's contrast, forced colours, 320 px.
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme, forced_colors="none")
        assert page.evaluate(COUNTDOWN_CONTRAST, button) >= 4.5, scheme
        page.emulate_media(color_scheme=scheme, forced_colors="active")
        assert page.evaluate(INVISIBLE_CONTROLS) == [], scheme
    page.emulate_media(color_scheme="light", forced_colors="none")
    page.set_viewport_size({"width": 320, "height": 800})
    assert page.evaluate(HORIZONTAL_OVERFLOW) <= 0
    page.set_viewport_size({"width": 900, "height": 1000})
    page.clock.run_for(1000)
    assert page.inner_text(f"{button} .seconds-left") == "1"
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.fill("input[name=otp]", "123456")
    page.press("input[name=otp]", "Enter")
    page.wait_for_timeout(300)
    assert posts == [] and page.input_value("input[name=otp]") == "123456"
    assert focused(page)["id"] == "error"  # its "Wait 2 seconds" read out again
    page.clock.run_for(1000)
    page.wait_for_selector(f"{button}:not([aria-disabled])", timeout=3000)
    assert page.locator(f"{button} .seconds-left").count() == 0
    if lang == "en":
        assert page.inner_text("[role=alert]").endswith("You can try again now.")  # read out
    time.sleep(max(0.0, posted_at + 2.2 - time.time()))  # the server's wait, in real time
    page.fill("input[name=otp]", totp.code_at(secret, max(time.time(), spent + 30)))
    with page.expect_navigation():
        page.press("input[name=otp]", "Enter")
    assert len(posts) == 1 and page.url.startswith(bridge.callback)
    page.context.close()


def enroll_by_page(page, bridge, user: str) -> tuple[str, float]:
    """A first setup through the pages: the new authenticator's key, and a time in the step
    its first code spent."""
    page.goto(bridge.authorize_url(user, "en"))
    page.click("details.manual summary")
    secret, now = page.inner_text("#totp-secret").strip(), time.time()
    submit_code(page, "otp", totp.code_at(secret, now))
    page.check("input[name=saved]")
    page.click("button[name=next][value=continue]")
    page.wait_for_selector("#back-at-idp")
    return secret, now


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_not_me_pages_meet_wcag_22_aa(bridge, browser, lang):
    """The "this wasn't me" confirmation and its answer, in the user's language (the one
    the IdP pushed), light and dark, at 320 px; confirmed by keyboard alone."""
    stepup = bridge.app.extensions["stepup"]
    with stepup.store.begin() as tx:
        tx.set_contact(f"not-me-{lang}", "someone@example.org", lang, time.time())
        event_id = tx.audit("lockout", time.time(), subject=f"not-me-{lang}", client_id="idp")
        event = tx.find_event(event_id)
    page = new_page(browser, "en")  # the browser's language does not matter: the user's does
    page.goto(stepup.not_me.link(event))
    problems: list[str] = []
    for state in ("confirm", "locked"):
        problems.extend(page_problems(page, lang, state))
        if state == "confirm":
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "lock"
            with page.expect_navigation():  # not wait_for_load_state: the old page is loaded
                page.keyboard.press("Enter")
    assert not problems, "\n".join(problems)
    with stepup.store.begin() as tx:
        assert tx.find_event(event_id)["disowned_at"] is not None
    page.context.close()
