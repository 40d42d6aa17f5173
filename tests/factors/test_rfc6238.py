"""RFC 6238 Appendix B and RFC 4226 Appendix D test vectors, through pyotp and our helpers."""

from __future__ import annotations

import base64

import pyotp
import pytest

from bridge.factors import totp

#: RFC 6238 Appendix B / RFC 4226 Appendix D: the 20-byte ASCII seed for HMAC-SHA1.
SEED = b"12345678901234567890"
SECRET = base64.b32encode(SEED).decode("ascii")  # 160 bits: no padding needed


class TestRFC6238AppendixB:
    """SHA1 rows of the table in RFC 6238 Appendix B (8 digits, T0 = 0, X = 30)."""

    VECTORS = (
        (59, 0x0000000000000001, "94287082"),
        (1111111109, 0x00000000023523EC, "07081804"),
        (1111111111, 0x00000000023523ED, "14050471"),
        (1234567890, 0x000000000273EF07, "89005924"),
        (2000000000, 0x0000000003F940AA, "69279037"),
        (20000000000, 0x0000000027BC86AA, "65353130"),
    )

    def test_seed_is_unpadded_base32(self):
        assert "=" not in SECRET
        assert base64.b32decode(SECRET) == SEED

    @pytest.mark.parametrize(("unix_time", "step", "expected"), VECTORS)
    def test_pyotp_eight_digits(self, unix_time, step, expected):
        otp = pyotp.TOTP(SECRET, digits=8, interval=30)
        assert otp.timecode(unix_time) == step
        assert otp.at(unix_time) == expected
        assert otp.verify_and_get_timecode(expected, for_time=unix_time) == step

    @pytest.mark.parametrize(("unix_time", "step", "expected"), VECTORS)
    def test_our_helpers_six_digits(self, unix_time, step, expected):
        # Dynamic truncation is taken modulo 10^Digits (RFC 4226 §5.3), so the 6-digit code
        # is the last six digits of the 8-digit one.
        six = expected[-totp.DIGITS:]
        assert totp.code_at(SECRET, unix_time) == six
        assert totp.match_step(SECRET, six, unix_time) == step

    @pytest.mark.parametrize(("unix_time", "step", "expected"), VECTORS)
    def test_match_step_returns_the_matched_step_not_now(self, unix_time, step, expected):
        # The code of step T, checked one step later, matches step T (not T+1): replay
        # protection compares against the matched step.
        six = expected[-totp.DIGITS:]
        assert totp.match_step(SECRET, six, unix_time + totp.PERIOD) == step

    def test_defaults_are_sha1_six_digits_thirty_seconds(self):
        assert (totp.DIGITS, totp.PERIOD, totp.WINDOW) == (6, 30, 1)
        uri = totp.provisioning_uri(SECRET, "Stepup", "a")
        assert "algorithm=SHA1" in uri and "digits=6" in uri and "period=30" in uri


class TestRFC4226AppendixD:
    """HOTP values for counts 0..9 with the same seed (6 digits)."""

    VECTORS = ("755224", "287082", "359152", "969429", "338314",
               "254676", "287922", "162583", "399871", "520489")

    @pytest.mark.parametrize(("count", "expected"), list(enumerate(VECTORS)))
    def test_pyotp_hotp(self, count, expected):
        assert pyotp.HOTP(SECRET, digits=6).at(count) == expected

    @pytest.mark.parametrize(("count", "expected"), list(enumerate(VECTORS)))
    def test_totp_helper_at_step_count_is_hotp(self, count, expected):
        # TOTP is HOTP with C = floor(T / X) (RFC 6238 §4.2).
        now = count * totp.PERIOD + 7
        assert totp.code_at(SECRET, now) == expected
        if count > 0:  # step 0 has no step before it for the ±1 window to look at
            assert totp.match_step(SECRET, expected, now) == count
