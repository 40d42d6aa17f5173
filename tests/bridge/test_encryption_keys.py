"""Sign-ins during an encryption-key rotation (`stepup keys rotate-encryption`): a flow
survives the re-seal; one sealed with a key since removed gets a 400 page."""

from __future__ import annotations

import base64
import json
import secrets

import sqlalchemy as sa
from click.testing import CliRunner

from bridge import create_app
from bridge.cli import main
from bridge.factors import totp
from bridge.secretbox import SecretBox
from bridge.store import schema
from tests.bridge.conftest import Actions, callback_params, is_callback, register_idp, shown


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def test_a_sign_in_survives_encryption_key_rotation(tmp_path, clock):
    old, new = f"old:{new_key()}", f"new:{new_key()}"
    env = {"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ENCRYPTION_KEYS": old}
    app = create_app({"issuer": "https://bridge.example"}, environ=env, clock=clock)
    register_idp(app)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    login = act.start("mid-rotation")  # the enrollment page is open: a sealed pending secret
    secret = shown(login.last_page, "totp-secret")
    with act.bridge.store.begin() as tx:  # a barred subject has no secret to re-seal
        assert tx.bar_user("disowned-reset", clock())
    env["STEPUP_ENCRYPTION_KEYS"] = f"{new},{old}"
    rotated = CliRunner().invoke(main, ["keys", "rotate-encryption"], env=env)
    assert rotated.exit_code == 0, rotated.output
    env["STEPUP_ENCRYPTION_KEYS"] = new
    app = create_app({"issuer": "https://bridge.example"}, environ=env, clock=clock)
    act.client.application = app  # same browser session, a node that knows only the new key
    act.bridge = app.extensions["stepup"]
    assert act.post(login, "enroll", otp=totp.code_at(secret, clock())).status_code == 303


def test_a_new_key_given_only_to_the_command_is_refused_before_anything_is_re_sealed(
        tmp_path, clock):
    """The embedded default keeps its keys in keys/secrets.json. A new key given to
    `rotate-encryption` alone in STEPUP_ENCRYPTION_KEYS re-sealed everything under it, and
    every node and command that reads the file could open nothing after: it is refused, naming
    the file. Given to the file as docs/operations.md says (at the end, restart; first,
    restart), the rotation goes through and the restarted node signs the user in."""
    env = {"STEPUP_DATA_DIR": str(tmp_path)}
    secrets_file = tmp_path / "keys" / "secrets.json"

    def node() -> Actions:  # a (re)started node, reading the file
        app = create_app({"issuer": "https://b.example"}, environ=env, clock=clock)
        register_idp(app)
        return Actions(app.test_client(), app.extensions["stepup"], clock)

    def sealed_under() -> str:
        with act.bridge.store.begin() as tx:
            return tx.find_user("kept").totp_secret.split(".")[0]

    act = node()
    first, _ = act.enroll("kept")
    stored = json.loads(secrets_file.read_text())
    [old] = stored["encryption_keys"]
    new = f"new:{new_key()}"
    before = sealed_under()
    refused = CliRunner().invoke(main, ["keys", "rotate-encryption"],
                                 env={**env, "STEPUP_ENCRYPTION_KEYS": f"{new},{old}"})
    assert refused.exit_code == 2
    assert refused.output.startswith(f"stepup: error: STEPUP_ENCRYPTION_KEYS puts key 'new' "
                                     f"first, but {secrets_file}, which every node and command "
                                     "without that variable reads, does not hold it")
    assert sealed_under() == before
    for keys in ([old, new], [new, old]):  # each step of the rotation, then a restart
        secrets_file.write_text(json.dumps({**stored, "encryption_keys": keys}))
        act = node()
    rotated = CliRunner().invoke(main, ["keys", "rotate-encryption"], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert sealed_under() == "new"
    clock.advance(30)
    login = act.start("kept")
    login.secret = first.secret
    assert is_callback(act.post(login, "totp", otp=act.code_now(login)))


def test_a_secrets_file_no_node_reads_any_more_is_cleared_of_its_keys_to_rotate(
        tmp_path, clock):
    """Moved to variables (docs/configuration.md), the file stays behind with the old key:
    the refusal says to take its encryption_keys out, and then the rotation runs."""
    env = {"STEPUP_DATA_DIR": str(tmp_path)}
    create_app({"issuer": "https://b.example"}, environ=env, clock=clock)
    secrets_file = tmp_path / "keys" / "secrets.json"
    stored = json.loads(secrets_file.read_text())
    [old] = stored["encryption_keys"]
    env |= {"STEPUP_SECRET_KEY": stored["secret_key"], "STEPUP_PEPPER": stored["pepper"],
            "STEPUP_ENCRYPTION_KEYS": f"new:{new_key()},{old}"}
    refused = CliRunner().invoke(main, ["keys", "rotate-encryption"], env=env)
    assert refused.exit_code == 2
    assert refused.output.rstrip().endswith("take encryption_keys out of the file")
    del stored["encryption_keys"]
    secrets_file.write_text(json.dumps(stored))
    rotated = CliRunner().invoke(main, ["keys", "rotate-encryption"], env=env)
    assert rotated.exit_code == 0, rotated.output


def test_a_flow_sealed_with_a_removed_key_gets_a_400_page(tmp_path, clock):
    old, new = f"old:{new_key()}", f"new:{new_key()}"
    app = create_app({"issuer": "https://b.example"},
                     environ={"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ENCRYPTION_KEYS": old},
                     clock=clock)
    register_idp(app)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    login = act.start("too-early")
    with app.extensions["stepup"].store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM signing_keys")  # keys sealed with `old` too
    act.client.application = create_app(
        {"issuer": "https://b.example"},
        environ={"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ENCRYPTION_KEYS": new}, clock=clock)
    page = act.client.get(login.flow_url)
    assert page.status_code == 400
    assert b"start again" in page.data
    # A first setup's own secret: the user has no recovery code yet, and a new sign-in works.
    assert b"recovery code" not in page.data


def test_a_users_secret_sealed_with_a_removed_key_names_the_user_and_points_to_the_code(
        tmp_path, clock, caplog):
    """A user's secret sealed with a key the serving node lacks (put back under it while the
    node runs, as a restore of the users under a running node would: a start is refused,
    test_cli.py::TestTotpSecretsUnderAMissingKey): their code can never be checked. "Start
    again" alone would loop for ever; the page points to the recovery code, which still works,
    and the log names whose secret it is (never the secret)."""
    old, new = f"old:{new_key()}", f"new:{new_key()}"
    env = {"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ENCRYPTION_KEYS": new}
    app = create_app({"issuer": "https://b.example"}, environ=env, clock=clock)
    register_idp(app)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    first, _ = act.enroll("stale")
    box = SecretBox({"old": base64.urlsafe_b64decode(old.split(":")[1])}, "old")
    with app.extensions["stepup"].store.engine.begin() as conn:  # left under the old key
        conn.execute(sa.update(schema.users).where(schema.users.c.subject == "stale").values(
            totp_secret=box.seal(first.secret, "totp:stale")))
    clock.advance(30)
    again = act.start("stale")
    again.secret = first.secret
    page = act.post(again, "totp", otp=act.code_now(again))
    assert page.status_code == 400
    assert b"use your recovery code instead" in page.data
    assert ("a sealed value cannot be opened: TOTP secret of user 'stale': no encryption key "
            "with id 'old'") in caplog.text
    assert first.secret not in caplog.text
    again.last_page = act.client.get(f"{again.flow_url}/recovery").get_data(as_text=True)
    assert act.post(again, "recovery", recovery_code=first.recovery_code).status_code == 303


def test_signing_keys_sealed_with_a_key_this_node_lacks_fail_readiness_loudly(tmp_path, clock,
                                                                              caplog):
    """`stepup keys rotate` run with a new encryption key before every node has it: the node
    that lacks it is not ready (503 with the reason), its program endpoints answer JSON, and
    the log says what to look at, instead of an HTML 400 and silence."""
    old, new = f"old:{new_key()}", f"new:{new_key()}"
    lagging = create_app({"issuer": "https://b.example"},
                         environ={"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ENCRYPTION_KEYS": old},
                         clock=clock)
    ahead = create_app({"issuer": "https://b.example"},
                       environ={"STEPUP_DATA_DIR": str(tmp_path),
                                "STEPUP_ENCRYPTION_KEYS": f"{new},{old}"}, clock=clock)
    ahead.extensions["stepup"].signing_keys.rotate(clock(), 0)
    lagging.extensions["stepup"].signing_keys.refresh = 0  # its next request reloads the ring
    client = lagging.test_client()

    ready = client.get("/readyz")
    assert ready.status_code == 503
    checked = ready.get_json()["checks"]["signing_keys"]
    assert checked.startswith("unreadable (signing key ")
    assert checked.endswith(": no encryption key with id 'new')")
    jwks = client.get("/jwks")
    assert jwks.status_code == 500 and jwks.get_json()["error"] == "server_error"
    register_idp(lagging)
    act = Actions(client, lagging.extensions["stepup"], clock)
    login, callback = act.enroll("during-the-mistake")  # the pages need no signing key
    token = act.redeem(callback_params(callback)["code"], login)
    assert token.status_code == 500 and token.get_json()["error"] == "server_error"
    assert "a sealed value cannot be opened: signing key " in caplog.text
    assert ": no encryption key with id 'new'; see docs/operations.md" in caplog.text


def test_the_server_secrets_never_print(bridge):
    """A repr in a traceback, a debugger or a log line shows no session key and no pepper."""
    shown = repr(bridge) + repr(bridge.secrets)
    assert repr(bridge.secrets.pepper) not in shown
    assert repr(bridge.secrets.secret_key) not in shown
