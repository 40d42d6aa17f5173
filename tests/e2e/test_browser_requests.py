"""What a real browser asks the bridge for during step-ups: its pages and posts, the
stylesheet and script once per browser, never an icon. Counted at the bridge's WSGI entry,
with Chromium's own cache deciding (the answers' Cache-Control, the page's icon)."""

from __future__ import annotations

import re
import time

import pytest

from bridge.factors import totp

from .accessibility import serve_bridge, submit_code
from .browser import chromium_page

pytestmark = pytest.mark.e2e
FLOW_ID = re.compile(r"/flow/[A-Za-z0-9_-]+")


def test_a_browser_asks_only_for_pages_and_posts_once_it_has_the_static_files(tmp_path):
    asked: list[str] = []
    with serve_bridge(tmp_path) as bridge, chromium_page() as page:
        served = bridge.app.wsgi_app

        def counted(environ, start_response):
            path = FLOW_ID.sub("/flow/<id>", environ["PATH_INFO"])
            asked.append(f"{environ['REQUEST_METHOD']} {path}")
            return served(environ, start_response)

        bridge.app.wsgi_app = counted
        refused: list[str] = []  # the CSP refusing the icon, say, is on the console
        page.on("console", lambda m: refused.append(m.text) if m.type == "error" else None)

        page.goto(bridge.authorize_url("counted", "en"))
        secret = page.text_content("#totp-secret").strip()
        submit_code(page, "otp", totp.code_at(secret, time.time()))
        page.check("input[name=saved]")
        with page.expect_navigation():
            page.click("button:has-text('Continue')")
        # The page's two files are fetched side by side: in either order.
        assert asked[:2] + sorted(asked[2:4]) + asked[4:] == [
            "POST /par", "GET /authorize", "GET /static/stepup.js", "GET /static/style.css",
            "POST /flow/<id>/enroll", "GET /flow/<id>", "POST /flow/<id>/saved"]
        asked.clear()

        page.goto(bridge.authorize_url("counted", "en"))
        submit_code(page, "otp", totp.code_at(secret, time.time() + 30))
        page.wait_for_url(f"{bridge.callback}?*")
        # A reload asks for the page again, not for the files it names.
        page.goto(bridge.authorize_url("counted", "en"))
        page.reload()
        assert asked == ["POST /par", "GET /authorize", "POST /flow/<id>/totp",
                         "POST /par", "GET /authorize", "GET /authorize"]
        assert page.locator("input[name=otp]").is_visible()
        assert refused == []
