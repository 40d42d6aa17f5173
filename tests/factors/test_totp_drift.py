"""A device with a wrong clock (RFC 6238 §6), on a fixed clock: which steps are accepted,
which are only recognised for the hint, and how far a remembered offset may go."""

from __future__ import annotations

import pyotp
import pytest

from bridge.factors import totp

SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # RFC 6238's SHA-1 seed, Base32
NOW = 1_111_111_111.0  # an RFC 6238 Appendix B instant
STEP = int(NOW // totp.PERIOD)


def code(offset_steps: int) -> str:
    return totp.code_at(SECRET, NOW + offset_steps * totp.PERIOD)


def test_the_rfc_vector_still_holds():
    assert totp.code_at(SECRET, NOW) == "050471"  # Appendix B, SHA-1: 14050471


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_the_usual_window_is_one_step_either_side(offset):
    assert totp.match_step(SECRET, code(offset), NOW) == STEP + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3, 20])
def test_outside_the_window_nothing_matches_without_a_remembered_drift(offset):
    assert totp.match_step(SECRET, code(offset), NOW) is None


def test_a_remembered_drift_adds_a_window_around_it_and_keeps_the_usual_one():
    # drift +2: steps -1..+3 (the usual window always holds: a fixed phone works at once)
    accepted = {o for o in range(-6, 7) if totp.match_step(SECRET, code(o), NOW, drift=2)}
    assert accepted == {-1, 0, 1, 2, 3}
    accepted = {o for o in range(-6, 7) if totp.match_step(SECRET, code(o), NOW, drift=-2)}
    assert accepted == {-3, -2, -1, 0, 1}


def test_a_stored_drift_beyond_the_bound_is_clamped():
    assert totp.match_step(SECRET, code(10), NOW, drift=10) is None
    assert totp.match_step(SECRET, code(3), NOW, drift=10) == STEP + 3


@pytest.mark.parametrize(("offset", "remembered"), [(0, 0), (1, 1), (-1, -1), (2, 2), (3, 2),
                                                    (-3, -2), (40, 2)])
def test_drift_after_a_success_is_the_offset_bounded(offset, remembered):
    assert totp.drift_after(STEP + offset, NOW) == remembered


@pytest.mark.parametrize("offset", [-20, -10, -2, 2, 6, 10, 20])
def test_a_code_minutes_away_is_recognised_for_the_hint(offset):
    assert totp.off_clock_step(SECRET, code(offset), NOW, 600) == STEP + offset


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_the_hint_search_skips_the_accepted_window(offset):
    assert totp.off_clock_step(SECRET, code(offset), NOW, 600) is None


def test_the_hint_search_reaches_only_as_far_as_configured():
    assert totp.off_clock_step(SECRET, code(21), NOW, 600) is None
    assert totp.off_clock_step(SECRET, code(21), NOW, 900) == STEP + 21
    assert totp.off_clock_step(SECRET, code(5), NOW, 0) is None


def test_the_hint_search_computes_as_much_for_a_near_code_as_for_none(monkeypatch):
    """Found by a review: the search stopped at the first match, so a wrong code that was
    some nearby step's was answered in a tenth of the time of one that was none, telling a
    guesser a code still to come. The work is counted, not timed."""
    computed = []
    generate = pyotp.TOTP.generate_otp
    monkeypatch.setattr(pyotp.TOTP, "generate_otp",
                        lambda self, step: computed.append(step) or generate(self, step))
    nowhere = next(c for c in (f"{n:06d}" for n in range(1_000_000))
                   if totp.off_clock_step(SECRET, c, NOW, 600) is None
                   and totp.match_step(SECRET, c, NOW) is None)
    counts = []
    for guess in (code(2), code(-20), nowhere):
        computed.clear()
        totp.off_clock_step(SECRET, guess, NOW, 600)
        counts.append(len(computed))
    assert counts[0] == counts[1] == counts[2] > 0


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "١٢٣٤٥٦", "12 456", "abcdef"])
def test_malformed_codes_match_nothing(bad):
    assert totp.match_step(SECRET, bad, NOW) is None
    assert totp.off_clock_step(SECRET, bad, NOW, 600) is None


FULLWIDTH = "".join(chr(0xFF10 + d) for d in range(1, 7))  # "123456" in fullwidth forms


@pytest.mark.parametrize(("typed", "code"), [("123 456", "123456"), ("١٢٣٤٥٦", "123456"),
                                             ("۱۲۳۴۵۶", "123456"), (FULLWIDTH, "123456"),
                                             ("12²456", "12²456")])
def test_digits_typed_in_any_script_are_normalised(typed, code):
    assert totp.normalize(typed) == code
