"""Encryption-key rotation for secrets at rest, through the CLI, while a user keeps working."""

from __future__ import annotations

import base64
import secrets

import sqlalchemy as sa
from click.testing import CliRunner

from bridge import create_app
from bridge.cli import main
from bridge.factors import totp
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
