"""A flow belongs to the browser that opened it: unknown flow ids and another browser's flow
get a 404 page that shows nothing, and each layer of the binding holds on its own."""

from __future__ import annotations

import pytest

from tests.bridge.conftest import (
    ALL_ACTIONS,
    Actions,
    assert_nothing_moved,
    at_stage,
    events,
    factor_rows,
    flow_of,
)
from tests.bridge.html_reader import Page

FLOW_IDS = ["no-such-flow", "A" * 32, "x" * 65, "x" * 5000, "%00", "%C3%BC", "..%2F..%2Fetc"]


@pytest.mark.parametrize("flow_id", FLOW_IDS)
def test_unknown_flow_id_gets_a_404_page(act, flow_id):
    login = at_stage(act, "totp")
    for action in ("totp", "recovery", "enroll", "reenroll", "saved", "cancel"):
        response = act.client.post(f"/flow/{flow_id}/{action}", data={
            "otp": "123456", "saved": "yes", "csrf_token": act.csrf(login.last_page)})
        assert response.status_code == 404, action
        assert Page(response.get_data(as_text=True)).all(role="alert")
    assert flow_of(act, login).stage == "totp"


@pytest.mark.parametrize("path", ["", "/recovery", "/recovery-code.txt"])
def test_unknown_flow_id_get_is_404(act, path):
    assert act.client.get(f"/flow/no-such-flow{path}").status_code == 404


@pytest.mark.parametrize(("stage", "action", "field_"), ALL_ACTIONS)
def test_another_browsers_flow_id_gets_a_404(act, app, clock, stage, action, field_):
    login = at_stage(act, stage)
    before_rows, before_events = factor_rows(act), events(act)
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
    assert_nothing_moved(act, login, stage, before_rows, before_events)


@pytest.mark.parametrize("stage", ["enroll", "enroll_saved", "totp", "rotate", "reenroll"])
@pytest.mark.parametrize("path", ["", "/recovery", "/recovery-code.txt"])
def test_another_browser_cannot_see_a_flow(act, app, clock, stage, path):
    login = at_stage(act, stage)
    other = app.test_client()
    response = other.get(f"{login.flow_url}{path}")
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert 'id="totp-secret"' not in body and 'id="recovery-code"' not in body
    assert login.secret not in body


def test_a_session_that_lists_the_flow_but_lacks_its_binding_gets_404(act, app):
    """Each layer alone holds: the flow is bound to the browser that opened it."""
    login = at_stage(act, "totp")
    other = app.test_client()
    with other.session_transaction() as session:
        session["flows"] = [login.flow_url.rsplit("/", 1)[1]]
    assert other.get(login.flow_url).status_code == 404


def test_a_session_with_the_binding_but_not_the_flow_listed_gets_404(act, app):
    login = at_stage(act, "totp")
    with act.client.session_transaction() as session:
        binding = session["binding"]
    other = app.test_client()
    with other.session_transaction() as session:
        session["binding"] = binding
        session["flows"] = []
    assert other.get(login.flow_url).status_code == 404
