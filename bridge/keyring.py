"""Key material: the assertion signing keys and the server secrets.

Both are read once at start-up (never per request) from the data folder, where they are
generated on first start when configuration names none. Signing keys live in a JWKS file so
``stepup keys rotate`` can add a new key and keep the previous one published until every
assertion it signed has expired (OpenID Connect Core §10.1.1).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from joserfc.jwk import ECKey, KeySet, RSAKey

from .secretbox import SecretBox

#: Signing algorithms, default first (DESIGN: ES256 by default, RS256 selectable per client).
ALGORITHMS = ("ES256", "RS256")


@dataclass(frozen=True)
class ServerSecrets:
    secret_key: bytes  # Flask session and CSRF signing
    pepper: bytes  # HMAC key of recovery codes and client secrets
    box: SecretBox  # AES-GCM for TOTP secrets


def load_secrets(data_dir: Path, environ: Mapping[str, str]) -> ServerSecrets:
    """Secrets from ``STEPUP_SECRET_KEY`` / ``STEPUP_PEPPER`` / ``STEPUP_ENCRYPTION_KEYS``,
    else from ``keys/secrets.json`` in the data folder, generated on first use.

    ``STEPUP_ENCRYPTION_KEYS`` is ``id:base64key[,id:base64key...]``; the first is active.
    """
    path = data_dir / "keys" / "secrets.json"
    stored = _read_json(path)
    if stored is None:
        stored = {
            "secret_key": _b64(secrets.token_bytes(32)),
            "pepper": _b64(secrets.token_bytes(32)),
            "encryption_keys": [f"k{int(time.time())}:{_b64(secrets.token_bytes(32))}"],
        }
        _write_private(path, stored)
    enc = environ.get("STEPUP_ENCRYPTION_KEYS") or ",".join(stored["encryption_keys"])
    keys: dict[str, bytes] = {}
    for item in enc.split(","):
        kid, _, value = item.strip().partition(":")
        keys[kid] = _unb64(value, "STEPUP_ENCRYPTION_KEYS")
    active = enc.split(",")[0].strip().partition(":")[0]
    return ServerSecrets(
        secret_key=_unb64(environ.get("STEPUP_SECRET_KEY") or stored["secret_key"], "secret key"),
        pepper=_unb64(environ.get("STEPUP_PEPPER") or stored["pepper"], "STEPUP_PEPPER"),
        box=SecretBox(keys, active),
    )


class SigningKeys:
    """The signing key ring: one active key per algorithm, plus retired keys still published."""

    def __init__(self, path: Path, token_lifetime: int):
        self.path = path
        self.token_lifetime = token_lifetime
        self._entries: list[dict] = []
        self.reload()

    def reload(self) -> None:
        data = _read_json(self.path)
        if data is None:
            data = {"keys": [_new_entry(alg, time.time()) for alg in ALGORITHMS]}
            _write_private(self.path, data)
        self._entries = data["keys"]
        self._private = KeySet.import_key_set({"keys": [e["jwk"] for e in self._entries]})

    def active(self, alg: str) -> ECKey | RSAKey:
        """The newest unretired key for ``alg``."""
        for entry in reversed(self._entries):
            if entry["jwk"]["alg"] == alg and entry.get("retired") is None:
                return self._private.get_by_kid(entry["jwk"]["kid"])
        raise LookupError(f"no active {alg} signing key")

    def public_jwks(self, now: float) -> dict:
        """Active keys and retired ones whose last assertion may still be valid."""
        published = [
            e["jwk"]["kid"]
            for e in self._entries
            if e.get("retired") is None or e["retired"] + self.token_lifetime + 60 > now
        ]
        keys = [self._private.get_by_kid(kid).as_dict(private=False) for kid in published]
        return {"keys": keys}

    def rotate(self, now: float) -> list[str]:
        """Retire the active keys, add new ones, and drop keys no longer published."""
        for entry in self._entries:
            if entry.get("retired") is None:
                entry["retired"] = now
        fresh = [_new_entry(alg, now) for alg in ALGORITHMS]
        horizon = now - self.token_lifetime - 60
        kept = [e for e in self._entries if e["retired"] > horizon]
        _write_private(self.path, {"keys": kept + fresh})
        self.reload()
        return [e["jwk"]["kid"] for e in fresh]


def _new_entry(alg: str, now: float) -> dict:
    params = {"alg": alg, "use": "sig"}
    if alg == "ES256":
        key = ECKey.generate_key("P-256", parameters=params, auto_kid=True)
    else:
        key = RSAKey.generate_key(2048, parameters=params, auto_kid=True)
    return {"jwk": key.as_dict(private=True), "created": now, "retired": None}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _write_private(path: Path, data: dict) -> None:
    """Write atomically with mode 0600, so a crash never leaves half a key file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(value: str, name: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value.strip() + "=" * (-len(value.strip()) % 4))
    except ValueError:
        raise ValueError(f"{name} is not valid base64") from None
