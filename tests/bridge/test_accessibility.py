"""What a screen reader needs on every page: a label for each field, errors announced in
``role="alert"``, a language, a title and a heading."""

from __future__ import annotations

import re

from tests.bridge.conftest import ERROR_PAGES, HTML_PAGES
from tests.bridge.html_reader import Page


def test_every_input_has_a_label(pages):
    for name in HTML_PAGES:
        page = Page(pages[name].get_data(as_text=True))
        label_targets = {e.attrs.get("for") for e in page.all("label")}
        for field_ in page.all("input") + page.all("textarea") + page.all("select"):
            if field_.attrs.get("type") in ("hidden", "submit", "button"):
                continue
            assert field_.in_label or (field_.attrs.get("id") in label_targets), (
                f"unlabelled {field_.attrs.get('name')} on {name}")


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


def test_a_page_with_an_error_says_so_in_its_title(pages):
    """The title is the first thing a screen reader reads of a new page (WCAG 2.4.2, 3.3.1)."""
    for name in ("enroll error", "saved error", "totp error", "recovery error"):
        title = Page(pages[name].get_data(as_text=True)).all("title")[0].text
        assert title.startswith("Error: "), (name, title)
    for name in ("enroll", "first code", "totp", "recovery"):
        title = Page(pages[name].get_data(as_text=True)).all("title")[0].text
        assert "Error" not in title, (name, title)


def test_the_enrollment_error_sits_by_the_code_field(pages):
    """Focus lands on the error; the next Tab must be the field it is about, not the QR
    code's "Can't scan?" and "Copy key" above it."""
    html = pages["enroll error"].get_data(as_text=True)
    between = html[html.index('id="error"'):html.index('<input id="otp"')]
    assert html.index('id="totp-secret"') < html.index('id="error"')
    assert not re.search(r"<(a|button|summary|details|input(?![^>]*type=\"hidden\"))\b",
                         between), between
