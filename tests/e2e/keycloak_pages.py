"""What a user does on Keycloak's and the bridge's pages, shared by the Keycloak e2e tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from bridge.factors import totp

from .browser import chromium_page, screenshot

MULTI_FACTOR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"


def password_step(page, world, username: str, rp: str | None = None, query: str = "") -> None:
    """The RP sends the browser to Keycloak, which asks for the password first."""
    page.goto(f"{rp or world.rp}/login{query}")
    page.fill("#username", username)
    page.fill("#password", f"{username}-pw")
    page.click("#kc-login")


def rp_claims(page) -> dict:
    try:
        page.wait_for_url("**/callback**")
    except PlaywrightTimeout:
        raise AssertionError(f"no RP callback; at {page.url}:\n{page.inner_text('body')}") from None
    return json.loads(page.inner_text("body"))["id_token_claims"]


def enroll(page, world, username: str, shots: str | None = None) -> tuple[str, str]:
    """Password, then enrollment at the bridge; returns (TOTP secret, recovery code)."""
    password_step(page, world, username)
    return enroll_at_bridge(page, world, shots)


def enroll_at_bridge(page, world, shots: str | None = None) -> tuple[str, str]:
    """Enrollment at the bridge, from its first page; returns (TOTP secret, recovery code)."""
    page.wait_for_selector("#totp-secret", state="attached")
    assert page.url.startswith(world.bridge)
    if shots:
        screenshot(page, f"{shots}-enroll")
    secret = page.text_content("#totp-secret").strip()
    page.fill("input[name=otp]", totp.code_at(secret, time.time()))
    page.click("text=Verify and continue")
    code = page.inner_text("#recovery-code").strip()
    if shots:
        screenshot(page, f"{shots}-recovery-code")
    page.check("input[name=saved]")
    page.click("button:has-text('Continue')")
    return secret, code


def enrolled_user(world, username: str) -> tuple[str, str]:
    """A new Keycloak user who has enrolled at the bridge (in a browser of their own)."""
    world.add_user(username)
    with chromium_page() as page:
        secret, code = enroll(page, world, username)
        rp_claims(page)
    return secret, code


def rogue_assertion_is_refused(page, world, victim: str, secret: str,
                               login: Callable[[], None]) -> None:
    """A rogue bridge (the proxy rewrites the pushed login_hint) shows the victim's challenge
    to whoever ``login`` signs in and asserts the victim for them: Keycloak refuses it."""
    world.proxy.rewrite_login_hint = world.users[victim]
    try:
        login()
        page.wait_for_selector("input[name=otp]")
        page.fill("input[name=otp]", totp.code_at(secret, time.time() + 30))
        page.click("button:has-text('Verify')")
        page.wait_for_url(f"{world.keycloak}/**")
        assert "could not be completed" in page.inner_text("body")
        assert "/callback" not in page.url
    finally:
        world.proxy.rewrite_login_hint = None
