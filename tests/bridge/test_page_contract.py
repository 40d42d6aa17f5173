"""The automation contract (DESIGN.md "Challenge pages") on every page a user can meet:
field names, ids, the QR code, the new-code page and its download, the locked page."""

from __future__ import annotations

import re

import pytest

from bridge.factors import recovery, totp
from tests.bridge.conftest import HTML_PAGES, shown
from tests.bridge.html_reader import Element, Page

SINGLE_USE = "This code works only once"


def test_the_walk_met_every_page_with_the_expected_status(pages):
    statuses = {name: response.status_code for name, response in pages.items()}
    assert statuses == {
        "enroll": 200, "enroll error": 400, "first code": 200, "download": 200,
        "saved error": 400, "totp": 200, "totp error": 400, "recovery": 200,
        "recovery error": 400, "rotation": 200, "rotation download": 200, "reenroll": 200,
        "locked": 403, "not enrolled": 403, "incomplete link": 400, "expired link": 400,
        "unknown flow": 404, "csrf": 400,
    }


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
    expected = totp.qr_code(uri).svg_inline(scale=5, border=4)  # read back in test_totp
    path = re.search(r' d="([^"]+)"', expected).group(1)
    assert f' d="{path}"' in html, "the QR code does not encode the expected otpauth URI"
    # On a touch screen the same URI is a link (the app is on the device showing the page).
    assert [a.attrs["href"] for a in page.all("a") if a.attrs.get("href", "").startswith(
        "otpauth:")] == [uri]
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


def test_the_saved_box_error_sits_by_the_box_and_names_it(pages):
    """The error is about the box: it comes just before it in the same form (Tab goes from the
    error to the box; on a phone it is not a screen above it), and the box points to it."""
    page = Page(pages["saved error"].get_data(as_text=True))
    error = page.one(role="alert")
    box = page.one("input", name="saved")
    assert error.form == box.form is not None
    order = page.elements.index
    assert order(error) < order(box) and not [
        e for e in page.elements[order(error) + 1:order(box)] if e.tag in ("input", "button")]
    assert box.attrs.get("aria-describedby") == "error" and box.attrs.get("aria-invalid") == "true"
    unticked = Page(pages["first code"].get_data(as_text=True)).one("input", name="saved")
    assert "aria-invalid" not in unticked.attrs


def test_rotation_page_says_when_the_old_code_goes_and_offers_a_new_authenticator(pages):
    """The old code works until the user confirms (rotation loses nothing): the page says it
    stops working then, not that it already has."""
    html = pages["rotation"].get_data(as_text=True)
    assert "Your previous code no longer works once you continue." in html
    assert "the code below replaces it once you continue" in html
    assert "has been replaced" not in html
    assert "Save your new recovery code" in html
    page = Page(html)
    assert page.one("button", name="next", value="reenroll")


def test_single_use_sentence_on_every_page_that_shows_a_code(pages):
    for name in HTML_PAGES:
        html = pages[name].get_data(as_text=True)
        if 'id="recovery-code"' in html:
            assert SINGLE_USE in html, name
    for name in ("download", "rotation download"):
        assert SINGLE_USE in pages[name].get_data(as_text=True), name


@pytest.mark.parametrize(("download", "page", "account"), [
    ("download", "first code", "Pat Smith"), ("rotation download", "rotation", "pat@example")])
def test_download_is_a_plain_text_attachment_with_the_code(pages, download, page, account):
    response = pages[download]
    code = shown(pages[page].get_data(as_text=True), "recovery-code")
    assert response.mimetype == "text/plain"
    assert response.headers["Content-Disposition"].startswith("attachment")
    # Which service and day (found by a user probe: every file was "recovery-code.txt").
    assert re.fullmatch(r'attachment; filename="Stepup-recovery-code-\d{4}-\d\d-\d\d\.txt"',
                        response.headers["Content-Disposition"])
    assert "no-store" in response.headers["Cache-Control"]
    assert code in response.get_data(as_text=True)
    assert f"For {account}" in response.get_data(as_text=True)  # whose code, as printed


@pytest.mark.parametrize(("download", "page"), [("download", "first code"),
                                               ("rotation download", "rotation")])
def test_the_printed_page_says_for_what_and_from_when_as_the_file_does(pages, download, page):
    """Printed, the page has no address bar: the service and the date are on it, as in the
    file (the account is the page's own line)."""
    label = Page(pages[page].get_data(as_text=True)).one("p", class_="print-only").text
    service, date = (part.strip() for part in label.split("·"))
    text = pages[download].get_data(as_text=True)
    assert service.endswith(" recovery code") and text.startswith(service + "\n")
    assert date.startswith("Created on ") and date in text


def test_the_file_never_says_the_old_code_is_dead_before_the_user_confirms(pages):
    """DESIGN.md "Rotation loses nothing": the old code works until the user confirms they
    saved the new one. The file is saved before that, and may outlive an expired sign-in, so
    it says so (a user who read "no longer works" would throw the only working code away)."""
    rotation = pages["rotation download"].get_data(as_text=True)
    assert "no longer works" not in rotation
    assert "Until then, your previous code still works." in rotation
    first = pages["download"].get_data(as_text=True)  # a new user had no previous code
    assert "previous code" not in first


def test_locked_page_returns_to_sign_in(pages):
    page = Page(pages["locked"].get_data(as_text=True))
    assert not page.all("input", name="otp") and not page.all("input", name="recovery_code")
    form = page.one("form")
    assert form.attrs["action"].endswith("/cancel")
    assert "Return to sign-in" in form.text
    assert page.one("button", type="submit").attrs["class"] == "primary"  # the way on


def test_a_timed_out_form_sends_the_user_back_to_the_sign_in_page(pages):
    """Mostly a page left open past the sign-in's end: a reload would only say so again."""
    text = pages["csrf"].get_data(as_text=True)
    assert "Go back to your sign-in page and start again." in text
    assert "reload" not in text
    assert "allow cookies for this site" in text  # the same page every time: no cookie kept


def test_cancel_says_what_it_throws_away_during_setup(pages):
    """During a first enrollment "cancel" discards the authenticator just added; once it was
    checked (the first recovery code's page) the user is told their app's new entry goes too."""
    def cancel(name: str) -> tuple[str, str]:
        form = Page(pages[name].get_data(as_text=True)).one("form", class_="cancel")
        notes = [p.text.strip() for p in Page(pages[name].get_data(as_text=True)).all(
            "p", id="cancel-note")]
        return form.text.strip(), " ".join(notes)

    described = Page(pages["first code"].get_data(as_text=True)).one(
        "button", **{"aria-describedby": "cancel-note"})  # read out with the button
    assert described.text.strip() == "Cancel setup"
    label, note = cancel("first code")
    assert label.endswith("Cancel setup") and note.startswith(
        "If you cancel now, the entry you just added to your authenticator app won't work")
    assert label.startswith(note)  # said in the cancel area, before the button
    assert cancel("enroll") == ("Cancel setup", "")  # nothing was added yet that would break
    assert cancel("totp") == cancel("rotation") == ("Cancel and go back", "")


def test_a_page_with_no_way_on_offers_to_go_back(pages):
    """An expired link or an unknown sign-in: the bridge knows no way back, so the page offers
    the browser's (stepup.js shows it where there is a page to go back to)."""
    for name in ("expired link", "unknown flow", "csrf", "incomplete link"):
        page = Page(pages[name].get_data(as_text=True))
        [offer] = page.all("p", **{"data-history-back": True})
        assert "hidden" in offer.attrs and offer.text.strip() == "Go back", name


def test_the_bridge_s_own_address_is_no_dead_end_to_go_back_from(client):
    page = Page(client.get("/").get_data(as_text=True))
    assert "nothing to do here" in page.one("p", role="status").text
    assert not page.all("p", **{"data-history-back": True})


def test_the_locked_page_names_the_lock_alike_in_the_tab_and_the_heading(pages):
    page = Page(pages["locked"].get_data(as_text=True))
    assert page.one("title").text.startswith("Two-step verification is locked")
    assert page.one("h1").text == "Two-step verification is locked"


def test_help_is_linked_in_the_same_place_on_every_page_when_configured(make_act):
    """WCAG 3.2.6 consistent help: ``STEPUP_HELP_URL`` in every page's footer (a sign-in page,
    a refusal, the not-me confirmation alike); without it, no empty link."""
    act = make_act(help_url="mailto:it-help@example.com")
    pages = [act.start("hana").last_page,
             act.client.get("/authorize?client_id=x&request_uri=y").get_data(as_text=True),
             act.client.get("/no-such-page").get_data(as_text=True)]
    for html in pages:
        footer = Page(html).one("footer")
        [link] = [e for e in Page(html).all("a") if e.attrs.get("href", "").startswith("mailto:")]
        assert link.attrs["href"] == "mailto:it-help@example.com" and link.text == "Get help"
        assert "Get help" in footer.text  # in the footer, where it is on every page
    plain = make_act().start("ivo").last_page
    assert "Get help" not in plain and "mailto:" not in plain


@pytest.mark.parametrize(("issuer", "name"), [
    ("Société Générale", "Societe-Generale-recovery-code-"), ("東京", "recovery-code-")])
def test_the_file_name_is_plain_ascii_whatever_the_service_is_called(make_act, issuer, name):
    act = make_act(totp_issuer=issuer)
    login = act.start("zoe")
    login.secret = shown(login.last_page, "totp-secret")
    act.post(login, "enroll", otp=act.code_now(login))
    saved = act.client.get(f"{login.flow_url}/recovery-code.txt")
    disposition = saved.headers["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="{name}') and disposition.isascii()
    assert saved.get_data(as_text=True).startswith(f"{issuer} recovery code")


def test_the_code_is_dated_when_it_was_made_not_when_it_is_shown(act, clock):
    """Found by review: a reload, the file or a print a minute later each gave another time."""
    login = act.start("yan")
    login.secret = shown(login.last_page, "totp-secret")
    act.post(login, "enroll", otp=act.code_now(login))
    made = Page(login.last_page).one("p", class_="print-only").text.split("·")[1].strip()
    clock.advance(125)
    again = Page(act.client.get(login.flow_url).get_data(as_text=True))
    assert again.one("p", class_="print-only").text.split("·")[1].strip() == made
    assert made in act.client.get(f"{login.flow_url}/recovery-code.txt").get_data(as_text=True)
