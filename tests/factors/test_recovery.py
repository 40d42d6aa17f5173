"""The recovery code: entropy, alphabet, display groups, tolerant input, peppered digest."""

from __future__ import annotations

import hashlib
import hmac
import math
import re

import pytest

from bridge.factors import recovery

PEPPER = b"p" * 32


def test_at_least_112_bits():
    assert len(set(recovery.ALPHABET)) == len(recovery.ALPHABET) == 32
    assert recovery.LENGTH == 25
    bits = recovery.LENGTH * math.log2(len(recovery.ALPHABET))
    assert bits >= 112


def test_generated_codes_have_the_full_length_in_the_alphabet():
    for _ in range(200):
        code = recovery.generate()
        raw = code.replace("-", "")
        assert len(raw) == recovery.LENGTH
        assert set(raw) <= set(recovery.ALPHABET)


def test_alphabet_is_unambiguous():
    # Crockford: no I/L (look like 1), no O (looks like 0), no U; upper case only.
    assert not set("ILOU") & set(recovery.ALPHABET)
    assert recovery.ALPHABET.isupper()
    assert re.fullmatch(r"[0-9A-Z]+", recovery.ALPHABET)


def test_shown_in_five_groups_of_five():
    code = recovery.generate()
    assert re.fullmatch(r"[0-9A-Z]{5}(-[0-9A-Z]{5}){4}", code)
    assert recovery.GROUPS == 5 and recovery.GROUP_LEN == 5


def test_many_codes_are_unique_and_use_the_whole_alphabet():
    codes = [recovery.generate() for _ in range(5000)]
    assert len(set(codes)) == len(codes)
    used = set("".join(codes).replace("-", ""))
    assert used == set(recovery.ALPHABET)


@pytest.mark.parametrize("typed", [
    "ABCDE-FGHJK-MNPQR-STVWX-YZ234",
    "abcde-fghjk-mnpqr-stvwx-yz234",
    "ABCDEFGHJKMNPQRSTVWXYZ234",
    "abcde fghjk mnpqr stvwx yz234",
    "  ABCDE - FGHJK - MNPQR - STVWX - YZ234  ",
    "ab-cde--fgh jkm\tnpqr\nstvwx yz234",
    "AbCdE-fGhJk-MnPqR-sTvWx-Yz234",
    "abcde\u2013fghjk\u2013mnpqr\u2013stvwx\u2013yz234",  # en dashes (a word processor's)
    "ABCDE\u2014FGHJK\u2011MNPQR\u2212STVWX\u2010YZ234",  # em, non-breaking, minus, hyphen
    "ABCDE\u00a0FGHJK\u3000MNPQR STVWX YZ234",  # no-break and ideographic spaces
    "\uff21\uff22\uff23\uff24\uff25-FGHJK-MNPQR-STVWX-YZ\uff12\uff13\uff14",  # full-width: an IME
    "ABCDE-FGHJK-MNPQR-STVWX-YZ\u0662\u0663\u0664",  # Arabic-Indic digits (an Arabic keyboard's)
])
def test_normalize_is_tolerant_of_case_spaces_and_dashes(typed):
    assert recovery.normalize(typed) == "ABCDEFGHJKMNPQRSTVWXYZ234"


def test_normalize_reads_o_i_l_as_digits():
    assert recovery.normalize("OOOOO-IIIII-LLLLL-ooooo-iilll") == "0000011111111110000011111"


@pytest.mark.parametrize("bad", [
    "",
    "ABCDE-FGHJK-MNPQR-STVWX-YZ23",  # 24 symbols
    "ABCDE-FGHJK-MNPQR-STVWX-YZ2345",  # 26
    "ABCDE-FGHJK-MNPQR-STVWX-YZ23U",  # U is not in the alphabet
    "ABCDE-FGHJK-MNPQR-STVWX-YZ23!",
    "ABCDE_FGHJK_MNPQR_STVWX_YZ234",
    "ABCDE-FGHJK-MNPQR-STVWX-YZ23\x00",
    "ÀBCDE-FGHJK-MNPQR-STVWX-YZ234",
    "A" * 10_000,
])
def test_normalize_refuses_what_cannot_be_a_code(bad):
    assert recovery.normalize(bad) is None


def test_display_of_normalized_is_the_generated_form():
    code = recovery.generate()
    assert recovery.display(recovery.normalize(code.lower())) == code


def test_digest_is_hmac_sha256_of_the_canonical_code_with_the_pepper():
    code = recovery.generate()
    canonical = code.replace("-", "")
    expected = hmac.new(PEPPER, canonical.encode(), hashlib.sha256).hexdigest()
    assert recovery.keyed_digest(PEPPER, code) == expected
    assert len(expected) == 64
    assert canonical not in expected and code not in expected


def test_digest_is_the_same_for_every_way_of_typing_the_code():
    code = recovery.generate()
    forms = [code, code.lower(), code.replace("-", " "), code.replace("-", "")]
    assert len({recovery.keyed_digest(PEPPER, form) for form in forms}) == 1


def test_digest_differs_with_another_pepper():
    code = recovery.generate()
    assert recovery.keyed_digest(PEPPER, code) != recovery.keyed_digest(b"q" * 32, code)


def test_digest_is_not_a_plain_hash():
    code = recovery.generate()
    canonical = code.replace("-", "")
    assert recovery.keyed_digest(PEPPER, code) != hashlib.sha256(canonical.encode()).hexdigest()


def test_digest_differs_between_codes():
    a, b = recovery.generate(), recovery.generate()
    assert recovery.keyed_digest(PEPPER, a) != recovery.keyed_digest(PEPPER, b)


def test_digest_refuses_non_codes():
    with pytest.raises(ValueError):
        recovery.keyed_digest(PEPPER, "not a code")
