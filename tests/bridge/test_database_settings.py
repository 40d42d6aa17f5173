"""A bad database URL or an unreachable database stops the command with one line; the data
folder's files (the SQLite database, the generated secrets) are owner-only; a node with
another pepper than its database's, a damaged secrets file or an unusable data folder is
refused in one line."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import threading
import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from bridge import create_app, keyring
from bridge.cli import main
from bridge.cli.base import _safe_url
from bridge.settings import ConfigError, load_settings
from bridge.store import Store, create_engine, schema
from tests.bridge.conftest import IDP_ID
from tests.bridge.test_store_sql import _user


@pytest.mark.parametrize("url, message", [
    ("foo", "is not a database URL"),
    ("sqlite://", "an SQLite database in memory keeps nothing"),
    ("sqlite:///:memory:", "an SQLite database in memory keeps nothing"),
    ("sqlite:///file:m?mode=memory&uri=true", "an SQLite database in memory keeps nothing"),
    ("mysql://u@h/db", "mysql is not supported"),
    ("postgresql://stepup:hunter2pw/stepup", "is not a database URL"),  # no @: pw is the port
    # An unencoded "@" in the password: the driver would print the rest of it as the host.
    ("postgresql+psycopg://stepup:x@hunter2pw@127.0.0.1/stepup", "must be written %40"),
    ("postgres://u@h/db", "write it postgresql[+]psycopg://"),
    ("postgresql+psycopg2://u@h/db", "write it postgresql[+]psycopg://"),
])
def test_a_bad_database_url_is_one_line(url, message):
    with pytest.raises(ConfigError, match=message) as refused:
        load_settings({"STEPUP_DATABASE_URL": url})
    assert "hunter2pw" not in str(refused.value)


def test_a_command_warns_of_a_misspelt_setting(tmp_path):
    """STEPUP_DATABSE_URL would leave the command on the embedded database, silently: every
    command says so on stderr, as `stepup serve` does in its log."""
    assert _cli("db", "upgrade", STEPUP_DATA_DIR=str(tmp_path)).exit_code == 0
    listed = _cli("client", "list", STEPUP_DATA_DIR=str(tmp_path),
                  STEPUP_DATABSE_URL="postgresql+psycopg://u@h/db")
    assert listed.exit_code == 0
    assert listed.stderr == ("stepup: warning: STEPUP_DATABSE_URL is not a setting and is "
                             "ignored (did you mean STEPUP_DATABASE_URL?)\n")


def test_the_start_up_line_hides_every_database_password():
    shown = _safe_url("postgresql+psycopg://stepup:pw1@db.example/stepup"
                      "?password=pw2&sslpassword=pw3&sslmode=require")
    assert not {"pw1", "pw2", "pw3"} & set(re.findall(r"pw\d", shown))
    assert "db.example/stepup" in shown and "sslmode=require" in shown


def test_an_sqlite_file_in_a_missing_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(main, list(START), env={
        "STEPUP_DATA_DIR": str(tmp_path),
        "STEPUP_DATABASE_URL": f"sqlite:///{tmp_path}/missing/stepup.db"})
    assert result.exit_code == 2
    assert result.output.startswith("stepup: error: the database is not reachable")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("earlier", [None, 0o644])
def test_the_sqlite_file_is_owner_only_in_a_folder_that_was_not(tmp_path, earlier):
    """A data folder made before the bridge (a volume, systemd's StateDirectory) at 0755;
    the database new, or left readable by all by an earlier version."""
    tmp_path.chmod(0o755)
    if earlier:
        (tmp_path / "stepup.db").touch(mode=earlier)
    old = os.umask(0o022)
    try:
        app = create_app({"data_dir": tmp_path, "issuer": "https://bridge.example"}, environ={})
        with app.extensions["stepup"].store.begin() as tx:  # a write: the WAL files exist
            tx.audit("client_removed", 0.0)
    finally:
        os.umask(old)
    files = sorted(tmp_path.glob("stepup.db*"))
    assert [f.name for f in files] == ["stepup.db", "stepup.db-shm", "stepup.db-wal"]
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    app.extensions["stepup"].store.engine.dispose()


def test_an_unreachable_database_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["client", "list"], env={
        "STEPUP_DATA_DIR": str(tmp_path),
        "STEPUP_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"})
    assert result.exit_code == 2
    assert result.output.startswith("stepup: error: the database is not reachable")
    assert "Traceback" not in result.output
    assert IDP_ID not in result.output


def test_the_secrets_file_is_owner_only_whatever_was_left_in_its_folder(tmp_path):
    """A crash's leftover (or a planted) temporary file with open rights is never reused."""
    keys = tmp_path / "keys"
    keys.mkdir()
    leftover = keys / "secrets.tmp"
    leftover.write_text("{}")
    leftover.chmod(0o666)
    old = os.umask(0)
    try:
        app = create_app({"data_dir": tmp_path, "issuer": "https://bridge.example"}, environ={})
    finally:
        os.umask(old)
    app.extensions["stepup"].store.engine.dispose()
    assert stat.S_IMODE((keys / "secrets.json").stat().st_mode) == 0o600
    assert [p.name for p in keys.iterdir() if p.name.endswith(".tmp")] == ["secrets.tmp"]


def test_a_restored_secrets_file_with_open_rights_is_made_owner_only(tmp_path, caplog):
    assert _start(STEPUP_DATA_DIR=str(tmp_path)).exit_code == 0
    secrets_file = tmp_path / "keys" / "secrets.json"
    secrets_file.chmod(0o644)
    assert _cli("client", "list", STEPUP_DATA_DIR=str(tmp_path)).exit_code == 0
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    # Others may have read it: the operator hears of it, without a secret in the line.
    [warning] = [r.getMessage() for r in caplog.records if "readable by other users" in
                 r.getMessage()]
    assert str(secrets_file) in warning
    assert json.loads(secrets_file.read_text())["pepper"] not in warning


def test_two_commands_starting_on_a_new_data_folder_get_the_same_secrets(tmp_path, monkeypatch):
    """Both find no secrets file and generate their own: the first file written wins, and
    the second process uses it rather than replacing it under the first."""
    monkeypatch.setattr(keyring, "_read_json", lambda path: None)  # neither sees the other's
    settings = load_settings({"STEPUP_DATA_DIR": str(tmp_path)})
    first, second = keyring.load_secrets(settings), keyring.load_secrets(settings)
    assert second.pepper == first.pepper and second.secret_key == first.secret_key
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["secrets.json"]  # no leftovers


def _cli(*args: str, **env: str):
    return CliRunner().invoke(main, list(args), env=env)


#: A command that sets the bridge up where it is not yet (`client list` refuses to): the start
#: these tests are about, the secrets made or checked, with a client registered.
START = ("client", "add", "--client-id", "probe", "--redirect-uri", "https://idp.example/cb")


def _start(**env: str):
    return _cli(*START, STEPUP_CLIENT_SECRET="probe-secret-0123456789", **env)


_KEY = base64.b64encode(b"k" * 32).decode()


def _pepper(n: int) -> str:
    return base64.b64encode(bytes([n]) * 32).decode()


def test_a_node_with_another_pepper_than_its_database_s_is_refused(tmp_path):
    """Every recovery code and client secret would fail while /readyz said ready: a shell or a
    node with another STEPUP_PEPPER, a restore without the pepper."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    node = {"STEPUP_DATABASE_URL": url, "STEPUP_SECRET_KEY": _KEY,
            "STEPUP_ENCRYPTION_KEYS": f"k1:{_KEY}"}
    first = _start(STEPUP_DATA_DIR=str(tmp_path / "a"), STEPUP_PEPPER=_pepper(1),
                 **node)
    assert first.exit_code == 2 and "no schema yet" in first.output
    assert _cli("db", "upgrade", STEPUP_DATA_DIR=str(tmp_path / "a"),
                STEPUP_DATABASE_URL=url).exit_code == 0
    assert _cli("client", "list", STEPUP_DATA_DIR=str(tmp_path / "a"), STEPUP_PEPPER=_pepper(1),
                **node).exit_code == 0  # the first pepper is kept
    refused = _cli("client", "list", STEPUP_DATA_DIR=str(tmp_path / "b"),
                   STEPUP_PEPPER=_pepper(2), **node)
    assert refused.exit_code == 2, refused.output
    assert refused.output.startswith("stepup: error: the pepper (STEPUP_PEPPER")
    assert _pepper(2) not in refused.output and "Traceback" not in refused.output
    assert _cli("client", "list", STEPUP_DATA_DIR=str(tmp_path / "a"), STEPUP_PEPPER=_pepper(1),
                **node).exit_code == 0  # nothing was changed by the refusal


@pytest.mark.parametrize("accounts", [False, True], ids=["day-one", "from-before-0007"])
def test_no_secret_is_made_up_for_a_database_nodes_share(tmp_path, accounts):
    """With STEPUP_DATABASE_URL, a command or node without the deployment's secrets (another
    shell, another folder, a variable left out) is refused in one line naming what is missing,
    before anything is written: no keys/secrets.json, no pepper kept. A made-up pepper would
    have become the database's on day one and locked every real node out; a made-up session
    key would fail the sign-ins that reach that node, at random. A database from before 0007
    holds accounts but no fingerprint: the same. The deployment's nodes then work."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    right = {"STEPUP_DATABASE_URL": url, "STEPUP_SECRET_KEY": _KEY, "STEPUP_PEPPER": _pepper(1),
             "STEPUP_ENCRYPTION_KEYS": f"k1:{_KEY}"}
    assert _cli("db", "upgrade", STEPUP_DATA_DIR=str(tmp_path / "a"), **right).exit_code == 0
    if accounts:
        assert _cli("client", "add", "--client-id", "idp", "--redirect-uri", "https://idp/cb",
                    STEPUP_DATA_DIR=str(tmp_path / "a"), STEPUP_CLIENT_SECRET="s" * 24,
                    **right).exit_code == 0
        with create_engine(url).begin() as conn:  # as a database from before 0007 would be
            conn.execute(sa.delete(schema.secret_checks))
    for left_out in (["STEPUP_SECRET_KEY", "STEPUP_PEPPER", "STEPUP_ENCRYPTION_KEYS"],
                     ["STEPUP_SECRET_KEY"], ["STEPUP_PEPPER"]):
        env = {k: v for k, v in right.items() if k not in left_out}
        refused = _cli("client", "list", STEPUP_DATA_DIR=str(tmp_path / "b"), **env)
        assert refused.exit_code == 2, refused.output
        assert refused.output.startswith(f"stepup: error: {', '.join(left_out)} not set: with "
                                         "STEPUP_DATABASE_URL every node and command needs")
        assert refused.output.count("\n") == 1 and _KEY not in refused.output
        assert not (tmp_path / "b" / "keys" / "secrets.json").exists()
        with create_engine(url).connect() as conn:
            assert conn.execute(sa.select(schema.secret_checks)).all() == []
    listed = _cli("client", "list", STEPUP_DATA_DIR=str(tmp_path / "b"), **right)
    assert listed.exit_code == 0 and ("idp" in listed.output) == accounts
    with create_engine(url).connect() as conn:
        assert len(conn.execute(sa.select(schema.secret_checks)).all()) == 1
    assert not (tmp_path / "b" / "keys" / "secrets.json").exists()  # all three set: no file


def test_an_embedded_database_restored_without_its_secrets_file_is_refused(tmp_path):
    live, restored = tmp_path / "live", tmp_path / "restored"
    assert _start(STEPUP_DATA_DIR=str(live)).exit_code == 0
    restored.mkdir()
    for part in live.glob("stepup.db*"):  # with its WAL: the live node may not have checkpointed
        shutil.copy(part, restored / part.name)
    refused = _cli("client", "list", STEPUP_DATA_DIR=str(restored))
    assert refused.exit_code == 2 and "this node has none (no STEPUP_PEPPER, no " \
        "keys/secrets.json in the data folder)" in refused.output  # not "is not the one"
    assert not (restored / "keys" / "secrets.json").exists()  # the made-up one is taken back
    (restored / "keys").mkdir(exist_ok=True)
    shutil.copy(live / "keys" / "secrets.json", restored / "keys" / "secrets.json")
    assert _cli("client", "list", STEPUP_DATA_DIR=str(restored)).exit_code == 0


@pytest.mark.parametrize("name", ["SECRET_KEY", "PEPPER", "ENCRYPTION_KEYS"])
def test_a_secret_set_but_empty_is_refused_not_made_up(tmp_path, name):
    """A node whose secret store answered nothing would otherwise make up its own session key
    (sign-ins hopping between nodes fail) or pepper."""
    refused = _start(STEPUP_DATA_DIR=str(tmp_path), **{f"STEPUP_{name}": " "})
    assert refused.exit_code == 2
    assert refused.output == (f"stepup: error: STEPUP_{name} is set but empty: give its value, "
                              "or unset it to use keys/secrets.json in the data folder\n")
    assert not (tmp_path / "keys").exists()


def test_a_restore_with_the_pepper_but_not_the_encryption_keys_says_which_keys(tmp_path):
    """The pepper given (STEPUP_PEPPER), keys/ not restored: the signing keys in the database
    were sealed with an encryption key this node lacks. One line that names the setting and the
    file, and nothing generated left behind for the next try to pick up."""
    live, restored = tmp_path / "live", tmp_path / "restored"
    assert _start(STEPUP_DATA_DIR=str(live), STEPUP_PEPPER=_pepper(1),
                STEPUP_ISSUER="https://b.example").exit_code == 0
    restored.mkdir()
    for part in live.glob("stepup.db*"):
        shutil.copy(part, restored / part.name)
    refused = _cli("client", "list", STEPUP_DATA_DIR=str(restored), STEPUP_PEPPER=_pepper(1),
                   STEPUP_ISSUER="https://b.example")
    assert refused.exit_code == 2, refused.output
    assert refused.output.startswith("stepup: error: this database's signing keys do not open")
    assert "STEPUP_ENCRYPTION_KEYS, else keys/secrets.json" in refused.output
    assert not (restored / "keys" / "secrets.json").exists()
    (restored / "keys").mkdir(exist_ok=True)
    shutil.copy(live / "keys" / "secrets.json", restored / "keys" / "secrets.json")
    assert _cli("client", "list", STEPUP_DATA_DIR=str(restored), STEPUP_PEPPER=_pepper(1),
                STEPUP_ISSUER="https://b.example").exit_code == 0


def test_a_key_rotated_in_during_the_start_s_check_is_one_line(tmp_path, monkeypatch):
    """Another node, holding an encryption key this one lacks, rotates a signing key in between
    this start's key check and its key ring's first read: the same one line as the check's,
    not a traceback, and the secrets file this start made up is taken back."""
    import bridge.app
    from bridge.secretbox import SecretBox

    checked = bridge.app.load_checked_secrets
    other_node = keyring.Vault(SecretBox({"k9": b"9" * 32}, "k9"))

    def check_then_rotate(settings, store, now, serving):
        secrets = checked(settings, store, now, serving)
        with store.begin() as tx:
            tx.add_signing_key("other", "ES256", other_node.seal("sealed_jwk", "other", "{}"),
                               now + 1, now)
        return secrets

    monkeypatch.setattr(bridge.app, "load_checked_secrets", check_then_rotate)
    refused = _start(STEPUP_DATA_DIR=str(tmp_path))
    assert refused.exit_code == 2, refused.output
    assert refused.output.startswith("stepup: error: this database's signing keys do not open "
                                     "(signing key other: ")
    assert refused.output.count("\n") == 1 and "Traceback" not in refused.output
    assert not (tmp_path / "keys" / "secrets.json").exists()


def test_a_refused_start_keeps_no_pepper_of_its_own(tmp_path):
    """A database with no pepper kept yet and no accounts (from before schema 0007, or after
    the documented DELETE), restored without keys/: the start is refused for the signing keys
    before its made-up pepper is kept, so restoring keys/ then works."""
    live, restored = tmp_path / "live", tmp_path / "restored"
    assert _cli("db", "upgrade", STEPUP_DATA_DIR=str(live)).exit_code == 0
    assert _cli("client", "list", STEPUP_DATA_DIR=str(live)).exit_code == 0  # no account
    restored.mkdir()
    for part in live.glob("stepup.db*"):
        shutil.copy(part, restored / part.name)
    with create_engine(f"sqlite:///{restored / 'stepup.db'}").begin() as conn:
        conn.execute(sa.delete(schema.secret_checks))
    refused = _cli("client", "list", STEPUP_DATA_DIR=str(restored))
    assert refused.exit_code == 2 and "signing keys do not open" in refused.output
    with create_engine(f"sqlite:///{restored / 'stepup.db'}").connect() as conn:
        assert conn.execute(sa.select(schema.secret_checks)).all() == []
    (restored / "keys").mkdir(exist_ok=True)
    shutil.copy(live / "keys" / "secrets.json", restored / "keys" / "secrets.json")
    assert _cli("client", "list", STEPUP_DATA_DIR=str(restored)).exit_code == 0


def test_two_first_starts_on_one_folder_never_keep_a_made_up_pepper(tmp_path, monkeypatch):
    """Two processes start at once on one data folder with no secrets file, before an embedded
    database from before 0007 that holds accounts (restored without keys/). The first makes up
    a pepper, is refused and takes its file back; the second must not read that file meanwhile
    and keep its pepper (the right one would be refused from then on): it waits, and is
    refused too."""
    live, restored = tmp_path / "a", tmp_path / "b"
    assert _cli("client", "add", "--client-id", "idp", "--redirect-uri", "https://idp/cb",
                STEPUP_DATA_DIR=str(live), STEPUP_CLIENT_SECRET="s" * 24).exit_code == 0
    restored.mkdir()
    for part in live.glob("stepup.db*"):
        shutil.copy(part, restored / part.name)
    engine = create_engine(f"sqlite:///{restored / 'stepup.db'}")
    with engine.begin() as conn:  # as a database from before 0007 would be
        conn.execute(sa.delete(schema.secret_checks))
    settings = load_settings({"STEPUP_DATA_DIR": str(restored)})
    store, first_checking, second_started = Store(engine), threading.Event(), threading.Event()
    check = keyring.check_pepper

    def slow_first_check(store, secrets, now):
        if not first_checking.is_set():  # the first holds its made-up file while the second starts
            first_checking.set()
            second_started.wait(5)
            time.sleep(0.3)
        check(store, secrets, now)

    monkeypatch.setattr(keyring, "check_pepper", slow_first_check)
    outcomes: list[str] = []

    def start() -> None:
        try:
            keyring.load_checked_secrets(settings, store, 0.0)
            outcomes.append("started")
        except Exception as error:  # the thread's outcome, asserted below
            outcomes.append(repr(error))

    first = threading.Thread(target=start)
    first.start()
    assert first_checking.wait(10)
    second_started.set()
    start()
    first.join()
    assert len(outcomes) == 2, outcomes
    assert all("this node has none (no STEPUP_PEPPER" in o for o in outcomes), outcomes
    with engine.connect() as conn:
        assert conn.execute(sa.select(schema.secret_checks)).all() == []
    assert not (tmp_path / "b" / "keys" / "secrets.json").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.write_text(""), "is not the JSON object the bridge wrote"),
    (lambda f: f.write_text("[1, 2]"), "is not the JSON object the bridge wrote"),
    (lambda f: f.write_text(json.dumps({**json.loads(f.read_text()), "pepper": None})),
     "holds no 'pepper' and STEPUP_PEPPER is not set"),
    (lambda f: (f.unlink(), f.mkdir()), "cannot read"),
    (lambda f: f.write_text(json.dumps({**json.loads(f.read_text()), "pepper": "c2hvcnQ="})),
     "'pepper' in"),  # a weak pepper in the file: named there, not as STEPUP_PEPPER
])
def test_a_damaged_secrets_file_is_one_line_naming_it(tmp_path, damage, message):
    assert _start(STEPUP_DATA_DIR=str(tmp_path)).exit_code == 0
    secrets_file = tmp_path / "keys" / "secrets.json"
    kept = json.loads(secrets_file.read_text())
    damage(secrets_file)
    refused = _cli("client", "list", STEPUP_DATA_DIR=str(tmp_path))
    assert refused.exit_code == 2, refused.output
    assert message in refused.output and str(secrets_file) in refused.output
    assert kept["pepper"] not in refused.output and "Traceback" not in refused.output


def test_a_data_folder_that_cannot_be_used_is_one_line(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for folder in (a_file, a_file / "sub"):
        for command in (["db", "upgrade"], START):
            refused = _cli(*command, STEPUP_DATA_DIR=str(folder))
            assert refused.exit_code == 2, (command, refused.output)
            assert refused.output.startswith(f"stepup: error: cannot use {a_file}")
            assert "Traceback" not in refused.output



@pytest.mark.parametrize("kid", ["prod 2026", "clé", "k" * 70, "prod@2026"])
def test_encryption_key_ids_that_sealed_values_before_still_start(kid):
    """A sealed value carries its key's id: an id that worked must keep working."""
    assert list(load_settings({"STEPUP_ENCRYPTION_KEYS": f"{kid}:{_KEY}"}).encryption_keys
                .partition(":")[::2]) == [kid, _KEY]


@pytest.mark.parametrize("line, message", [
    (f'encryption_keys = ["k1:{_KEY}"]',
     "setting encryption_keys must be a quoted string, not a TOML array"),
    (f'pepper = "{_pepper(3)}!!!!"', "STEPUP_PEPPER is not valid base64"),
    (f'encryption_keys = "k.1:{_KEY}"', "with distinct ids, none with a dot"),
    ("issuer = 5", "setting issuer must be a quoted string, not a TOML integer"),
])
def test_a_config_file_value_of_the_wrong_kind_is_refused(tmp_path, line, message):
    config = tmp_path / "stepup.toml"
    config.write_text(line + "\n")
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        load_settings({"STEPUP_CONFIG": str(config)})
    assert _pepper(3) not in str(refused.value)


def test_a_backup_of_the_embedded_database_holds_what_the_wal_holds(tmp_path):
    """Copying stepup.db while a node runs misses the commits still in its WAL; `stepup db
    backup` takes one consistent snapshot, owner-only, and restores as a data folder."""
    live = tmp_path / "live"
    app = create_app({"data_dir": live, "issuer": "https://bridge.example"}, environ={})
    store = app.extensions["stepup"].store
    with store.begin() as tx:  # the node's pool stays open: nothing is checkpointed
        tx.add_users([_user("in-the-wal")])
    target = tmp_path / "backup.db"
    done = _cli("db", "backup", str(target), STEPUP_DATA_DIR=str(live))
    assert done.exit_code == 0, done.output
    secrets_file = live / "keys" / "secrets.json"
    assert done.output.endswith(f"It opens only with the secrets in {secrets_file} (back it "
                                "up too).\n")
    # Secrets all given as variables: the file, if any, is not what the copy needs.
    stored = json.loads(secrets_file.read_text())
    as_variables = _cli("db", "backup", str(tmp_path / "again.db"), STEPUP_DATA_DIR=str(live),
                        STEPUP_SECRET_KEY=stored["secret_key"], STEPUP_PEPPER=stored["pepper"],
                        STEPUP_ENCRYPTION_KEYS=",".join(stored["encryption_keys"]))
    assert as_variables.output.endswith("It opens only with the secrets in STEPUP_PEPPER and "
                                        "STEPUP_ENCRYPTION_KEYS.\n"), as_variables.output
    # Some as variables: each named where it is (found by review: the file alone was named,
    # which holds another encryption key than the variable that sealed the database).
    mixed = _cli("db", "backup", str(tmp_path / "mixed.db"), STEPUP_DATA_DIR=str(live),
                 STEPUP_ENCRYPTION_KEYS=",".join(stored["encryption_keys"]))
    assert mixed.output.endswith("It opens only with the secrets in STEPUP_ENCRYPTION_KEYS and "
                                 f"{secrets_file} (back it up too).\n"), mixed.output
    # The file kept elsewhere: still named, by the variables that would hold them.
    moved = secrets_file.rename(tmp_path / "secrets-elsewhere.json")
    apart = _cli("db", "backup", str(tmp_path / "apart.db"), STEPUP_DATA_DIR=str(live),
                 STEPUP_PEPPER=stored["pepper"])
    assert apart.output.endswith("It opens only with the secrets in STEPUP_PEPPER and "
                                 "STEPUP_ENCRYPTION_KEYS.\n"), apart.output
    moved.rename(secrets_file)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _cli("db", "backup", str(target), STEPUP_DATA_DIR=str(live)).output == (
        f"stepup: error: {target} exists: name a new file\n")
    restored = tmp_path / "restored"
    (restored / "keys").mkdir(parents=True)
    shutil.copy(target, restored / "stepup.db")
    shutil.copy(live / "keys" / "secrets.json", restored / "keys" / "secrets.json")
    shown = _cli("user", "show", "in-the-wal", STEPUP_DATA_DIR=str(restored))
    assert shown.exit_code == 0 and "in-the-wal" in shown.output, shown.output
    store.engine.dispose()


def test_a_backup_refuses_in_one_line_and_leaves_nothing(tmp_path):
    missing = _cli("db", "backup", str(tmp_path / "b.db"), STEPUP_DATA_DIR=str(tmp_path / "new"))
    assert missing.output == f"stepup: error: no database at {tmp_path / 'new' / 'stepup.db'}\n"
    assert not (tmp_path / "b.db").exists() and not (tmp_path / "new" / "stepup.db").exists()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for taken in (tmp_path, tmp_path / "dangling"):
        refused = _cli("db", "backup", str(taken), STEPUP_DATA_DIR=str(tmp_path / "new"))
        assert refused.output == f"stepup: error: {taken} exists: name a new file\n"


def test_backup_of_postgresql_points_to_pg_dump(tmp_path):
    refused = _cli("db", "backup", str(tmp_path / "b.db"), STEPUP_DATA_DIR=str(tmp_path),
                   STEPUP_DATABASE_URL="postgresql+psycopg://stepup@127.0.0.1:9/stepup")
    assert refused.exit_code == 2 and "pg_dump" in refused.output
    assert not (tmp_path / "b.db").exists()



@pytest.mark.parametrize("command", [
    ("client", "list"), ("user", "show", "ann"), ("user", "unlock", "ann"),
    ("user", "reset", "--yes", "ann"), ("ip", "unblock", "192.0.2.1"),
    ("client", "remove", "--yes", "idp"), ("keys", "rotate"), ("keys", "rotate-encryption")])
def test_a_command_about_what_the_bridge_holds_needs_its_database(tmp_path, command):
    """Run in another folder than the bridge's, a help-desk command got a new, empty database
    and said a locked user was "not enrolled": it names the database it looked for, and
    leaves nothing behind."""
    elsewhere = tmp_path / "instance"
    result = _cli(*command, STEPUP_DATA_DIR=str(elsewhere))
    assert result.exit_code == 2
    assert result.output == (f"stepup: error: no bridge database at sqlite:///{elsewhere}"
                             "/stepup.db: run this command with the bridge's STEPUP_DATA_DIR, "
                             "or set the bridge up first (`stepup serve`, `stepup client add`)\n")
    assert not elsewhere.exists()


def test_a_help_desk_command_in_a_folder_without_the_bridge_says_where_it_looked(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _cli("user", "show", "ann")
    assert result.exit_code == 2
    assert "the bridge's STEPUP_DATA_DIR (none given: ./instance, where you are)" in result.output
    assert not (tmp_path / "instance").exists()
    url = f"sqlite:///{tmp_path}/moved.db"
    result = _cli("user", "show", "ann", STEPUP_DATABASE_URL=url)
    assert result.output == (f"stepup: error: no bridge database at {url}: run this command "
                             "with the bridge's STEPUP_DATABASE_URL, or create it first "
                             "(`stepup db upgrade`)\n")
