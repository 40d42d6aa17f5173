"""Bad values on every form (empty, overlong, non-ASCII, NUL, control characters, not UTF-8,
a body over the limit): a clear 4xx page, never a 500, nothing half-written."""

from __future__ import annotations

import pytest

from tests.bridge.conftest import (
    FORMS,
    assert_nothing_moved,
    at_stage,
    events,
    factor_rows,
    flow_of,
    returning,
)
from tests.bridge.html_reader import Page

BAD_VALUES = {
    "empty": "",
    "overlong": "7" * 10_240,
    "non-ascii": "ünïcødé ✓ 一二三四五六",
    "arabic digits": "١٢٣٤٥٦",
    "nul bytes": "123\x00456",
    "only nul": "\x00" * 6,
    "control": "\r\n\t\x1b[31m",
}


@pytest.mark.parametrize(("stage", "action", "field_"), FORMS)
@pytest.mark.parametrize("value", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_bad_values_get_a_clear_4xx_page_and_change_nothing(act, stage, action, field_,
                                                            value):
    login = at_stage(act, stage)
    before_rows, before_events = factor_rows(act), events(act)
    response = act.post(login, action, **{field_: value})
    assert 400 <= response.status_code < 500
    html = response.get_data(as_text=True)
    assert Page(html).all(role="alert"), "no role=alert on the error page"
    assert "Traceback" not in html
    assert_nothing_moved(act, login, stage, before_rows, before_events)


@pytest.mark.parametrize(("stage", "action", "field_"), FORMS)
def test_invalid_utf8_gets_a_4xx_page(act, stage, action, field_):
    login = at_stage(act, stage)
    before_rows, before_events = factor_rows(act), events(act)
    token = act.csrf(login.last_page)
    body = f"{field_}=%FF%FE%00%C3&csrf_token={token}".encode()
    response = act.client.post(f"{login.flow_url}/{action}", data=body,
                               content_type="application/x-www-form-urlencoded")
    assert 400 <= response.status_code < 500
    assert_nothing_moved(act, login, stage, before_rows, before_events)


def test_a_request_body_over_the_limit_gets_a_413_page(act):
    login = at_stage(act, "totp")
    token = act.csrf(login.last_page)
    response = act.client.post(f"{login.flow_url}/totp",
                               data={"otp": "1" * 100_000, "csrf_token": token})
    assert response.status_code == 413
    assert Page(response.get_data(as_text=True)).all(role="alert")
    assert flow_of(act, login).stage == "totp"


def test_a_wrong_recovery_code_stays_in_the_field_to_be_corrected(act, clock):
    """One mistyped character must not mean typing all 25 again (WCAG 3.3.7); the page is
    never stored (no-store)."""
    first, _ = act.enroll("rhea")
    clock.advance(30)
    login = returning(act, "rhea", first.secret)
    act.client.get(f"{login.flow_url}/recovery")
    typo = first.recovery_code[:-1] + ("A" if first.recovery_code[-1] != "A" else "B")
    response = act.post(login, "recovery", recovery_code=typo)
    assert response.status_code == 400
    page = Page(response.get_data(as_text=True))
    assert page.one("input", name="recovery_code").attrs["value"] == typo
    assert response.headers["Cache-Control"] == "no-store"
