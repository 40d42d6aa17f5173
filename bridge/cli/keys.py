"""``stepup keys``: signing keys and the encryption key of stored secrets."""

from __future__ import annotations

import time

import click

from ..keyring import JWKS_MAX_AGE, PUBLISH_AHEAD, RING_REFRESH, file_lacks_active_key
from .base import _bridge, _fail, main


@main.group()
def keys() -> None:
    """Signing keys, and the encryption key of stored secrets."""


@keys.command("rotate")
@click.option("--publish-ahead", default=PUBLISH_AHEAD, show_default=True,
              type=click.IntRange(0, 86400),
              help="Seconds the new keys are published before they sign: the JWKS may be "
                   f"cached {JWKS_MAX_AGE} s, after a node's {RING_REFRESH} s to notice them.")
@click.option("--new-encryption-key-everywhere", is_flag=True,
              help="Seal them with the first key of STEPUP_ENCRYPTION_KEYS although no "
                   "signing key is sealed with it yet: every node has that key already.")
def keys_rotate(publish_ahead: int, new_encryption_key_everywhere: bool) -> None:
    """New signing keys; the previous ones stay published until their tokens expire."""
    bridge = _bridge(existing=True)
    box = bridge.secrets.vault.box
    with bridge.store.begin() as tx:
        sealers = {box.key_id(row["sealed_jwk"]) for row in tx.signing_keys()}
    # A key the nodes lack would seal keys none of them can open: every node's key ring (read
    # whole) fails within RING_REFRESH, and no command can take the keys back out.
    if box.active not in sealers and not new_encryption_key_everywhere:
        _fail(f"the new signing keys would be sealed with encryption key {box.active!r} (first "
              "in STEPUP_ENCRYPTION_KEYS), which seals no signing key yet: a node without it "
              "could open none. Once every node has that key, run `stepup keys "
              "rotate-encryption` first (docs/operations.md, Key rotation); or, if every "
              "node has it already, pass --new-encryption-key-everywhere")
    kids = bridge.signing_keys.rotate(time.time(), publish_ahead)
    click.echo(f"New signing keys {', '.join(kids)}: published now, signing in "
               f"{publish_ahead} s; every node picks them up within {RING_REFRESH} s.")


@keys.command("rotate-encryption")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 100_000))
def keys_rotate_encryption(batch: int) -> None:
    """Re-encrypt TOTP secrets, signing keys and open sign-ins under the first key of
    STEPUP_ENCRYPTION_KEYS.

    Safe while serving: each row is re-sealed with a compare-and-set, in small transactions.
    """
    bridge = _bridge(existing=True)
    vault = bridge.secrets.vault
    if unshared := file_lacks_active_key(bridge.settings, vault.box.active):
        _fail(f"STEPUP_ENCRYPTION_KEYS puts key {vault.box.active!r} first, but {unshared}, "
              "which every node and command without that variable reads, does not hold it: "
              "re-sealed under it, their secrets would not open there. Where they read the "
              "file, give it the new key as docs/operations.md (Key rotation) says: at the end "
              "of its encryption_keys, restart them, then first, restart again, then run this "
              "without the variable. Where none reads it any more (all three secrets are "
              "variables), take encryption_keys out of the file")
    changed, lost = vault.reseal_all(bridge.store, batch)
    with bridge.store.begin() as tx:
        tx.audit("encryption_key_rotation", time.time(), key=vault.box.active, resealed=changed)
    if changed:
        click.echo(f"Re-encrypted {changed} secret(s) under key {vault.box.active!r}.")
    elif not lost:
        click.echo(f"Nothing to re-encrypt: every secret is under key {vault.box.active!r} "
                   "already.")
    if lost:
        # The key that sealed them was taken out of STEPUP_ENCRYPTION_KEYS too early.
        for what in lost:
            click.echo(f"cannot open: {what}", err=True)
        _fail(f"{len(lost)} secret(s) no listed key opens: put the key back in "
              "STEPUP_ENCRYPTION_KEYS and run this again; without it, reset those users "
              "(stepup user reset) — a sign-in in progress just starts again")
