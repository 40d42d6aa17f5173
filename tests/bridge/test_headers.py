"""Security headers on every page (CSP without inline script or style, frame-ancestors,
no-store, no-referrer, HSTS), the session cookie's attributes, and what the browser may keep
(static files named by their digest, the icon in the page)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from flask import Flask

from bridge.edge import StaticFiles
from tests.bridge.conftest import HTML_PAGES, SESSION_COOKIE, Actions, is_callback, returning
from tests.bridge.html_reader import Page


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
        assert headers.get("X-Frame-Options") == "DENY", name
        assert headers.get("Cross-Origin-Opener-Policy") == "same-origin", name
        assert headers.get("Strict-Transport-Security", "").startswith("max-age="), name
        for header in (*SECURITY, "Cache-Control", "X-Request-ID"):
            assert len(headers.getlist(header)) == 1, (name, header)


SECURITY = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options",
            "Referrer-Policy", "Cross-Origin-Opener-Policy", "Strict-Transport-Security")


def test_an_answer_that_sets_its_own_caching_keeps_it(client):
    """no-store is the default, not an override: the public keys may be cached."""
    response = client.get("/jwks")
    assert response.headers.getlist("Cache-Control") == ["public, max-age=300"]
    assert all(len(response.headers.getlist(header)) == 1 for header in SECURITY)


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


def _session_cookie(response, name: str = "__Host-stepup_session") -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(f"{name}=")]
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
    # __Host- (RFC 6265bis §4.1.3.2): a browser keeps it only Secure, for Path=/, no Domain
    assert "path=/;" in cookie + ";" and "domain" not in attributes


def _code_post_with_cookies(act, clock, cookie_header):
    """A returning user's code, posted by a browser that sends ``cookie_header(value)``, the
    value being the session cookie the bridge set for this sign-in."""
    enrolled, _ = act.enroll("rae")
    clock.advance(30)
    login = returning(act, "rae", enrolled.secret)
    value = act.client.get_cookie(SESSION_COOKIE).value
    browser = act.client.application.test_client(use_cookies=False)
    return browser.post(f"{login.flow_url}/totp", headers={"Cookie": cookie_header(value)},
                        data={"otp": act.code_now(login), "csrf_token": act.csrf(login.last_page)})


@pytest.mark.parametrize("planted", ["junk", "a session of its own"])
def test_a_cookie_planted_by_a_sibling_host_does_not_break_the_sign_in(act, clock, planted):
    """A sibling subdomain can set ``stepup_session`` with ``Domain=`` the parent and a longer
    Path, which the browser sends first (found by review: every code was then refused as an
    expired page). It cannot set a ``__Host-`` cookie, the one read."""
    other = act.client.application.test_client()
    pushed, _ = act.push("mallory")  # the attacker's own sign-in: a signed session
    other.get(f"/authorize?client_id=idp&request_uri={pushed.get_json()['request_uri']}")
    own = other.get_cookie(SESSION_COOKIE).value if planted != "junk" else "junk"
    response = _code_post_with_cookies(
        act, clock, lambda value: f"stepup_session={own}; {SESSION_COOKIE}={value}")
    assert is_callback(response), response.get_data(as_text=True)


def test_a_sign_in_begun_under_the_unprefixed_name_goes_on(act, clock):
    """A rolling upgrade: a node of the release before the prefix set ``stepup_session``."""
    response = _code_post_with_cookies(act, clock, lambda value: f"stepup_session={value}")
    assert is_callback(response), response.get_data(as_text=True)


def test_session_cookie_is_not_secure_for_a_local_http_issuer(make_app, clock):
    app = make_app(issuer="http://127.0.0.1:5000")
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    response, _ = act.push("rae")
    uri = response.get_json()["request_uri"]
    page = act.client.get(f"/authorize?client_id=idp&request_uri={uri}")
    cookie = _session_cookie(page, "stepup_session").lower()  # no __Host-: it requires Secure
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie
    assert "Strict-Transport-Security" not in page.headers


def test_static_files_are_kept_by_the_browser_only_under_their_contents_digest(pages, client):
    """Each page names its stylesheet and script with the digest of what they hold: the
    browser keeps that URL for a year and asks no more (else two conditional requests per
    page). Another version (a page from a node of another release) or none is revalidated
    every time: a browser never keeps a file under a URL naming other content."""
    page = Page(pages["totp"].get_data(as_text=True))
    named = [e.attrs["href"] for e in page.all("link") if e.attrs.get("rel") == "stylesheet"]
    named += [e.attrs["src"] for e in page.all("script")]
    static = Path(client.application.static_folder)
    assert len(named) == 2, named
    for url in named:
        path, _, version = url.partition("?v=")
        body = (static / path.removeprefix("/static/")).read_bytes()
        assert version == hashlib.sha256(body).hexdigest()[:16], url
        kept = client.get(url)
        assert kept.status_code == 200 and kept.data == body and kept.content_type
        assert kept.headers.getlist("Cache-Control") == [
            "public, max-age=31536000, immutable"], url
        assert kept.headers["ETag"] == f'"{version}"'  # the content's, not its time and size
        again = client.get(url, headers={"If-None-Match": f'"{version}"'})
        assert again.status_code == 304 and again.headers["Cache-Control"] == \
            kept.headers["Cache-Control"]
        for other in (path, f"{path}?v={version[::-1]}", f"{path}?v=", f"{path}?v=%20"):
            assert client.get(other).headers.getlist("Cache-Control") == ["no-cache"], other
        assert all(len(kept.headers.getlist(header)) == 1 for header in SECURITY)
    for missing in ("/static/nothing.css", "/static/nothing.css?v=x", "/static/../app.py"):
        assert client.get(missing).status_code == 404, missing


def test_static_files_changed_under_a_running_node_are_never_kept_under_the_old_name(tmp_path):
    """An upgrade installed before the restart, or a page from a node of another release:
    the URL a page names is kept only while it names what is served, and a revalidation of
    other content is never confirmed (the ETag is the content's digest)."""
    files = StaticFiles(str(tmp_path))
    (tmp_path / "img").mkdir()
    for name in ("a.css", "img/b.svg"):
        (tmp_path / name).write_text("one")
        named = files.version(name)  # what the running node's pages say
        (tmp_path / name).write_text("two")
        new = hashlib.sha256(b"two").hexdigest()[:16]
        for query, kept in ((f"v={named}", False), ("", False), (f"v={new}", True)):
            with Flask(__name__).test_request_context(f"/static/{name}?{query}", headers={
                    "If-None-Match": f'"{named}"'}):
                answer = files.answer(name)
            assert answer.status_code == 200 and answer.get_etag() == (new, False)
            assert answer.cache_control.immutable is kept, (name, query)
            assert (answer.cache_control.max_age == 365 * 24 * 3600) is kept
            assert answer.cache_control.no_cache is not kept
        assert files.version(name) == named  # pages go on naming what they named


def test_every_page_names_its_icon_so_no_browser_asks_for_favicon_ico(pages):
    csp = pages["totp"].headers["Content-Security-Policy"]
    assert "img-src 'self' data:" in csp  # what the icon needs
    for name in HTML_PAGES:
        icons = [e.attrs["href"] for e in Page(pages[name].get_data(as_text=True)).all("link")
                 if e.attrs.get("rel") == "icon"]
        assert len(icons) == 1 and icons[0].startswith("data:image/svg+xml,"), name


def test_a_planted_unprefixed_cookie_is_not_carried_into_a_new_sign_in(act, app):
    """Found by review: a browser with no prefixed cookie yet opened its sign-in in the
    session a sibling host planted under the old name, its binding and flows carried over."""
    attacker = app.test_client()
    pushed, _ = act.push("mallory")
    attacker.get(f"/authorize?client_id=idp&request_uri={pushed.get_json()['request_uri']}")
    planted = attacker.get_cookie(SESSION_COOKIE).value
    victim = app.test_client(use_cookies=False)
    pushed, _ = act.push("rae")
    opened = victim.get(f"/authorize?client_id=idp&request_uri={pushed.get_json()['request_uri']}",
                        headers={"Cookie": f"stepup_session={planted}"})
    assert opened.status_code == 200
    cookie = _session_cookie(opened).split(";", 1)[0].split("=", 1)[1]
    serializer = app.session_interface.get_signing_serializer(app)
    mine, theirs = serializer.loads(cookie), serializer.loads(planted)
    assert mine["binding"] != theirs["binding"] and len(mine["flows"]) == 1
