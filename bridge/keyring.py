"""Key material: the server secrets and the assertion signing keys.

Server secrets (session key, pepper, encryption keys) come from configuration, or from the
data folder where they are generated on first start; never from the database. Signing keys
are generated on first start into the database, sealed with the encryption key, so that
several nodes share them; ``stepup keys rotate`` publishes a new key before it is used and
keeps the old one until every assertion it signed has expired (OpenID Connect Core §10.1.1).
Both are loaded once, not per request.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from joserfc.jwk import ECKey, KeySet, RSAKey

from .secretbox import SecretBox
from .store import Store

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
    """The signing key ring, kept in the database so every node signs with the same keys.

    Each key has an activation time: ``stepup keys rotate`` publishes a new key in JWKS
    *before* it is used (relying parties cache JWKS), and the key it replaces stays published
    until every assertion it signed has expired. Nodes re-read the ring every ``refresh``
    seconds; private keys are sealed with the configured encryption key, bound to their kid.
    """

    def __init__(self, store: Store, box: SecretBox, token_lifetime: int,
                 clock: Callable[[], float] = time.time, refresh: float = 30):
        self.store, self.box, self.token_lifetime = store, box, token_lifetime
        self.clock, self.refresh = clock, refresh
        self._rows: list[dict] = []
        self._keys: dict[str, ECKey | RSAKey] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        with store.begin() as tx:
            if not tx.signing_keys():
                # Active from the epoch: a node whose clock is behind the creator's still signs.
                self._add(tx, clock(), -clock())
        self._load()

    def _load(self) -> None:
        with self.store.autocommit() as tx:
            rows = tx.signing_keys()
        keys = {row["kid"]: self._keys.get(row["kid"]) or self._open(row) for row in rows}
        with self._lock:
            self._rows, self._keys, self._loaded_at = rows, keys, time.monotonic()

    def _fresh_rows(self) -> list[dict]:
        if time.monotonic() - self._loaded_at > self.refresh:
            self._load()
        return self._rows

    def active(self, alg: str) -> ECKey | RSAKey:
        """The most recently activated key for ``alg``."""
        now = self.clock()
        current = [r for r in self._fresh_rows() if r["alg"] == alg and r["activates_at"] <= now]
        if not current:
            raise LookupError(f"no active {alg} signing key")
        return self._keys[current[-1]["kid"]]

    def private_set(self, alg: str) -> KeySet:
        """Every loaded key for ``alg``: joserfc signs with the one the header's ``kid`` names,
        so the header and the signature can never disagree about the key."""
        return KeySet([key for row in self._fresh_rows() if row["alg"] == alg
                       for key in [self._keys[row["kid"]]]])

    def public_jwks(self, now: float) -> dict:
        """Upcoming, active, and recently replaced keys (their assertions may still be valid)."""
        return {"keys": [self._keys[r["kid"]].as_dict(private=False)
                         for r in self._published(self._fresh_rows(), now)]}

    def _published(self, rows: list[dict], now: float) -> list[dict]:
        horizon = now - self.token_lifetime - 60
        published = []
        for alg in ALGORITHMS:
            mine = [r for r in rows if r["alg"] == alg]
            for row, successor in zip(mine, [*mine[1:], None], strict=True):
                replaced_at = successor["activates_at"] if successor else None
                if replaced_at is None or replaced_at > horizon or replaced_at > now:
                    published.append(row)
        return published

    def rotate(self, now: float, publish_ahead: float = 0.0) -> list[str]:
        """Add new keys that sign from ``now + publish_ahead``; drop keys nobody can need."""
        with self.store.begin() as tx:
            kids = self._add(tx, now, publish_ahead)
            rows = tx.signing_keys()
            keep = {r["kid"] for r in self._published(rows, now)}
            for row in rows:
                if row["kid"] not in keep:
                    tx.remove_signing_key(row["kid"])
        self._load()
        return kids

    def reseal(self) -> int:
        """Seal every private key under the active encryption key (key rotation)."""
        changed = 0
        with self.store.begin() as tx:
            for row in tx.signing_keys():
                if self.box.key_id(row["sealed_jwk"]) != self.box.active:
                    new = self.box.seal(self.box.open(row["sealed_jwk"], _context(row["kid"])),
                                        _context(row["kid"]))
                    changed += tx.reseal("sealed_jwk", row["kid"], row["sealed_jwk"], new)
        return changed

    def _add(self, tx, now: float, publish_ahead: float) -> list[str]:
        kids = []
        # created_at orders keys that activate at the same instant: it never repeats.
        created = max([now, *(r["created_at"] + 1e-6 for r in tx.signing_keys())])
        for alg in ALGORITHMS:
            params = {"alg": alg, "use": "sig"}
            if alg == "ES256":
                key = ECKey.generate_key("P-256", parameters=params, auto_kid=True)
            else:
                key = RSAKey.generate_key(2048, parameters=params, auto_kid=True)
            sealed = self.box.seal(json.dumps(key.as_dict(private=True)), _context(key.kid))
            tx.add_signing_key(key.kid, alg, sealed, created, now + publish_ahead)
            self._keys[key.kid] = key  # importing an RSA key back costs ~0.2 s: keep it
            kids.append(key.kid)
        return kids

    def _open(self, row: dict) -> ECKey | RSAKey:
        data = json.loads(self.box.open(row["sealed_jwk"], _context(row["kid"])))
        return ECKey.import_key(data) if row["alg"] == "ES256" else RSAKey.import_key(data)


def _context(kid: str) -> str:
    return f"signing:{kid}"


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
