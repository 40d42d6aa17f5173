"""AES-256-GCM for secrets at rest: round trip, row binding, tampering, key rotation."""

from __future__ import annotations

import base64
import os

import pytest

from bridge.secretbox import SecretBox, SecretBoxError

K1, K2 = os.urandom(32), os.urandom(32)


@pytest.fixture
def box() -> SecretBox:
    return SecretBox({"k1": K1}, "k1")


def test_round_trip(box):
    sealed = box.seal("JBSWY3DPEHPK3PXP", "totp:alice")
    assert box.open(sealed, "totp:alice") == "JBSWY3DPEHPK3PXP"


def test_round_trip_non_ascii_and_empty(box):
    for text in ["", "ünïcødé ✓", "x" * 10_000]:
        assert box.open(box.seal(text, "c"), "c") == text


def test_ciphertext_hides_the_plaintext_and_is_fresh_each_time(box):
    a = box.seal("JBSWY3DPEHPK3PXP", "totp:alice")
    b = box.seal("JBSWY3DPEHPK3PXP", "totp:alice")
    assert a != b  # random nonce
    assert "JBSWY3DPEHPK3PXP" not in a
    assert a.startswith("k1.")


def test_context_binding(box):
    sealed = box.seal("secret", "totp:alice")
    with pytest.raises(SecretBoxError):
        box.open(sealed, "totp:bob")
    with pytest.raises(SecretBoxError):
        box.open(sealed, "")


def _flip(token: str, index: int) -> str:
    kid, _, body = token.partition(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[index] ^= 0x01
    return f"{kid}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"


@pytest.mark.parametrize("index", [0, 11, 12, -17, -1])  # nonce, ciphertext, tag
def test_tampering_is_detected(box, index):
    sealed = box.seal("secret", "ctx")
    with pytest.raises(SecretBoxError):
        box.open(_flip(sealed, index), "ctx")


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-4],
    lambda t: t + "AAAA",
    lambda t: t.partition(".")[0] + ".",
    lambda t: t.partition(".")[0] + ".AAAA",
    lambda t: t.partition(".")[0] + ".!!!!",
    lambda t: t.partition(".")[0] + ".é",
    lambda t: t.partition(".")[2],  # no key id
    lambda t: "",
])
def test_mangled_tokens_raise_secretbox_error_only(box, mangle):
    with pytest.raises(SecretBoxError):
        box.open(mangle(box.seal("secret", "ctx")), "ctx")


def test_unknown_key_id(box):
    sealed = box.seal("secret", "ctx")
    other = SecretBox({"k2": K2}, "k2")
    with pytest.raises(SecretBoxError):
        other.open(sealed, "ctx")


def test_same_key_id_with_another_key_fails(box):
    sealed = box.seal("secret", "ctx")
    with pytest.raises(SecretBoxError):
        SecretBox({"k1": K2}, "k1").open(sealed, "ctx")


def test_key_rotation_old_key_opens_new_key_seals(box):
    old = box.seal("secret", "ctx")
    rotated = SecretBox({"k2": K2, "k1": K1}, "k2")
    assert rotated.open(old, "ctx") == "secret"
    assert rotated.key_id(old) == "k1"
    new = rotated.seal("secret", "ctx")
    assert rotated.key_id(new) == "k2"
    assert new.startswith("k2.")
    # Once k1 is dropped, only what k2 sealed still opens.
    retired = SecretBox({"k2": K2}, "k2")
    assert retired.open(new, "ctx") == "secret"
    with pytest.raises(SecretBoxError):
        retired.open(old, "ctx")
    # The old ring cannot open what the new key sealed.
    with pytest.raises(SecretBoxError):
        box.open(new, "ctx")


@pytest.mark.parametrize(("keys", "active"), [
    ({"k1": K1}, "k2"),
    ({"k1": b"short"}, "k1"),
    ({"k1": K1 + b"x"}, "k1"),
    ({"": K1}, ""),
    ({"a.b": K1}, "a.b"),
])
def test_bad_key_rings_are_refused_at_construction(keys, active):
    with pytest.raises(ValueError):
        SecretBox(keys, active)
