"""A bad database URL or an unreachable database stops the command with one line; the data
folder's files (the SQLite database, the generated secrets) are owner-only."""

from __future__ import annotations

import os
import re
import stat

import pytest
from click.testing import CliRunner

from bridge import create_app, keyring
from bridge.cli import _safe_url, main
from bridge.settings import ConfigError, load_settings
from tests.bridge.conftest import IDP_ID


@pytest.mark.parametrize("url, message", [
    ("foo", "is not a database URL"),
    ("mysql://u@h/db", "mysql is not supported"),
    ("postgresql://stepup:hunter2pw/stepup", "is not a database URL"),  # no @: pw is the port
])
def test_a_bad_database_url_is_one_line(url, message):
    with pytest.raises(ConfigError, match=message) as refused:
        load_settings({"STEPUP_DATABASE_URL": url})
    assert "hunter2pw" not in str(refused.value)


def test_the_start_up_line_hides_every_database_password():
    shown = _safe_url("postgresql+psycopg://stepup:pw1@db.example/stepup"
                      "?password=pw2&sslpassword=pw3&sslmode=require")
    assert not {"pw1", "pw2", "pw3"} & set(re.findall(r"pw\d", shown))
    assert "db.example/stepup" in shown and "sslmode=require" in shown


def test_an_sqlite_file_in_a_missing_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["client", "list"], env={
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
            tx.audit("probe", 0.0)
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


def test_two_commands_starting_on_a_new_data_folder_get_the_same_secrets(tmp_path, monkeypatch):
    """Both find no secrets file and generate their own: the first file written wins, and
    the second process uses it rather than replacing it under the first."""
    monkeypatch.setattr(keyring, "_read_json", lambda path: None)  # neither sees the other's
    settings = load_settings({"STEPUP_DATA_DIR": str(tmp_path)})
    first, second = keyring.load_secrets(settings), keyring.load_secrets(settings)
    assert second.pepper == first.pepper and second.secret_key == first.secret_key
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["secrets.json"]  # no leftovers
