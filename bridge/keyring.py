"""Key material: the server secrets and the assertion signing keys.

Server secrets (session key, pepper, encryption keys) come from the settings, or from the
data folder where they are generated on first start; never from the database. The vault
seals what the database does hold (TOTP secrets, sign-ins in progress, signing keys) and
re-seals it when the encryption key is rotated. Signing keys
are generated on first start into the database, sealed with the encryption key, so that
several nodes share them; ``stepup keys rotate`` publishes a new key before it is used and
keeps the old one until every assertion it signed has expired (OpenID Connect Core §10.1.1).
Both are loaded once, not per request.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from joserfc.jwk import ECKey, KeySet, RSAKey

from .secretbox import SecretBox, SecretBoxError
from .settings import SECRET_NAMES, ConfigError, Settings, decode_key, parse_encryption_keys
from .store import Store, Tx

log = logging.getLogger("stepup")

#: Signing algorithms, default first (DESIGN: ES256 by default, RS256 selectable per client).
ALGORITHMS = ("ES256", "RS256")
#: Seconds a node keeps the key ring before reading it again.
RING_REFRESH = 30
#: Seconds the nodes' clocks may differ.
CLOCK_SKEW = 30
#: Seconds relying parties and shared caches may keep the JWKS (its Cache-Control).
JWKS_MAX_AGE = 300
#: ``stepup keys rotate``'s default wait before a new key signs: a node may serve the old
#: JWKS for RING_REFRESH seconds more, and whoever fetched it then keeps it JWKS_MAX_AGE
#: seconds; the rest is a margin for the nodes' clocks.
PUBLISH_AHEAD = RING_REFRESH + JWKS_MAX_AGE + CLOCK_SKEW


#: The associated data that binds each sealed column's ciphertext to its row (AES-GCM), so a
#: value copied into another row cannot be opened. Spelled here only: a typo in a second copy
#: would surface only during key rotation, the rarest and riskiest operation.
_CONTEXTS = {
    "totp_secret": "totp:{}",  # users, by subject
    "pending_secret": "pending:{}",  # flows, by flow id: a TOTP secret being enrolled
    "staged_code": "staged:{}",  # flows, by flow id: a replacement recovery code
    "sealed_jwk": "signing:{}",  # signing keys, by kid
}


class UnreadableValue(SecretBoxError):
    """A sealed value this node cannot open, and which column it was in: a sign-in's own
    (``pending_secret``, ``staged_code``) goes with that sign-in, a user's stays."""

    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column = column

    @property
    def sign_ins_own(self) -> bool:
        return self.column in ("pending_secret", "staged_code")


class Vault:
    """Seals and opens the secrets the database holds, each bound to its column and row."""

    def __init__(self, box: SecretBox):
        self.box = box

    def seal(self, column: str, key: str, plaintext: str) -> str:
        return self.box.seal(plaintext, _CONTEXTS[column].format(key))

    def open(self, column: str, key: str, sealed: str) -> str:
        """The value, or a :class:`SecretBoxError` that names its row (whose TOTP secret, which
        signing key: what the operator and the help desk must know), never the value."""
        try:
            return self.box.open(sealed, _CONTEXTS[column].format(key))
        except SecretBoxError as e:
            raise UnreadableValue(column, f"{_ROWS[column].format(key)}: {e}") from None

    def reseal(self, tx: Tx, column: str, key: str, sealed: str | None) -> int:
        """Re-seal one value under the active encryption key (compare-and-set); 1 if done."""
        if not sealed or self.box.key_id(sealed) == self.box.active:  # none, or barred
            return 0
        return int(tx.reseal(column, key, sealed,
                             self.seal(column, key, self.open(column, key, sealed))))

    def reseal_all(self, store: Store, batch: int) -> tuple[int, list[str]]:
        """Re-seal signing keys, every user's TOTP secret (in batches of ``batch`` users, each
        its own short transaction, so it is safe while serving) and the open sign-ins. Returns
        how many were re-sealed, and the values no listed key opens (a key removed before they
        were re-sealed), each named by its row; the others are re-sealed all the same."""
        changed, lost = 0, []

        def reseal(tx: Tx, column: str, key: str, sealed: str | None) -> None:
            nonlocal changed
            try:
                changed += self.reseal(tx, column, key, sealed)
            except SecretBoxError as e:
                lost.append(str(e))

        with store.begin() as tx:
            for row in tx.signing_keys():
                reseal(tx, "sealed_jwk", row["kid"], row["sealed_jwk"])
        after = ""
        while True:
            with store.begin() as tx:
                rows = tx.totp_secrets_after(after, batch)
                for subject, sealed in rows:
                    reseal(tx, "totp_secret", subject, sealed)
            if not rows:
                break
            after = rows[-1][0]
        with store.begin() as tx:  # sign-ins in progress: few and short-lived
            for flow_id, pending, staged in tx.flow_secrets():
                reseal(tx, "pending_secret", flow_id, pending)
                reseal(tx, "staged_code", flow_id, staged)
        return changed, lost


#: Each sealed value's row in words, for the operator (never the value).
_ROWS = {"sealed_jwk": "signing key {}", "totp_secret": "TOTP secret of user {!r}",
         "pending_secret": "setup in sign-in {}", "staged_code": "new recovery code in sign-in {}"}


@dataclass(frozen=True)
class ServerSecrets:
    """Keys from configuration, never from the database."""

    secret_key: bytes = field(repr=False)  # Flask session and CSRF signing
    pepper: bytes = field(repr=False)  # HMAC key of recovery codes and client secrets
    vault: Vault  # AES-GCM for the secrets the database holds
    #: The secrets file this process created: a refused start takes it back.
    created_file: Path | None = None
    #: Whether the pepper in use is that file's: made up just now, so no stored recovery code
    #: or client secret can have been made with it.
    pepper_made_up: bool = False

    def take_back(self) -> None:
        """Nothing left of a refused start: the secrets file it made up goes."""
        if self.created_file is not None:
            self.created_file.unlink(missing_ok=True)


def secrets_file(settings: Settings) -> Path:
    """Where the secrets not given as settings are kept: ``keys/secrets.json`` in the data
    folder."""
    return settings.data_dir / "keys" / "secrets.json"


def _listed(kept: str | list) -> str:
    """A kept key list as the setting spells it (the file holds a JSON list, or text)."""
    return kept if isinstance(kept, str) else ",".join(map(str, kept))


def load_secrets(settings: Settings) -> ServerSecrets:
    """Secrets from the settings (``STEPUP_SECRET_KEY`` / ``STEPUP_PEPPER`` /
    ``STEPUP_ENCRYPTION_KEYS``, checked there), else from ``keys/secrets.json`` in the data
    folder, generated on first use of the embedded database only.

    With ``STEPUP_DATABASE_URL`` the database is one that nodes and commands share: secrets
    made up in one node's (or one shell's) folder would differ from the others'. A made-up
    pepper would become the database's and lock the real nodes out, a made-up session key
    would fail the sign-ins that reach that node at random. So none is made up there."""
    path = secrets_file(settings)
    missing = [name for name in SECRET_NAMES if not getattr(settings, name)]
    stored = _read_json(path) if missing else {}  # all three set: the file is not used
    if stored is None and settings.database_url:
        raise ConfigError(
            f"{', '.join(f'STEPUP_{n.upper()}' for n in missing)} not set: with "
            "STEPUP_DATABASE_URL every node and command needs the same STEPUP_SECRET_KEY, "
            "STEPUP_PEPPER and STEPUP_ENCRYPTION_KEYS (or the deployment's keys/secrets.json in "
            f"{settings.data_dir}); none is made up for a database that others share "
            "(docs/configuration.md, Secrets and keys)")
    if missing and stored is not None and path.stat().st_mode & 0o077:
        with contextlib.suppress(PermissionError):  # another owner's (a mounted secret): theirs
            path.chmod(0o600)  # a restored copy with open rights, as for the SQLite file
            log.warning("%s was readable by other users: it is owner-only now; if anyone else "
                        "could read it, replace its secrets (docs/operations.md)", path)
    created = None
    if stored is None:
        fresh = {
            "secret_key": _b64(secrets.token_bytes(32)),
            "pepper": _b64(secrets.token_bytes(32)),
            "encryption_keys": [f"k{int(time.time())}:{_b64(secrets.token_bytes(32))}"],
        }
        stored = _create_private(path, fresh)
        created = path if stored == fresh else None

    def where(name: str, value: str) -> str:
        """Whence a secret came, for an error about it: the variable, or the file."""
        return f"STEPUP_{name.upper()}" if value else f"{name!r} in {path}"

    def setting(name: str, value: str) -> str:
        """The setting if given, else the file's value, which must be there."""
        if value:
            return value
        kept = stored.get(name)
        if not kept or not isinstance(kept, str | list):
            raise ConfigError(f"{path} holds no {name!r} and STEPUP_{name.upper()} is not set: "
                              "restore the file from your backup, or set the variable")
        return _listed(kept)

    keys = parse_encryption_keys(setting("encryption_keys", settings.encryption_keys))
    return ServerSecrets(
        secret_key=decode_key(setting("secret_key", settings.secret_key),
                              where("secret_key", settings.secret_key)),
        pepper=decode_key(setting("pepper", settings.pepper), where("pepper", settings.pepper)),
        vault=Vault(SecretBox(keys, next(iter(keys)))),
        created_file=created,
        pepper_made_up=created is not None and not settings.pepper,
    )


def load_checked_secrets(settings: Settings, store: Store, now: float,
                         serving: bool = False) -> ServerSecrets:
    """:func:`load_secrets`, then :func:`check_pepper` (and, for a node about to serve,
    :func:`check_totp_secrets`), holding a lock on the data folder's ``keys/``: two processes
    starting at once on one folder must not both use a secrets file that one of them made up
    and is about to take back as refused. The second waits, then finds the file gone and
    makes up its own, which is refused in turn."""
    folder = settings.data_dir / "keys"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The folder itself is locked: a mounted, read-only keys/ still works.
    lock = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        secrets = load_secrets(settings)
        check_pepper(store, secrets, now)
        if serving:
            check_totp_secrets(store, secrets)
        return secrets
    finally:
        os.close(lock)  # and the lock with it


def _check_sealed_keys(tx: Tx, secrets: ServerSecrets) -> None:
    """Refuse encryption keys that do not open this database's signing keys (a restore
    without ``keys/``, a key removed too early), taking back a secrets file made up just now:
    nothing is kept of a start that cannot work, not even its pepper's fingerprint."""
    try:
        for row in tx.signing_keys():
            secrets.vault.open("sealed_jwk", row["kid"], row["sealed_jwk"])
    except SecretBoxError as e:
        raise refuse_sealed_keys(e, secrets) from None


def refuse_sealed_keys(error: SecretBoxError, secrets: ServerSecrets) -> ConfigError:
    """The start's one line when a signing key does not open, the secrets file it made up
    taken back: found by the check, or by the ring's first read when another node rotated a
    key in, sealed with a key this node lacks, in the instant between the two."""
    secrets.take_back()
    return ConfigError(
        f"this database's signing keys do not open ({error}) with this node's encryption keys "
        "(STEPUP_ENCRYPTION_KEYS, else keys/secrets.json in the data folder): give it the "
        "keys of the others, or restore keys/secrets.json with the database")


def check_totp_secrets(store: Store, secrets: ServerSecrets) -> None:
    """Refuse to serve while users' TOTP secrets are sealed with an encryption key this node
    lacks (removed before ``stepup keys rotate-encryption`` re-sealed them, a restore from a
    backup taken then): each such user would fail at sign-in, one by one, while /readyz said
    ready. Commands are not refused: ``keys rotate-encryption`` and ``user reset`` are the
    way out. A sign-in's own sealed values (flows) are not counted: one that does not open
    ends that sign-in alone, and the next one works."""
    with store.autocommit() as tx:
        missing = tx.totp_secrets_by_key(other_than=secrets.vault.box.ids)
    if missing:
        secrets.take_back()
        named = ", ".join(f"{kid!r} ({count} user{'s' if count != 1 else ''})"
                          for kid, count in missing.items())
        raise ConfigError(
            f"users' TOTP secrets are sealed with encryption keys this node lacks: {named}; "
            "give it that key (from the other nodes, or the backup's keys/secrets.json) in "
            "STEPUP_ENCRYPTION_KEYS, else keys/secrets.json in the data folder; if the key "
            "is lost, `stepup keys rotate-encryption` lists those users and `stepup user "
            "reset` gives each a new start")


def check_pepper(store: Store, secrets: ServerSecrets, now: float) -> None:
    """Refuse a pepper other than the one this database's recovery codes and client secrets
    were made with (a restore without it, a shell without ``STEPUP_PEPPER``): every one of them
    would fail while the node looks healthy. The first pepper a database sees is kept, as an
    HMAC of a fixed text that reveals nothing of it; a pepper made up just now is never kept
    for a database that holds users or clients already (one from before schema 0007), nor by
    a node whose encryption keys do not open the signing keys (checked first), and a refused
    process takes back the secrets file it generated."""
    fingerprint = hmac.new(secrets.pepper, b"stepup-bridge pepper check",
                           hashlib.sha256).hexdigest()
    made_up = secrets.pepper_made_up
    with store.begin() as tx:
        kept = tx.secret_fingerprint("pepper")
        if kept is None and not (made_up and tx.holds_accounts()):
            _check_sealed_keys(tx, secrets)  # a start that cannot work keeps no pepper
            if tx.keep_secret_fingerprint("pepper", fingerprint, now):
                return
            kept = tx.secret_fingerprint("pepper")  # another node's, kept just now
        if kept is not None and hmac.compare_digest(kept, fingerprint):
            _check_sealed_keys(tx, secrets)
            return
    secrets.take_back()
    if made_up:  # found by review: "not the one" misled an operator who had set none
        raise ConfigError(
            "this database's recovery codes and client secrets were made with a pepper, and "
            "this node has none (no STEPUP_PEPPER, no keys/secrets.json in the data folder): "
            "give it the pepper of the others, or restore keys/secrets.json with the database")
    raise ConfigError(
        "the pepper (STEPUP_PEPPER, else keys/secrets.json in the data folder) is not the "
        "one this database's recovery codes and client secrets were made with: give this "
        "node the pepper of the others, or restore keys/secrets.json with the database")


class SigningKeys:
    """The signing key ring, kept in the database so every node signs with the same keys.

    Each key has an activation time: ``stepup keys rotate`` publishes a new key in JWKS
    *before* it is used (relying parties cache JWKS), and the key it replaces stays published
    until every assertion it signed has expired. Nodes re-read the ring every ``refresh``
    seconds; private keys are sealed with the configured encryption key, bound to their kid.
    """

    def __init__(self, store: Store, vault: Vault, token_lifetime: int,
                 clock: Callable[[], float] = time.time, refresh: float = RING_REFRESH):
        self.store, self.vault, self.token_lifetime = store, vault, token_lifetime
        self.clock, self.refresh = clock, refresh
        self._rows: list[dict] = []
        self._keys: dict[str, ECKey | RSAKey] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        with store.begin() as tx:
            tx.lock_signing_keys()  # a node starting beside this one may be making them
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
        # Past the last assertion a replaced key signed, and its relying party's check: on a
        # node whose ring is a refresh old, with four clocks each off by the skew (the host
        # that rotated, the signing node, this one, and the relying party's, or its leeway).
        horizon = now - self.token_lifetime - self.refresh - 4 * CLOCK_SKEW
        published = []
        for alg in ALGORITHMS:
            mine = [r for r in rows if r["alg"] == alg]
            for row, successor in zip(mine, [*mine[1:], None], strict=True):
                replaced_at = successor["activates_at"] if successor else None
                if replaced_at is None or replaced_at > horizon or replaced_at > now:
                    published.append(row)
        return published

    def rotate(self, now: float, publish_ahead: float = 0.0) -> list[str]:
        """Add new keys that sign from ``now + publish_ahead``; drop keys nobody can need.
        The latest rotation wins: keys an earlier one published ahead, which have not signed
        yet, go, or an emergency rotation (``publish_ahead`` 0) after a routine one would
        hand signing back to those older keys when their time came. Only those that start
        later than a node's cached ring and clock skew could reach: a key about to start may
        already sign on a node whose clock runs ahead, and must stay in the JWKS. Audited in
        the same transaction: a rotation that fails to be recorded did not happen, so an
        operator who retries after an error rotates once."""
        starts = now + publish_ahead
        with self.store.begin() as tx:
            # Held: a rotation that came during another (PostgreSQL reads do not wait) would
            # not see its keys, and could not be the latest to win.
            tx.lock_signing_keys()
            for row in tx.signing_keys():
                if row["activates_at"] > now + self.refresh + CLOCK_SKEW:
                    tx.remove_signing_key(row["kid"])
                elif row["activates_at"] > starts:
                    # Kept (a node may sign with it soon), but replaced from the start by the
                    # keys made below, later: at the same instant the newest key signs.
                    tx.bring_forward_signing_key(row["kid"], starts)
            kids = self._add(tx, now, publish_ahead)
            rows = tx.signing_keys()
            keep = {r["kid"] for r in self._published(rows, now)}
            for row in rows:
                if row["kid"] not in keep:
                    tx.remove_signing_key(row["kid"])
            tx.audit("signing_key_rotation", now, kids=kids)
        self._load()
        return kids

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
            sealed = self.vault.seal("sealed_jwk", key.kid, json.dumps(key.as_dict(private=True)))
            tx.add_signing_key(key.kid, alg, sealed, created, now + publish_ahead)
            self._keys[key.kid] = key  # importing an RSA key back costs ~0.2 s: keep it
            kids.append(key.kid)
        return kids

    def _open(self, row: dict) -> ECKey | RSAKey:
        data = json.loads(self.vault.open("sealed_jwk", row["kid"], row["sealed_jwk"]))
        return ECKey.import_key(data) if row["alg"] == "ES256" else RSAKey.import_key(data)


def file_lacks_active_key(settings: Settings, active: str) -> Path | None:
    """The secrets file, when ``STEPUP_ENCRYPTION_KEYS`` makes ``active`` the key to seal
    under and the file, which nodes and commands started without the variable read, holds
    the variable's other keys but not that one: what is re-sealed under ``active`` would no
    longer open there. None otherwise (no variable, or a file whose keys are none of the
    variable's: nothing reads them for this database). The same id with other bytes counts
    as lacking it: the file's key of that name would not open what the variable's sealed."""
    path = secrets_file(settings)
    if not settings.encryption_keys or not (stored := _read_json(path)):
        return None
    kept = stored.get("encryption_keys")
    if not kept or not isinstance(kept, str | list):
        return None
    try:
        listed = parse_encryption_keys(_listed(kept))
    except ConfigError:
        return None  # a damaged file starts no node: the start says so
    given = parse_encryption_keys(settings.encryption_keys)
    shared = any(listed.get(kid) == key for kid, key in given.items() if kid != active)
    return path if shared and listed.get(active) != given[active] else None


def _read_json(path: Path) -> dict | None:
    """The secrets file's object; None if there is none yet."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except ValueError:  # not JSON, or not UTF-8; the message would quote the secrets
        raise ConfigError(f"{path} is not the JSON object the bridge wrote: restore it from "
                          "your backup") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not the JSON object the bridge wrote: restore it from "
                          "your backup")
    return data


def _create_private(path: Path, data: dict) -> dict:
    """Create ``path`` holding ``data``, mode 0600, whole or not at all, and return what it
    holds: when another process created it first (two commands starting at once on a new data
    folder), that one's data, so every process uses the same secrets. The file is written new
    (mkstemp: O_EXCL, 0600, never a leftover with looser rights), synced, then linked into
    place, which fails if the name exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return json.loads(path.read_text())
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the new name itself survives a power cut
        finally:
            os.close(folder)
        return data
    finally:
        os.unlink(tmp)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()
