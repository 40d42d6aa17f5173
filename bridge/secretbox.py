"""AES-256-GCM for secrets at rest (TOTP secrets, staged recovery codes).

Keys come from configuration or the data folder, never from the database, and carry an id so
they can be rotated: the ciphertext records which key sealed it, and any listed key opens it.
The associated data binds a ciphertext to its row (e.g. the subject), so one user's secret
cannot be pasted into another's row.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class SecretBoxError(ValueError):
    """A ciphertext could not be opened (unknown key id, tampering, wrong row)."""


class SecretBox:
    def __init__(self, keys: Mapping[str, bytes], active: str):
        if active not in keys:
            raise ValueError("the active encryption key id is not among the keys")
        for kid, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"encryption key {kid!r} must be 32 bytes")
            if not kid or "." in kid:
                raise ValueError("encryption key ids must be non-empty and contain no '.'")
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self.active = active
        self.ids = tuple(keys)

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self.active].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{self.active}.{_b64(nonce + sealed)}"

    def open(self, token: str, context: str) -> str:
        kid, _, body = token.partition(".")
        aead = self._keys.get(kid)
        if aead is None:
            raise SecretBoxError(f"no encryption key with id {kid!r}")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, ValueError) as e:
            raise SecretBoxError("ciphertext does not open under its key") from e

    def key_id(self, token: str) -> str:
        return token.partition(".")[0]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
