"""Encryption-key rotation for secrets at rest, through the CLI, while a user keeps working."""

from __future__ import annotations

import base64
import secrets

import sqlalchemy as sa
from click.testing import CliRunner

from bridge import create_app
from bridge.cli import main
from bridge.factors import totp
from bridge.secretbox import SecretBox
from bridge.store import schema
from tests.bridge.conftest import Actions, register_idp


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def test_rotate_encryption_reseals_everything_and_logins_still_work(tmp_path, clock):
    old, new = f"old:{new_key()}", f"new:{new_key()}"
    env = {"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": "https://bridge.example",
           "STEPUP_ENCRYPTION_KEYS": old}
    app = create_app({}, environ=env, clock=clock)
    register_idp(app)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    enrolled = [act.enroll(f"rot-{i}")[0] for i in range(3)]

    # Step 1+2 of the procedure: every node knows both keys, the new one first.
    env["STEPUP_ENCRYPTION_KEYS"] = f"{new},{old}"
    result = CliRunner().invoke(main, ["keys", "rotate-encryption", "--batch", "2"], env=env)
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 5 secret(s) under key 'new'" in result.output  # 3 users + 2 keys

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stepup.db'}")
    with engine.connect() as conn:
        sealed = [r[0] for r in conn.execute(sa.text("SELECT totp_secret FROM users"))]
        sealed += [r[0] for r in conn.execute(sa.text("SELECT sealed_jwk FROM signing_keys"))]
    engine.dispose()
    assert sealed and all(s.startswith("new.") for s in sealed)

    # Step 4: the old key is gone; a node with only the new key serves everyone.
    env["STEPUP_ENCRYPTION_KEYS"] = new
    app = create_app({}, environ=env, clock=clock)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    clock.advance(30)
    for i, login in enumerate(enrolled):
        again = act.start(f"rot-{i}")
        done = act.post(again, "totp", otp=totp.code_at(login.secret, clock()))
        assert done.status_code == 303
        assert act.finish(again, done.headers["Location"])["sub"] == f"rot-{i}"
    # Running it again changes nothing.
    again = CliRunner().invoke(main, ["keys", "rotate-encryption"], env=env)
    assert "Nothing to re-encrypt: every secret is under key 'new' already." in again.output


def test_a_secret_no_listed_key_opens_is_named_and_the_others_are_resealed(tmp_path, clock):
    """A key taken out before a row sealed with it was re-sealed (a run cut short, a node that
    still wrote with it): the command re-seals every other row, then names the one it cannot
    open (by user, never the value) and says what to do, exit 2."""
    mid, new, gone = (f"{kid}:{new_key()}" for kid in ("mid", "new", "gone"))
    env = {"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": "https://bridge.example",
           "STEPUP_ENCRYPTION_KEYS": mid}
    app = create_app({}, environ=env, clock=clock)
    register_idp(app)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    for name in ("lost-1", "kept-1", "kept-2"):
        act.enroll(name)
    gone_box = SecretBox({"gone": base64.urlsafe_b64decode(gone.split(":")[1])}, "gone")
    with app.extensions["stepup"].store.engine.begin() as conn:
        conn.execute(sa.update(schema.users).where(schema.users.c.subject == "lost-1").values(
            totp_secret=gone_box.seal("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "totp:lost-1")))
    env["STEPUP_ENCRYPTION_KEYS"] = f"{new},{mid}"  # "gone" was removed too early
    result = CliRunner().invoke(main, ["keys", "rotate-encryption"], env=env)
    assert result.exit_code == 2
    assert "Re-encrypted 4 secret(s) under key 'new'" in result.stdout  # 2 users, 2 keys
    assert "cannot open: TOTP secret of user 'lost-1': no encryption key with id 'gone'" in (
        result.stderr)
    assert "1 secret(s) no listed key opens" in result.stderr and "JBSWY3" not in result.output
    with app.extensions["stepup"].store.engine.connect() as conn:
        sealed = dict(conn.execute(sa.select(schema.users.c.subject,
                                             schema.users.c.totp_secret)).all())
    assert [s.split(".")[0] for _, s in sorted(sealed.items())] == ["new", "new", "gone"]
