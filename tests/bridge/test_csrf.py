"""CSRF tokens: on every form, checked on every action (missing, wrong, malformed, another
session's), and working behind TLS without a Referer."""

from __future__ import annotations

import pytest

from bridge.factors import totp
from tests.bridge.conftest import (
    ALL_ACTIONS,
    HTML_PAGES,
    IDP_ID,
    SESSION_COOKIE,
    Actions,
    assert_nothing_moved,
    at_stage,
    events,
    factor_rows,
    flow_of,
    flow_url,
    shown,
)
from tests.bridge.html_reader import Page


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


CSRF_CASES = [(*form, token) for form in ALL_ACTIONS for token in (None, "wrong")] + [
    (*ALL_ACTIONS[1], token) for token in ("", "x" * 10_240, "ünï\x00", "IjEyMyI.Zz9vYQ.abc")]


@pytest.mark.parametrize(("stage", "action", "field_", "token"), CSRF_CASES)
def test_missing_or_wrong_csrf_token_gets_the_400_page(act, stage, action, field_, token):
    login = at_stage(act, stage)
    before_rows, before_events = factor_rows(act), events(act)
    right = {"otp": act.code_now(login) if login.secret else "123456",
             "recovery_code": login.recovery_code, "saved": "yes", "x": ""}[field_]
    form = {field_: right}
    if token is not None:
        form["csrf_token"] = token
    response = act.client.post(f"{login.flow_url}/{action}", data=form)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "This page expired" in html and Page(html).all(role="alert")
    assert_nothing_moved(act, login, stage, before_rows, before_events)


@pytest.mark.parametrize(("body", "content_type"), [
    (b"csrf_token={token}&otp=1\xff2", "application/x-www-form-urlencoded"),
    (b'{"csrf_token": "{token}", "otp": "123456"}', "application/json"),
    (b'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n--b',
     "multipart/form-data; boundary=b"),
], ids=["not-utf-8", "json", "cut-short-multipart"])
def test_a_body_with_no_readable_form_says_so(act, body, content_type):
    """Not "this page expired": the page is fine, what was sent is no form."""
    login = at_stage(act, "totp")
    before_rows, before_events = factor_rows(act), events(act)
    token = act.csrf(login.last_page).encode()
    response = act.client.post(f"{login.flow_url}/totp", data=body.replace(b"{token}", token),
                               content_type=content_type)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "This form could not be read" in html and "expired" not in html
    assert_nothing_moved(act, login, "totp", before_rows, before_events)


def test_another_sessions_csrf_token_is_refused(act, app, clock):
    login = at_stage(act, "totp")
    other = Actions(app.test_client(), act.bridge, clock)
    stranger = other.start("stranger")
    response = act.client.post(f"{login.flow_url}/totp", data={
        "otp": act.code_now(login), "csrf_token": other.csrf(stranger.last_page)})
    assert response.status_code == 400
    assert flow_of(act, login).stage == "totp"


def test_forms_work_behind_tls_without_a_referer(make_app, clock):
    """Referrer-Policy: no-referrer means browsers send no Referer; CSRF must not need one."""
    app = make_app(issuer="https://bridge.example")
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    https = {"base_url": "https://bridge.example"}
    response, _ = act.push("tls-user")
    opened = act.client.get("/authorize", query_string={
        "client_id": IDP_ID, "request_uri": response.get_json()["request_uri"]}, **https)
    page = opened.get_data(as_text=True)
    assert "Secure" in opened.headers["Set-Cookie"]
    secret = shown(page, "totp-secret")
    posted = act.client.post(f"{flow_url(page)}/enroll", **https, data={
        "otp": totp.code_at(secret, clock()), "csrf_token": act.csrf(page)})
    assert posted.status_code == 303, posted.get_data(as_text=True)


def test_the_session_cookie_is_set_once_per_sign_in(act, clock):
    """/authorize writes the session (binding, flow, and the CSRF token's session half) in one
    cookie with the first page; the page again and the code post need not write it again."""
    enrolled, _ = act.enroll("once")
    clock.advance(30)
    response, _ = act.push("once")
    uri = response.get_json()["request_uri"]
    browser = act.client.application.test_client()  # a browser with no session yet
    opened = browser.get(f"/authorize?client_id={IDP_ID}&request_uri={uri}")
    assert f"{SESSION_COOKIE}=" in opened.headers.get("Set-Cookie", "")
    flow = flow_url(opened.get_data(as_text=True))
    page = browser.get(flow)
    assert page.status_code == 200 and "Set-Cookie" not in page.headers
    posted = browser.post(f"{flow}/totp", data={
        "otp": totp.code_at(enrolled.secret, clock()),
        "csrf_token": act.csrf(page.get_data(as_text=True))})
    assert posted.status_code == 303 and "code=" in posted.headers["Location"]
    assert "Set-Cookie" not in posted.headers
