"""A bad database URL or an unreachable database stops the command with one line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.settings import ConfigError, load_settings
from tests.bridge.conftest import IDP_ID


@pytest.mark.parametrize("url, message", [
    ("foo", "is not a database URL"),
    ("mysql://u@h/db", "mysql is not supported"),
])
def test_a_bad_database_url_is_one_line(url, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({"STEPUP_DATABASE_URL": url})


def test_an_unreachable_database_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["client", "list"], env={
        "STEPUP_DATA_DIR": str(tmp_path),
        "STEPUP_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"})
    assert result.exit_code == 2
    assert result.output.startswith("stepup: error: the database is not reachable")
    assert "Traceback" not in result.output
    assert IDP_ID not in result.output
