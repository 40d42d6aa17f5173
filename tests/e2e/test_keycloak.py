"""Keycloak 26 hands off to the bridge: a real Keycloak with the authenticator jar, the bridge
under gunicorn, an authlib relying party and real Chromium, from password to the RP's token.

Each test signs in a user of its own in a fresh browser context (no Keycloak SSO session).
Screenshots of what users see land in docs/screenshots/keycloak-*.png.
"""

from __future__ import annotations

import time

import pytest

from bridge.factors import totp

from .browser import chromium_page, enter_recovery_code, screenshot
from .keycloak_pages import (
    MULTI_FACTOR,
    enroll,
    enrolled_user,
    password_step,
    rogue_assertion_is_refused,
    rp_claims,
)

pytestmark = pytest.mark.e2e


def test_enrollment_then_totp_login(world):
    world.add_user("kc-alice")
    with chromium_page() as page:
        secret, _ = enroll(page, world, "kc-alice", shots="keycloak-01")
        claims = rp_claims(page)
        screenshot(page, "keycloak-02-rp-token")
    assert claims["preferred_username"] == "kc-alice"
    assert claims["stepup_amr"] == "otp"
    assert claims["stepup_acr"] == MULTI_FACTOR
    assert abs(claims["stepup_auth_time"] - time.time()) < 120
    with chromium_page() as page:
        password_step(page, world, "kc-alice")
        page.wait_for_selector("input[name=otp]")
        screenshot(page, "keycloak-03-totp")
        page.fill("input[name=otp]", totp.code_at(secret, time.time() + 30))
        page.click("button:has-text('Verify')")
        assert rp_claims(page)["stepup_amr"] == "otp"


def test_recovery_code_login_with_rotation(world):
    _, first_code = enrolled_user(world, "kc-bob")
    with chromium_page() as page:
        password_step(page, world, "kc-bob")
        enter_recovery_code(page, first_code)
        new_code = page.inner_text("#recovery-code").strip()
        assert new_code != first_code
        screenshot(page, "keycloak-04-new-recovery-code")
        page.check("input[name=saved]")
        page.click("button:has-text('Continue')")
        assert rp_claims(page)["stepup_amr"] == "rc"
    with chromium_page() as page:  # the old code is spent, the new one works
        password_step(page, world, "kc-bob")
        enter_recovery_code(page, first_code)
        assert "didn't work" in page.inner_text("[role=alert]")
        page.fill("input[name=recovery_code]", new_code)
        page.click("text=Verify recovery code")
        page.check("input[name=saved]")
        page.click("button:has-text('Continue')")
        assert rp_claims(page)["stepup_amr"] == "rc"


def test_wrong_code_then_right_one(world):
    secret, _ = enrolled_user(world, "kc-carol")
    with chromium_page() as page:
        password_step(page, world, "kc-carol")
        good = {totp.code_at(secret, time.time() + d) for d in (-30, 0, 30, 60)}
        page.fill("input[name=otp]", next(c for c in ("123456", "654321") if c not in good))
        page.click("button:has-text('Verify')")
        assert "didn't work" in page.inner_text("[role=alert]")
        page.fill("input[name=otp]", totp.code_at(secret, time.time() + 30))
        page.click("button:has-text('Verify')")
        assert rp_claims(page)["stepup_amr"] == "otp"


def test_locked_user(world):
    secret, _ = enrolled_user(world, "kc-dave")
    with chromium_page() as page:
        password_step(page, world, "kc-dave")
        good = {totp.code_at(secret, time.time() + d) for d in (-30, 0, 30, 60)}
        wrong = next(c for c in ("111111", "222222") if c not in good)
        for _ in range(3):  # STEPUP_LOCKOUT_LIMIT=3
            page.fill("input[name=otp]", wrong)
            page.click("button:has-text('Verify')")
        assert "locked" in page.inner_text("[role=alert]")
        page.click("text=Return to sign-in")
        page.wait_for_url(f"{world.keycloak}/**")
        assert "cancelled or is locked" in page.inner_text("body")
        screenshot(page, "keycloak-05-locked-back-at-keycloak")
    with chromium_page() as page:  # the next sign-in is refused at once
        password_step(page, world, "kc-dave")
        assert page.inner_text("h1") == "Two-step verification is locked"


def test_user_cancels_at_the_bridge(world):
    world.add_user("kc-erin")
    with chromium_page() as page:
        password_step(page, world, "kc-erin")
        page.wait_for_selector("#totp-secret", state="attached")
        page.click("text=Cancel setup")  # the enrollment page's cancel
        page.wait_for_url(f"{world.keycloak}/**")
        assert "cancelled or is locked" in page.inner_text("body")
        assert "/callback" not in page.url


def test_assertion_for_another_user_is_refused(world):
    """A rogue bridge asserts kc-grace for kc-frank."""
    frank = world.add_user("kc-frank")
    secret, _ = enrolled_user(world, "kc-grace")
    assert frank != world.users["kc-grace"]
    with chromium_page() as page:
        rogue_assertion_is_refused(page, world, "kc-grace", secret,
                                   lambda: password_step(page, world, "kc-frank"))
        screenshot(page, "keycloak-06-sub-mismatch")


def test_bridge_down_fails_closed_and_counts_no_failed_login(world):
    """An outage is no failed login of the user's: with brute-force detection disabling an
    account after two failures, three tries while the bridge is down leave it usable (before,
    each counted, and the account was disabled until the help desk enabled it)."""
    world.add_user("kc-heidi")
    world.master.update_realm("acme", {"bruteForceProtected": True, "permanentLockout": True,
                                       "failureFactor": 2})
    world.proxy_server.stop()
    try:
        for attempt in range(3):
            with chromium_page() as page:
                password_step(page, world, "kc-heidi")
                page.wait_for_selector("text=unavailable")
                assert "The second-factor service is unavailable" in page.inner_text("body")
                assert page.url.startswith(world.keycloak)
                if attempt == 0:
                    screenshot(page, "keycloak-07-bridge-down")
    finally:
        world.proxy_server.start()
        world.master.update_realm("acme", {"bruteForceProtected": False,
                                           "permanentLockout": False})
    with chromium_page() as page:
        password_step(page, world, "kc-heidi")
        page.wait_for_selector("#totp-secret", state="attached")  # at the bridge: enrolling


def test_a_user_named_jose_garcia_sees_their_name_and_gets_it_in_the_app_label(world):
    """Keycloak sends the user's first and last name; the bridge shows it and puts it, UTF-8
    percent-encoded, in the label of the QR code an authenticator app scans."""
    import io

    import zxingcpp
    from PIL import Image, ImageOps

    username = "jose.garcia"
    world.admin.create_user({
        "username": username, "enabled": True, "emailVerified": True,
        "email": "jose.garcia@example.org", "firstName": "José", "lastName": "García",
        "credentials": [{"type": "password", "value": f"{username}-pw", "temporary": False}],
    })
    with chromium_page() as page:
        password_step(page, world, username)
        page.wait_for_selector("#totp-secret", state="attached")
        assert "Signing in as José García" in page.inner_text(".account")
        shot = Image.open(io.BytesIO(page.locator("figure.qr svg").screenshot()))
        qr = ImageOps.expand(shot.convert("L"), border=40, fill=255)  # a wide quiet zone
        found = zxingcpp.read_barcodes(qr)
        assert found, "no QR code read from the enrollment page"
        uri = found[0].text
        assert uri.startswith("otpauth://totp/Stepup:Jos%C3%A9%20Garc%C3%ADa?"), uri
        screenshot(page, "keycloak-08-unicode-name")
        secret = page.text_content("#totp-secret").strip()
        assert f"secret={secret}" in uri
        page.fill("input[name=otp]", totp.code_at(secret, time.time()))
        page.click("text=Verify and continue")
        page.check("input[name=saved]")
        page.click("button:has-text('Continue')")
        claims = rp_claims(page)
    assert claims["stepup_amr"] == "otp"
