"""The ``stepup`` command line (DESIGN "Command line and configuration"), run with click's
CliRunner on the same data folder and database as an app built by the test."""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import os
import re
import socket
import threading
import time
from importlib.metadata import version

# Imported now, before a test's `serve` sets PROMETHEUS_MULTIPROC_DIR: imported then, it would
# keep multiprocess values for this whole process, and the apps of later tests fail to count.
import prometheus_client  # noqa: F401
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from joserfc import jws

from bridge.cli import main
from bridge.keyring import PUBLISH_AHEAD, SigningKeys, Vault
from bridge.oidc.clients import new_client
from bridge.secretbox import SecretBox
from bridge.settings import ConfigError
from bridge.store import Tx, User, migrate
from tests.bridge.conftest import Actions, callback_params, shown

ISSUER = "https://bridge.example"
SECRET = "cli-secret-0123456789abcdef"
PREFIX = "https://kc.example/realms/acme/login-actions/authenticate"


@pytest.fixture
def stepup(tmp_path, database_url, monkeypatch):
    """Run ``stepup ARGS`` on this test's data folder and database."""
    for name in [n for n in os.environ if n.startswith("STEPUP_")]:
        monkeypatch.delenv(name)
    runner = CliRunner()

    def run(*args: str, input: str | None = None, **env: str):
        base = {"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": ISSUER}
        if database_url:
            base["STEPUP_DATABASE_URL"] = database_url
        return runner.invoke(main, list(args), env={**base, **env}, input=input)

    return run


def ok(result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


def one_line_error(result, *, code: int = 2) -> str:
    """Exit ``code`` with exactly one ``stepup: error: ...`` line and no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    # (audit events are JSON lines on stderr too, for the log pipeline: not the person's)
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith('{"ts": ')]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stepup: error: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def find_client(bridge, client_id: str):
    with bridge.store.begin() as tx:
        return tx.find_client(client_id)


def login_with(act: Actions, client_id: str, secret: str, subject: str = "alice"):
    """A PAR by ``client_id`` and a finished enrollment; returns the token response."""
    response, login = act.push(subject, auth=(client_id, secret), client_id=client_id,
                               redirect_uri="https://idp.example/cb")
    assert response.status_code == 201, response.get_json()
    act.opened(login, act.client.get(f"/authorize?client_id={client_id}"
                                     f"&request_uri={response.get_json()['request_uri']}"))
    login.secret = shown(login.last_page, "totp-secret")
    act.post(login, "enroll", otp=act.code_now(login))
    done = act.post(login, "saved", saved="yes")
    return act.redeem(callback_params(done.headers["Location"])["code"], login,
                      auth=(client_id, secret))


@pytest.fixture
def serve_idle(monkeypatch):
    """`stepup serve` up to gunicorn and no further, on any port. The environment is a copy:
    serve sets PROMETHEUS_MULTIPROC_DIR in it, which must not outlive the test."""
    monkeypatch.setattr("bridge.server.run_gunicorn", lambda *args: None)
    monkeypatch.setattr("bridge.logs.configure", lambda: None)
    monkeypatch.setattr("bridge.server.cannot_listen", lambda *args: None)  # any port
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items()
                                        if k != "PROMETHEUS_MULTIPROC_DIR"
                                        and not k.startswith("STEPUP_")})


def test_serve_makes_a_new_data_folder_private(tmp_path, serve_idle):
    """docs/configuration.md: created with mode 0700. The metrics folder inside it used to
    come first, and mkdir(parents=True) made the data folder with the default mode."""
    folder = tmp_path / "new" / "data"
    old = os.umask(0o022)
    try:
        ok(CliRunner().invoke(main, ["serve"], env={"STEPUP_DATA_DIR": str(folder)}))
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o700


def test_serve_on_another_port_without_an_issuer_warns(tmp_path, serve_idle, caplog):
    """Without STEPUP_ISSUER the bridge calls itself http://127.0.0.1:5000 in discovery and
    every link: serving elsewhere, the operator is told, in a log line like every other."""
    env = {"STEPUP_DATA_DIR": str(tmp_path)}
    warned = CliRunner().invoke(main, ["serve", "--port", "8080"], env=env)
    assert warned.exit_code == 0 and warned.stderr == ""
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warning.getMessage().startswith("STEPUP_ISSUER is not set")
    for args, extra in ((["serve", "--port", "5000"], {}),
                        (["serve", "--port", "8080"], {"STEPUP_ISSUER": "https://b.example",
                                                       "STEPUP_HELP_URL": "mailto:h@b.example"})):
        caplog.clear()
        quiet = CliRunner().invoke(main, args, env={**env, **extra})
        assert quiet.exit_code == 0 and quiet.stderr == ""
        assert [r for r in caplog.records if r.levelname == "WARNING"] == []


def test_serve_with_a_plain_http_issuer_off_this_machine_warns(tmp_path, serve_idle, caplog):
    """http://mfa.example.com: no Secure cookies, no HSTS, and IdPs refuse the back channel.
    Said at start; an http issuer on this machine (the demo, a local test) is fine."""
    for issuer, warns in (("http://mfa.example.com", True), ("http://127.0.0.1:5000", False),
                          ("http://localhost:5000", False), ("https://mfa.example.com", False)):
        caplog.clear()
        started = CliRunner().invoke(main, ["serve"], env={
            "STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": issuer,
            "STEPUP_HELP_URL": "https://help.example.com"})
        assert started.exit_code == 0
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert bool(said) == warns and all(m.startswith("STEPUP_ISSUER is plain http on a host")
                                           for m in said)


def test_serve_for_real_users_without_a_help_address_warns(tmp_path, serve_idle, caplog):
    """The locked and "not set up" pages send users to their help desk; with no
    STEPUP_HELP_URL they link nothing. Said at start where users come from elsewhere."""
    for issuer, help_url, warns in (("https://mfa.example.com", "", True),
                                    ("https://mfa.example.com", "mailto:h@example.com", False),
                                    ("http://127.0.0.1:5000", "", False)):
        caplog.clear()
        started = CliRunner().invoke(main, ["serve"], env={
            "STEPUP_DATA_DIR": str(tmp_path), "STEPUP_ISSUER": issuer,
            "STEPUP_HELP_URL": help_url})
        assert started.exit_code == 0
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert said == (["STEPUP_HELP_URL is not set: a locked user is told to ask the help "
                         "desk and is given no way to reach it; set it to your help page or a "
                         "mailto: address"] if warns else []), issuer


def test_serve_refuses_a_port_it_cannot_listen_on_before_saying_it_listens(stepup, tmp_path,
                                                                           monkeypatch):
    """gunicorn said nothing useful: the banner claimed the port, then five seconds of
    retries ended in gunicorn's own log lines."""
    monkeypatch.setattr("bridge.logs.configure", lambda: None)
    # serve sets PROMETHEUS_MULTIPROC_DIR, which must not outlive the test (the metrics of the
    # tests after it would be read from files).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    # The node that has the port counts there: a refused start leaves its files (found by
    # review: they were removed first, and its counts were lost until it restarted).
    (tmp_path / "metrics").mkdir()
    live = tmp_path / "metrics" / "counter_41.db"
    live.write_bytes(b"x")
    started = []
    monkeypatch.setattr("bridge.server.run_gunicorn", lambda *args: started.append(args))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        refused = stepup("serve", "--port", str(port))
    assert refused.exit_code == 2 and "listening" not in refused.stdout
    assert refused.stderr == (f"stepup: error: cannot listen on 127.0.0.1:{port}: Address "
                              "already in use (another server there? choose a port with "
                              "--port)\n")
    unknown = stepup("serve", "--host", "no-such-host.invalid", "--port", str(port))
    assert unknown.exit_code == 2 and "no such host" in unknown.stderr
    # Not this host's address: the host to change, not the port (found by a newcomer).
    elsewhere = stepup("serve", "--host", "192.0.2.1", "--port", str(port))
    assert elsewhere.exit_code == 2
    assert elsewhere.stderr.endswith("(not an address of this host: choose one with --host)\n")
    # The listener for monitoring: its own options named.
    with socket.create_server(("127.0.0.1", 0)) as taken:
        metrics_port = taken.getsockname()[1]
        refused = stepup("serve", "--port", str(port), "--metrics-port",
                         str(metrics_port))
    assert refused.stderr == (f"stepup: error: cannot listen on 127.0.0.1:{metrics_port}: "
                              "Address already in use (another server there? choose a port "
                              "with --metrics-port)\n")
    elsewhere = stepup("serve", "--port", str(port), "--metrics-host", "192.0.2.1",
                       "--metrics-port", str(metrics_port))
    assert elsewhere.stderr.endswith("(not an address of this host: choose one with "
                                     "--metrics-host)\n")
    same = stepup("serve", "--port", str(metrics_port), "--metrics-port", str(metrics_port))
    assert same.exit_code == 2 and "--metrics-port must differ from --port" in same.stderr
    assert not started
    assert live.read_bytes() == b"x"


@pytest.mark.parametrize(("host", "port"), [("127.0.0.1", 8080), ("::1", 8090),
                                          ("fd00::5", 8090), ("node-1.internal", 443)])
def test_serve_names_each_listener_as_gunicorn_reads_it(host, port):
    """An IPv6 address in brackets: gunicorn took ``::1:8090`` for host ``::1:8090`` and no
    port, and refused to start after the banner had claimed it listened (found by review)."""
    from gunicorn.util import parse_address

    from bridge.server import listen_address

    assert parse_address(listen_address(host, port)) == (host, port)


def test_serve_clears_old_metric_files_and_refuses_a_folder_with_others(stepup, tmp_path,
                                                                         monkeypatch):
    """PROMETHEUS_MULTIPROC_DIR may name a folder that holds more than metrics: the data folder
    itself, or a shared one. Its other *.db files stay, and serve refuses it (/metrics would
    read them as metrics)."""
    ok(stepup("client", "add", "--client-id", "kept", "--client-secret", SECRET,
              "--redirect-uri", "https://idp.example/cb"))
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    metric_files = ["counter_41.db", "gauge_livesum_41.db", "histogram_7.db", "summary_7.db"]
    for name in [*metric_files, "counter_notes.db"]:
        (metrics / name).write_bytes(b"x")
    started = []
    monkeypatch.setattr("bridge.server.run_gunicorn", lambda *args: started.append(args))
    monkeypatch.setattr("bridge.logs.configure", lambda: None)
    monkeypatch.setattr("bridge.server.cannot_listen", lambda *args: None)  # any port

    error = one_line_error(stepup("serve", PROMETHEUS_MULTIPROC_DIR=str(metrics)))
    assert "counter_notes.db" in error and not started
    assert all((metrics / name).exists() for name in [*metric_files, "counter_notes.db"])
    (metrics / "counter_notes.db").unlink()
    ok(stepup("serve", PROMETHEUS_MULTIPROC_DIR=str(metrics)))
    assert started and not list(metrics.iterdir())

    if (tmp_path / "stepup.db").exists():  # SQLite: the data folder as the metrics folder
        one_line_error(stepup("serve", PROMETHEUS_MULTIPROC_DIR=str(tmp_path)))
        assert "kept\t" in ok(stepup("client", "list"))


class TestClientAdd:
    def test_secret_client_can_authenticate(self, stepup, app, bridge, act):
        out = ok(stepup("client", "add", "--client-id", "kc", "--client-secret", SECRET,
                        "--redirect-uri", "https://idp.example/cb"))
        assert SECRET not in out
        record = find_client(bridge, "kc")
        assert record.redirect_uris == ["https://idp.example/cb"]
        assert record.secret_digest and SECRET not in record.secret_digest
        token = login_with(act, "kc", SECRET)
        assert token.status_code == 200, token.get_json()

    def test_jwks_client_with_uris_and_prefix(self, stepup, bridge):
        ok(stepup("client", "add", "--client-id", "kc-jwt",
                  "--jwks-uri", "https://kc.example/realms/acme/protocol/openid-connect/certs",
                  "--redirect-uri", "https://idp.example/cb",
                  "--redirect-uri", "https://idp.example/cb2",
                  "--redirect-uri-prefix", PREFIX, "--id-token-alg", "RS256"))
        record = find_client(bridge, "kc-jwt")
        assert record.jwks_uri.endswith("/certs") and record.secret_digest is None
        assert record.redirect_uris == ["https://idp.example/cb", "https://idp.example/cb2"]
        assert record.redirect_uri_prefixes == [PREFIX]
        assert record.id_token_alg == "RS256"

    def test_duplicate_needs_replace(self, stepup, bridge, act):
        ok(stepup("client", "add", "--client-id", "kc", "--client-secret", SECRET,
                  "--redirect-uri", "https://idp.example/cb"))
        line = one_line_error(stepup("client", "add", "--client-id", "kc", "--client-secret",
                                     "another-secret-0123456789", "--redirect-uri",
                                     "https://idp.example/cb"))
        assert "kc" in line and "--replace" in line
        assert login_with(act, "kc", SECRET).status_code == 200  # unchanged

    def test_replace(self, stepup, bridge, act):
        ok(stepup("client", "add", "--client-id", "kc", "--client-secret", SECRET,
                  "--redirect-uri", "https://idp.example/cb"))
        ok(stepup("client", "add", "--client-id", "kc", "--client-secret",
                  "another-secret-0123456789", "--redirect-uri", "https://idp.example/cb",
                  "--replace"))
        assert act.push("alice", auth=("kc", SECRET), client_id="kc",
                        redirect_uri="https://idp.example/cb")[0].status_code == 401
        assert login_with(act, "kc", "another-secret-0123456789").status_code == 200

    @pytest.mark.parametrize("args", [
        ["--redirect-uri", "ftp://idp.example/cb"],
        ["--redirect-uri", "https://idp.example/cb#frag"],
        ["--redirect-uri", "not a url"],
        ["--redirect-uri", "https:///no-host"],
        ["--redirect-uri", "https://idp.example/cb", "--redirect-uri-prefix", "javascript:x"],
        [],
        # Never matched at /par (VSCHAR only; urlsplit drops the newline unseen), and printed
        # raw by `client list`.
        ["--redirect-uri", "https://idp.example/c\nb"],
        ["--redirect-uri", "https://idp.example/ x"],
        ["--redirect-uri", "https://idp.example/cb", "--redirect-uri-prefix",
         "https://idp.example/\x1b[2Jp"],
        # Registered, but never usable at /par (RFC 6749 §3.1.2; the response's parameters).
        ["--redirect-uri", "https://idp.example/cb#"],
        ["--redirect-uri", "https://idp.example/cb", "--redirect-uri-prefix",
         "https://idp.example/p#"],
        ["--redirect-uri", "https://user@idp.example/cb"],
        ["--redirect-uri", "https://idp.example/cb", "--redirect-uri-prefix",
         "https://user@idp.example/p"],
        ["--redirect-uri", "https://idp.example/cb?code=1"],
        ["--redirect-uri", "https://idp.example/cb?a=1&state="],
        # The code would cross the network in clear (RFC 9700 §2.6): https, but for this machine.
        ["--redirect-uri", "http://idp.example/cb"],
        ["--redirect-uri", "https://idp.example/cb", "--redirect-uri-prefix",
         "http://10.0.0.5:8080/realms/acme/login-actions/authenticate"],
    ], ids=["ftp", "fragment", "not-url", "no-host", "bad-prefix", "none", "newline", "space",
            "escape-in-prefix", "empty-fragment", "prefix-empty-fragment", "userinfo",
            "prefix-userinfo", "code-in-query", "state-in-query", "plain-http",
            "prefix-plain-http"])
    def test_bad_redirect_uri(self, stepup, bridge, args):
        one_line_error(stepup("client", "add", "--client-id", "kc", "--client-secret", SECRET,
                              *args))
        assert find_client(bridge, "kc") is None

    def test_a_redirect_uri_urlsplit_cannot_read_is_named_as_no_url(self, stepup, bridge):
        """Not urlsplit's "Invalid IPv6 URL", which names neither the option nor the value."""
        said = one_line_error(stepup("client", "add", "--client-id", "kc", "--client-secret",
                                     SECRET, "--redirect-uri", "https://[idp.example/cb"))
        assert said.endswith("not an http(s) URL without fragment: 'https://[idp.example/cb'")
        assert find_client(bridge, "kc") is None

    @pytest.mark.parametrize("uri", ["http://127.0.0.1:8080/cb", "http://localhost/cb",
                                     "http://[::1]:8080/cb"])
    def test_plain_http_to_this_machine_is_a_redirect_uri(self, stepup, bridge, uri):
        """The demo, a Keycloak in start-dev on this machine: nothing crosses a network."""
        ok(stepup("client", "add", "--client-id", "kc", "--client-secret", SECRET,
                  "--redirect-uri", uri))
        assert find_client(bridge, "kc").redirect_uris == [uri]

    @pytest.mark.parametrize("args", [
        ["--client-secret", SECRET, "--jwks-uri", "https://kc.example/certs"],
        [],
        ["--client-secret", "short"],
        ["--jwks-uri", "file:///etc/passwd"],
        ["--jwks-uri", "http://kc.example/certs"],
        ["--jwks-uri", "https://kc.example/cer\tts"],
        # A form-encoding client (RFC 6749 §2.3.1) would send "+" or "%25" in HTTP Basic.
        ["--client-secret", "abc def ghi jkl mno pqr"],
        ["--client-secret", "abc%20def-ghi-jkl-mno"],
        ["--client-secret", "abc\u00e9def-ghi-jkl-mno"],
    ], ids=["both", "neither", "short-secret", "jwks-not-http", "jwks-plain-http", "jwks-tab",
            "secret-space", "secret-percent", "secret-not-ascii"])
    def test_bad_authentication_option(self, stepup, bridge, args):
        one_line_error(stepup("client", "add", "--client-id", "kc", *args,
                              "--redirect-uri", "https://idp.example/cb"))
        assert find_client(bridge, "kc") is None

    @pytest.mark.parametrize("secret", ["s" * 15, "s" * 1025], ids=["short", "long"])
    def test_a_secret_of_the_wrong_length_is_told_so(self, stepup, bridge, secret):
        """Found by review: one over 1024 characters was called not printable ASCII."""
        assert one_line_error(stepup("client", "add", "--client-id", "kc", "--client-secret",
                                     secret, "--redirect-uri", "https://idp.example/cb")) == (
            "stepup: error: the client secret must be 16 to 1024 characters")

    @pytest.mark.parametrize("client_id", ["kc idp", "kc%20idp", "kc:idp", "k\u00e9", "x" * 256])
    def test_bad_client_id(self, stepup, bridge, client_id):
        one_line_error(stepup("client", "add", "--client-id", client_id, "--client-secret",
                              SECRET, "--redirect-uri", "https://idp.example/cb"))
        assert find_client(bridge, client_id) is None

    def test_the_secret_may_come_from_the_environment_not_the_process_list(self, stepup, act):
        ok(stepup("client", "add", "--client-id", "kc-env",
                  "--redirect-uri", "https://idp.example/cb", STEPUP_CLIENT_SECRET=SECRET))
        assert login_with(act, "kc-env", SECRET)


class TestClientListRemove:
    def test_list_never_prints_the_secret(self, stepup, bridge):
        ok(stepup("client", "add", "--client-id", "kc", "--client-secret", SECRET,
                  "--redirect-uri", "https://idp.example/cb", "--redirect-uri-prefix", PREFIX))
        out = ok(stepup("client", "list"))
        assert "kc" in out and "https://idp.example/cb" in out and PREFIX in out
        assert SECRET not in out
        assert find_client(bridge, "kc").secret_digest not in out

    def test_list_flags_a_jwks_uri_in_clear_registered_before_such_were_refused(self, stepup,
                                                                               bridge):
        """Found by a hostile-input probe: its keys came over plain http, so whoever was on
        the way could be the client. Refused since; one registered before is pointed out."""
        record = new_client(bridge.secrets.pepper, "portal", secret=None,
                            jwks_uri="https://keys.example/jwks.json",
                            redirect_uris=["https://idp.example/cb"], redirect_uri_prefixes=[])
        with bridge.store.begin() as tx:
            tx.add_client(dataclasses.replace(record, jwks_uri="http://keys.example/jwks.json"))
        listed = ok(stepup("client", "list"))
        assert "PLAIN HTTP JWKS: whoever is on the way can be this client" in listed
        assert "codes cross the network" not in listed  # its redirect URI is fine

    def test_a_name_for_the_notices_listed_and_changed_without_ending_sign_ins(
            self, stepup, bridge, act):
        add = ["client", "add", "--client-id", "kc", "--client-secret", SECRET,
               "--redirect-uri", "https://idp.example/cb"]
        ok(stepup(*add, "--client-name", "Acme\u00a0staff  portal "))  # spaces made plain
        assert find_client(bridge, "kc").client_name == "Acme staff portal"
        assert "\tname=Acme staff portal" in ok(stepup("client", "list"))
        pushed, _ = act.push("alice", auth=("kc", SECRET), client_id="kc",
                             redirect_uri="https://idp.example/cb")
        assert ok(stepup(*add, "--client-name", "Acme Portal", "--replace")) == (
            "Renamed client kc (its sign-ins in progress go on)\n")
        assert find_client(bridge, "kc").client_name == "Acme Portal"
        assert ok(stepup(*add, "--client-name", "Acme Portal", "--replace")) == (
            "Client kc is already registered with these settings: nothing changed\n")
        # Only the name changed: the request pushed before still starts its sign-in.
        page = act.client.get("/authorize", query_string={
            "client_id": "kc", "request_uri": pushed.get_json()["request_uri"]})
        assert page.status_code == 200, page.get_data(as_text=True)
        with bridge.store.begin() as tx:
            [renamed] = tx.audit_events(subject=None, event="client_renamed", before=None,
                                        since=None, limit=5)
        assert renamed["client_id"] == "kc"
        for bad in ("", "   ", "a\u202eb", "x" * 101):
            assert "client name" in one_line_error(stepup(*add, "--client-name", bad,
                                                          "--replace"))
        assert find_client(bridge, "kc").client_name == "Acme Portal"

    def test_remove(self, stepup, bridge, act):
        ok(stepup("client", "add", "--client-id", "kc", "--client-secret", SECRET,
                  "--redirect-uri", "https://idp.example/cb"))
        for answer in ("n\n", ""):  # no, or no terminal to ask on
            result = stepup("client", "remove", "kc", input=answer)
            assert "Remove client kc? All sign-ins it hands off are refused" in result.output
            assert one_line_error(result) == ("stepup: error: not confirmed: nothing was removed "
                                              "(--yes to skip the question)")
            assert find_client(bridge, "kc") is not None
        ok(stepup("client", "remove", "kc", input="y\n"))
        assert find_client(bridge, "kc") is None
        assert "kc\t" not in ok(stepup("client", "list"))
        assert act.push("alice", auth=("kc", SECRET), client_id="kc",
                        redirect_uri="https://idp.example/cb")[0].status_code == 401

    def test_remove_unknown(self, stepup, app):
        assert "nobody" in one_line_error(stepup("client", "remove", "nobody", "--yes"), code=1)
        assert "nobody" in one_line_error(stepup("client", "remove", "nobody"), code=1)  # asks not


class TestUser:
    @pytest.mark.parametrize("command", [["show"], ["unlock"], ["reset", "--yes"]])
    @pytest.mark.parametrize("subject", ["x" * 256, "a\x01b", ""], ids=["256", "control", "empty"])
    def test_a_subject_no_user_can_have_is_refused_before_any_audit_row(
            self, stepup, bridge, command, subject):
        """The API's check: over 255 characters the audit row would not fit PostgreSQL's
        column, and the error read "the database is not reachable"."""
        error = one_line_error(stepup("user", command[0], subject, *command[1:]))
        assert "not a subject" in error
        with bridge.store.begin() as tx:
            assert tx.audit_events(subject=None, event=None, before=None, since=None,
                                   limit=10) == []

    def test_show_unknown(self, stepup, app):
        """Exit 1, as grep: a script tells "no such user" from a user shown (0)."""
        shown = stepup("user", "show", "nobody")
        assert shown.exit_code == 1, shown.output
        assert "nobody" in shown.stdout and "not enrolled" in shown.stdout
        assert "the IdP's subject" in shown.stdout  # no history at all: maybe a username

    def test_show_enrolled(self, stepup, act):
        login, _ = act.enroll("alice")
        out = ok(stepup("user", "show", "alice"))
        assert "alice: enrolled" in out and "active" in out
        assert "enrollment" in out  # the audit trail
        assert login.secret not in out and login.recovery_code not in out
        assert login.recovery_code.replace("-", "") not in out

    def test_reset(self, stepup, bridge, act, clock):
        act.enroll("alice")
        out = ok(stepup("user", "reset", "alice", "--yes"))
        assert "alice" in out
        with bridge.store.begin() as tx:
            assert tx.find_user("alice") is None
            events = [e["event"] for e in tx.audit_trail("alice")]
        assert events[0] == "helpdesk_reset"
        shown = stepup("user", "show", "alice")
        assert shown.exit_code == 1
        # Said as a reset, not with the "subject, not username" hint of a subject never seen.
        assert shown.stdout.startswith("alice: not enrolled (the help desk reset their "
                                       "factors on ")
        assert "the IdP's subject" not in shown.stdout
        # What happened to them is still shown; the shell's event has no client and no
        # address, and says so in their columns.
        assert re.search(r'  helpdesk_reset +- - \{"operator": ', shown.stdout)
        # At the next sign-in the user enrolls again.
        clock.advance(30)
        assert 'id="totp-secret"' in act.start("alice").last_page

    def test_reset_asks_first(self, stepup, bridge, act):
        act.enroll("alice")
        # No, and no answer at all (a script without --yes: end of input): 2, as a usage
        # error; 1 would read as "not enrolled" (docs/helpdesk.md).
        for answer in ("n\n", ""):
            result = stepup("user", "reset", "alice", input=answer)
            assert one_line_error(result) == ("stepup: error: not confirmed: nothing was reset "
                                              "(--yes to skip the question)")
        with bridge.store.begin() as tx:
            assert tx.find_user("alice") is not None
            assert "helpdesk_reset" not in [e["event"] for e in tx.audit_trail("alice")]

    def test_reset_unknown(self, stepup, bridge):
        assert "nobody" in one_line_error(stepup("user", "reset", "nobody", "--yes"), code=1)
        with bridge.store.begin() as tx:  # the attempt, refused, is in the trail
            [refused] = tx.audit_trail("nobody")
        assert refused["event"] == "helpdesk_refused"
        assert {k: refused["detail"][k] for k in ("action", "reason")} == {
            "action": "reset", "reason": "not_enrolled"}


def kid_of(token_response) -> str:
    assert token_response.status_code == 200, token_response.get_json()
    return jws.extract_compact(token_response.get_json()["id_token"].encode()).headers()["kid"]


def published(client) -> set[str]:
    return {key["kid"] for key in client.get("/jwks").get_json()["keys"]}


class TestKeysRotate:
    """The CLI runs on the real clock, the apps on FakeClock (up to 30 s behind it): the CLI
    creates the keys first and FakeClock is moved ahead of it, as every node's clock is."""

    @pytest.fixture
    def idp(self, stepup, clock) -> tuple[str, str]:
        ok(stepup("client", "add", "--client-id", "kc", "--client-secret", SECRET,
                  "--redirect-uri", "https://idp.example/cb"))
        clock.now = max(clock.now, time.time()) + 30
        return "kc", SECRET

    def test_rotate_now(self, stepup, make_app, clock, idp):
        before = make_app()
        act = Actions(before.test_client(), before.extensions["stepup"], clock)
        old_kid = kid_of(login_with(act, *idp))
        old_published = published(act.client)
        ok(stepup("keys", "rotate", "--publish-ahead", "0"))
        clock.now = max(clock.now, time.time()) + 30
        after = make_app()  # a node started after the rotation (others re-read within 30 s)
        act = Actions(after.test_client(), after.extensions["stepup"], clock)
        new_kid = kid_of(login_with(act, *idp, "bob"))
        assert new_kid != old_kid
        assert old_published < published(act.client)
        assert new_kid in published(act.client)

    def test_rotate_publishes_ahead(self, stepup, make_app, clock, idp):
        app = make_app()
        act = Actions(app.test_client(), app.extensions["stepup"], clock)
        old_kid = kid_of(login_with(act, *idp))
        ok(stepup("keys", "rotate"))
        app = make_app()
        act = Actions(app.test_client(), app.extensions["stepup"], clock)
        assert len(published(act.client)) == 4  # the new keys are published at once...
        assert kid_of(login_with(act, *idp, "bob")) == old_kid  # ...and sign later
        clock.now = time.time() + PUBLISH_AHEAD - 20  # the JWKS a cache holds may lack them
        assert kid_of(login_with(act, *idp, "carol")) == old_kid
        clock.now = time.time() + PUBLISH_AHEAD + 1
        new_kid = kid_of(login_with(act, *idp, "dave"))
        assert new_kid != old_kid and new_kid in published(act.client)

    def test_the_latest_rotation_wins(self, stepup, make_app, clock, idp):
        """A routine rotation (published ahead), then an emergency one (now): when the first
        one's keys would have started, the emergency keys keep signing; the keys published
        ahead, which never signed, are withdrawn."""
        original = published(make_app().test_client())
        ok(stepup("keys", "rotate"))
        ahead = published(make_app().test_client()) - original
        assert len(ahead) == 2  # ES256 and RS256, not signing yet
        ok(stepup("keys", "rotate", "--publish-ahead", "0"))
        clock.now = time.time() + 5
        app = make_app()
        act = Actions(app.test_client(), app.extensions["stepup"], clock)
        emergency = kid_of(login_with(act, *idp))
        assert emergency not in ahead | original
        assert not ahead & published(act.client)
        clock.now = time.time() + PUBLISH_AHEAD + 60
        assert kid_of(login_with(act, *idp, "bob")) == emergency

    def test_an_emergency_rotation_keeps_signing_after_a_kept_key_was_due(self, bridge):
        """The routine rotation's keys were due within the minute, so they stay published (a
        node whose clock runs ahead may sign with them); the emergency keys, made later, still
        sign from then on (found by review: the kept keys took over when their time came)."""
        keys, start = bridge.signing_keys, bridge.clock() + 1000
        keys.rotate(start, PUBLISH_AHEAD)
        emergency = set(keys.rotate(start + PUBLISH_AHEAD - 50, 0))
        for later in (51, 60, 1000):
            keys.clock = lambda later=later: start + PUBLISH_AHEAD + later
            keys._loaded_at = float("-inf")  # a node that reads the ring afresh
            assert {keys.active("ES256").kid, keys.active("RS256").kid} == emergency

    def test_two_rotations_at_once_take_turns(self, make_app, monkeypatch):
        """Found by review: on PostgreSQL a rotation read the ring unlocked, so an emergency
        one that came during a routine one (RSA generation makes a rotation take a while)
        never saw the routine keys, and they took over signing when their time came although
        the emergency rotation committed last. The ring is held: the second waits for the
        first and sees its keys."""
        routine, emergency = (make_app().extensions["stepup"].signing_keys for _ in range(2))
        add = SigningKeys._add

        def slow(ring, tx, now, ahead):
            kids = add(ring, tx, now, ahead)
            time.sleep(1.0 if ahead else 2.0)  # the emergency one, begun later, ends last
            return kids

        monkeypatch.setattr(SigningKeys, "_add", slow)
        now, made = time.time(), {}

        def rotate(name, ring, ahead, after):
            time.sleep(after)
            made[name] = set(ring.rotate(now, ahead))

        threads = [threading.Thread(target=rotate, args=("routine", routine, PUBLISH_AHEAD, 0)),
                   threading.Thread(target=rotate, args=("emergency", emergency, 0, 0.3))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        emergency.clock = lambda: now + PUBLISH_AHEAD + 60
        emergency._loaded_at = float("-inf")  # a node that reads the ring afresh
        assert {emergency.active("ES256").kid, emergency.active("RS256").kid} == (
            made["emergency"])

    def test_a_rotation_is_recorded_with_its_keys_or_not_made(self, stepup, make_app, idp,
                                                               monkeypatch):
        """The audit event is written in the rotation's transaction: when writing it fails,
        the command's error is true (no keys changed), and a retry rotates once."""
        before = published(make_app().test_client())
        audit = Tx.audit

        def failing(tx, event, *args, **kwargs):
            if event == "signing_key_rotation":
                raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
            return audit(tx, event, *args, **kwargs)

        monkeypatch.setattr(Tx, "audit", failing)
        assert stepup("keys", "rotate").exit_code != 0
        assert published(make_app().test_client()) == before
        monkeypatch.setattr(Tx, "audit", audit)
        ok(stepup("keys", "rotate"))
        after = published(make_app().test_client())
        with make_app().extensions["stepup"].store.begin() as tx:
            [event] = tx.audit_events(subject=None, event="signing_key_rotation", before=None,
                                      since=None, limit=10)
        assert set(event["detail"]["kids"]) == after - before and len(after - before) == 2
        assert event["detail"]["operator"]

    def test_keys_about_to_sign_are_not_withdrawn(self, stepup, make_app, clock, idp):
        """A key due within a node's cached ring and clock skew may already sign on a node
        whose clock runs ahead: a later rotation leaves it published."""
        ok(stepup("keys", "rotate", "--publish-ahead", "30"))
        due = published(make_app().test_client())
        ok(stepup("keys", "rotate", "--publish-ahead", "0"))
        assert due <= published(make_app().test_client())

    def test_node_with_a_slower_clock_can_sign(self, stepup, make_app, clock):
        """Keys made by one process (here the CLI) sign at once on a node whose clock is a
        few seconds behind (clock skew between hosts)."""
        ok(stepup("client", "add", "--client-id", "kc", "--client-secret", SECRET,
                  "--redirect-uri", "https://idp.example/cb"))
        clock.now = time.time() - 5
        app = make_app()
        act = Actions(app.test_client(), app.extensions["stepup"], clock)
        assert login_with(act, "kc", SECRET).status_code == 200

    @pytest.fixture
    def foreign(self, tmp_path) -> str:
        """A shell's STEPUP_ENCRYPTION_KEYS that puts first a key the nodes lack."""
        return f"k3:{NEW_KEY},{','.join(stored_secrets(tmp_path)['encryption_keys'])}"

    def test_a_new_encryption_key_first_is_refused_until_it_seals_the_ring(
            self, stepup, make_app, tmp_path, foreign):
        """Found by review: one rotation from a shell whose first encryption key the nodes
        lacked sealed keys no node could open: every node's /readyz 503, /jwks and /token 500
        within 30 s. Refused, nothing changed; after the documented `rotate-encryption` (the
        ring sealed with the new key, which every node has by then) it runs."""
        before = ring(make_app())
        refused = one_line_error(stepup("keys", "rotate", STEPUP_ENCRYPTION_KEYS=foreign))
        assert "encryption key 'k3' (first in STEPUP_ENCRYPTION_KEYS), which seals no " \
               "signing key yet" in refused
        assert "run `stepup keys rotate-encryption` first" in refused
        assert ring(make_app()) == before
        file = tmp_path / "keys" / "secrets.json"  # what nodes and commands read: k3 first
        file.write_text(json.dumps({**stored_secrets(tmp_path),
                                    "encryption_keys": foreign.split(",")}))
        ok(stepup("keys", "rotate-encryption"))
        ok(stepup("keys", "rotate"))
        after = ring(make_app())
        assert len(after) == len(before) + 2 and set(after.values()) == {"k3"}

    def test_the_override_rotates_and_deleting_its_keys_recovers_the_nodes(
            self, stepup, make_app, foreign):
        """--new-encryption-key-everywhere rotates. Used wrongly (a node lacks the key, and
        the key is lost), the nodes recover on their next ring read once the keys sealed with
        it are deleted, as docs/operations.md ("Steps out of order") says."""
        node = make_app()
        node.extensions["stepup"].signing_keys.refresh = 0  # its next request reads the ring
        client = node.test_client()
        before = published(client)
        ok(stepup("keys", "rotate", "--new-encryption-key-everywhere",
                  STEPUP_ENCRYPTION_KEYS=foreign))
        assert sorted(ring(node).values()).count("k3") == 2
        assert client.get("/readyz").status_code == 503
        assert client.get("/jwks").status_code == 500
        with node.extensions["stepup"].store.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM signing_keys WHERE substr(sealed_jwk, 1, 3) = 'k3.'"))
        assert client.get("/readyz").status_code == 200
        assert published(client) == before


#: An encryption key no node of these tests has.
NEW_KEY = base64.urlsafe_b64encode(b"3" * 32).decode()


def stored_secrets(folder) -> dict:
    return json.loads((folder / "keys" / "secrets.json").read_text())


def ring(app) -> dict[str, str]:
    """Each signing key's kid and the id of the encryption key that seals it."""
    with app.extensions["stepup"].store.begin() as tx:
        return {row["kid"]: row["sealed_jwk"].partition(".")[0] for row in tx.signing_keys()}


class TestTotpSecretsUnderAMissingKey:
    """Found by review: an encryption key removed while users' TOTP secrets were still
    sealed with it (`keys rotate-encryption` skipped, or a restore from a backup taken then,
    after `keys rotate` had re-sealed the ring): the node started, /readyz said ready, and
    each such user failed at sign-in, one by one. Refused at start, in one line; the
    commands that repair it still run."""

    @pytest.fixture
    def lost(self, make_app):
        """Two users whose secrets are sealed with key 'gone', which the nodes lack."""
        bridge = make_app().extensions["stepup"]
        gone = Vault(SecretBox({"gone": b"g" * 32}, "gone"))
        with bridge.store.begin() as tx:
            for subject in ("ann", "ben"):
                assert tx.add_user(User(
                    subject=subject, display_name=None,
                    totp_secret=gone.seal("totp_secret", subject, "JBSWY3DPEHPK3PXP"),
                    totp_last_step=0, recovery_digest="0" * 64, recovery_version=1,
                    failures=0, last_failure_at=None, locked_at=None, created_at=time.time()))
        return bridge

    def test_the_start_is_refused_and_the_commands_repair_it(self, lost, stepup, make_app,
                                                             tmp_path, serve_idle):
        refused = one_line_error(stepup("serve"))
        assert refused.startswith("stepup: error: users' TOTP secrets are sealed with "
                                  "encryption keys this node lacks: 'gone' (2 users); give it "
                                  "that key")
        assert "`stepup user reset`" in refused
        ok(stepup("user", "show", "ann"))
        listed = stepup("keys", "rotate-encryption")
        assert listed.exit_code == 2
        assert "cannot open: TOTP secret of user 'ann': no encryption key with id 'gone'" \
            in listed.stderr
        given_back = ",".join([*stored_secrets(tmp_path)["encryption_keys"],
                               f"gone:{base64.urlsafe_b64encode(b'g' * 32).decode()}"])
        make_app(encryption_keys=given_back)  # the key given back: it starts
        ok(stepup("user", "reset", "--yes", "ann"))
        with pytest.raises(ConfigError, match=r"'gone' \(1 user\);"):
            make_app()
        ok(stepup("user", "reset", "--yes", "ben"))
        make_app()

    # Secrets are made up for the embedded database only.
    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    def test_a_secrets_file_made_up_for_the_refused_start_is_taken_back(
            self, lost, make_app, tmp_path, database_url):
        """No signing key to check the encryption keys against (deleted to recover from a
        lost key), no secrets file: the start would make up keys, and the signing keys it
        made with them would outlive the file."""
        secrets_file = tmp_path / "keys" / "secrets.json"
        pepper = stored_secrets(tmp_path)["pepper"]
        with lost.store.begin() as tx:
            for row in tx.signing_keys():
                tx.remove_signing_key(row["kid"])
        secrets_file.unlink()
        with pytest.raises(ConfigError, match=r"'gone' \(2 users\)"):
            make_app(pepper=pepper)
        assert not secrets_file.exists()
        with lost.store.begin() as tx:
            assert not tx.signing_keys()


class TestBadSettings:
    @pytest.mark.parametrize("env, name", [
        ({"STEPUP_LOCKOUT_LIMIT": "101"}, "STEPUP_LOCKOUT_LIMIT"),
        ({"STEPUP_LOCKOUT_LIMIT": "0"}, "STEPUP_LOCKOUT_LIMIT"),
        ({"STEPUP_LOCKOUT_LIMIT": "abc"}, "STEPUP_LOCKOUT_LIMIT"),
        ({"STEPUP_ISSUER": "ftp://x"}, "STEPUP_ISSUER"),
        ({"STEPUP_ISSUER": "https://bridge.example/"}, "STEPUP_ISSUER"),
    ], ids=["lockout-101", "lockout-0", "lockout-abc", "issuer-ftp", "issuer-slash"])
    @pytest.mark.parametrize("command", [["client", "list"], ["user", "show", "alice"],
                                         ["keys", "rotate"], ["db", "upgrade"]],
                             ids=["client-list", "user-show", "keys-rotate", "db-upgrade"])
    def test_one_line_and_exit_2(self, stepup, env, name, command):
        assert name in one_line_error(stepup(*command, **env))

    def test_config_file_error(self, stepup, tmp_path):
        config = tmp_path / "stepup.toml"
        config.write_text("lockout_limit = [")
        assert "STEPUP_CONFIG" in one_line_error(
            stepup("client", "list", STEPUP_CONFIG=str(config)))


class TestDbUpgrade:
    def test_fresh_sqlite_database(self, stepup, tmp_path):
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        out = ok(stepup("db", "upgrade", STEPUP_DATABASE_URL=url))
        assert migrate.head() in out
        engine = sa.create_engine(url)
        try:
            assert migrate.current(engine) == migrate.head()
            assert {"clients", "users", "pushed_requests", "codes"} <= set(
                sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()
        ok(stepup("db", "upgrade", STEPUP_DATABASE_URL=url))  # idempotent
        ok(stepup("client", "list", STEPUP_DATABASE_URL=url))

    def test_the_default_sqlite_file_in_a_data_folder_not_made_yet(self, stepup, tmp_path):
        """The quick set-up: no STEPUP_DATABASE_URL, and `db upgrade` the first command."""
        folder = tmp_path / "not-yet"
        out = ok(stepup("db", "upgrade", STEPUP_DATA_DIR=str(folder), STEPUP_DATABASE_URL=""))
        assert migrate.head() in out and (folder / "stepup.db").is_file()

    def test_unmigrated_database_is_refused(self, stepup, tmp_path):
        (tmp_path / "empty.db").touch()
        url = f"sqlite:///{tmp_path / 'empty.db'}"
        line = one_line_error(stepup("client", "list", STEPUP_DATABASE_URL=url))
        assert "no schema yet" in line and "`stepup db upgrade`" in line


class TestDbStatus:
    """`stepup db status`: which schema, what an upgrade would apply and whether the nodes can
    be restarted one by one; it reads only."""

    def test_no_database_yet_is_not_made_by_looking(self, stepup, tmp_path):
        folder = tmp_path / "not-yet"
        result = stepup("db", "status", STEPUP_DATA_DIR=str(folder), STEPUP_DATABASE_URL="")
        assert result.exit_code == 1, result.output
        assert f"creates schema {migrate.HEAD}" in result.stdout
        assert not (folder / "stepup.db").exists()

    def test_an_older_schema_lists_what_the_upgrade_applies(self, stepup, tmp_path):
        url = f"sqlite:///{tmp_path / 'old.db'}"
        engine = sa.create_engine(url)
        migrate.upgrade(engine, "0005")
        result = stepup("db", "status", STEPUP_DATABASE_URL=url)
        assert result.exit_code == 1, result.output
        listed = [line.split()[0] for line in result.stdout.splitlines()
                  if line.startswith("  0")]
        assert listed == [f"{n:04d}" for n in range(6, int(migrate.HEAD) + 1)]
        assert "restart the nodes one by one" in result.stdout
        assert migrate.current(engine) == "0005"  # read, not migrated
        engine.dispose()

    def test_a_rename_says_stop_every_node(self, stepup, tmp_path):
        """0003 renames a column the nodes before it read, and nodes before 0004 would accept
        a step its wrong-clock hints burn: not a rolling upgrade."""
        url = f"sqlite:///{tmp_path / 'older.db'}"
        migrate.upgrade(sa.create_engine(url), "0002")
        result = stepup("db", "status", STEPUP_DATABASE_URL=url)
        assert result.exit_code == 1
        assert "Nodes on 0002 cannot run beside 0003, 0004: stop every node" in result.stdout

    def test_the_url_it_names_shows_no_password(self, stepup):
        url = "postgresql+psycopg://stepup:s3cret-pw@127.0.0.1:9/stepup?sslpassword=k3y-pw"
        result = stepup("db", "status", STEPUP_DATABASE_URL=url)
        assert result.exit_code == 2  # nothing listens on port 9
        assert result.stdout.startswith("Database: postgresql+psycopg://stepup:***@127.0.0.1:9/")
        assert "s3cret-pw" not in result.output and "k3y-pw" not in result.output

    def test_current_and_newer(self, stepup, tmp_path):
        url = f"sqlite:///{tmp_path / 'current.db'}"
        ok(stepup("db", "upgrade", STEPUP_DATABASE_URL=url))
        assert "Nothing to upgrade" in ok(stepup("db", "status", STEPUP_DATABASE_URL=url))
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        engine.dispose()
        assert "newer than this bridge" in one_line_error(
            stepup("db", "status", STEPUP_DATABASE_URL=url))


def test_a_missing_extra_names_the_extra_in_one_line(stepup, monkeypatch):
    """`stepup keycloak …` without python-keycloak: which extra to install, not a traceback."""
    import sys

    monkeypatch.setitem(sys.modules, "keycloak", None)  # import keycloak -> ImportError
    for name in [m for m in sys.modules if m.startswith("stepup_keycloak")]:
        monkeypatch.delitem(sys.modules, name)
    result = stepup("keycloak", "audit", "--server-url", "http://127.0.0.1:9", "--realm", "r",
                    "--admin-user", "a", "--admin-password", "p")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "stepup: error: keycloak is not installed: install the bridge with its 'keycloak' "
        "extra (from the clone: pip install '.[keycloak]')")


#: The demo runs on the embedded database only (a PostgreSQL run's URL is dropped).
DEMO = {"STEPUP_ISSUER": None, "STEPUP_DATABASE_URL": None}


@pytest.fixture
def demo_stops(monkeypatch):
    """A demo that starts returns at once (as after Ctrl+C) instead of serving forever."""
    from types import SimpleNamespace

    from bridge.cli import base

    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(base, "time", SimpleNamespace(sleep=interrupt))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.parametrize("variable", ["STEPUP_CONFIG", "STEPUP_DATABASE_URL"])
def test_a_demo_refuses_a_deployment_s_config_file_or_database(stepup, demo_stops, tmp_path,
                                                               variable):
    """A config file (its issuer, data folder, database) or a database URL exported for a real
    deployment: the demo would serve that database as a plain-http bridge and register its
    IdP there. One line, and nothing touched."""
    production = tmp_path / "production"
    production.mkdir()
    config = tmp_path / "stepup.toml"
    config.write_text(f'issuer = "https://mfa.example.com"\ndata_dir = "{production}"\n')
    value = str(config) if variable == "STEPUP_CONFIG" else f"sqlite:///{production}/bridge.db"
    port, idp_port = free_ports(2)
    result = stepup("demo", "--port", str(port), "--idp-port", str(idp_port),
                    **{**DEMO, variable: value})
    assert one_line_error(result) == (
        "stepup: error: the demo runs on the embedded database of its own data folder only, "
        f"not on {variable}: unset it to run the demo")
    assert list(production.iterdir()) == []


def test_a_demo_checks_the_settings_it_loads_not_only_the_variables(stepup, demo_stops,
                                                                   monkeypatch):
    """Should the settings come from somewhere else one day (another file, a secret store)."""
    from bridge.cli import base
    from bridge.settings import Settings

    monkeypatch.setattr(base, "load_settings",
                        lambda: Settings(issuer="https://mfa.example.com"))
    result = stepup("demo", "--port", "5741", "--idp-port", "5742", **DEMO)
    assert one_line_error(result) == (
        "stepup: error: the demo serves the bridge at http://127.0.0.1:5741 on its own data "
        "folder's database, but the settings name another: unset them to run the demo")


def test_two_demos_on_one_data_folder_each_keep_their_idp_s_secret(stepup, demo_stops,
                                                                  monkeypatch, tmp_path):
    """A second demo on other ports with the same data folder: a client of its own, not the
    first one's replaced (whose sign-ins would all fail with invalid_client)."""
    import bridge.demo
    from bridge import create_app

    started = []
    real = bridge.demo.create_demo_idp

    def keep(issuer, client_id, client_secret, public_url):
        started.append((client_id, client_secret))
        return real(issuer, client_id, client_secret, public_url)

    monkeypatch.setattr(bridge.demo, "create_demo_idp", keep)
    for port, idp_port in (free_ports(2), free_ports(2)):
        ok(stepup("demo", "--port", str(port), "--idp-port", str(idp_port), **DEMO))
    (first, first_secret), (second, _) = started
    assert first != second
    app = create_app({"data_dir": tmp_path}, environ={})
    act = Actions(app.test_client(), app.extensions["stepup"], time.time)
    try:  # the first demo's IdP still pushes its sign-ins
        response, _ = act.push("u-1001", auth=(first, first_secret), client_id=first,
                               redirect_uri=find_client(act.bridge, first).redirect_uris[0])
        assert response.status_code == 201, response.get_json()
    finally:
        app.extensions["stepup"].store.engine.dispose()


@pytest.mark.parametrize(("invoked_as", "command"), [
    ((), "stepup demo"), (("--invoked-as", "scripts/demo.sh"), "scripts/demo.sh")])
def test_a_demo_on_a_taken_port_says_which_option_and_leaves_the_running_one_alone(
        stepup, invoked_as, command):
    """A second ``stepup demo`` on ports a first one holds must not re-register the first
    one's IdP (its sign-ins would all fail with invalid_client), and says what to pass, as
    the command the user ran (scripts/demo.sh passes its name)."""
    stepup = functools.partial(stepup, STEPUP_DATABASE_URL=None)
    ok(stepup("client", "add", "--client-id", "demo-idp", "--client-secret", SECRET,
              "--redirect-uri", "http://127.0.0.1:5001/callback"))
    before = ok(stepup("client", "list"))
    with socket.socket() as taken, socket.socket() as free:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        free.bind(("127.0.0.1", 0))
        port, idp_port = taken.getsockname()[1], free.getsockname()[1]
        free.close()
        result = stepup("demo", *invoked_as, "--port", str(port), "--idp-port", str(idp_port),
                        STEPUP_ISSUER="")
    assert result.exit_code == 2  # (after werkzeug's own lines on which port is taken)
    assert result.stderr.splitlines()[-1] == (
        "stepup: error: choose free ports with --port and --idp-port, e.g. "
        f"{command} --port 5010 --idp-port 5011")
    assert ok(stepup("client", "list")) == before


def test_a_demo_on_one_port_for_both_says_so(stepup):
    """Not "port in use by another program": the demo itself would be the other one."""
    result = stepup("demo", "--port", "5650", "--idp-port", "5650")
    assert result.output == ("stepup: error: --port and --idp-port must differ: the bridge and "
                             "the demo IdP each need one\n")


@pytest.mark.parametrize("issuer", ["http://demo.example:5000", "https://mfa.example.com",
                                    "http://127.0.0.1:5002", "http://127.0.0.1:99999"])
def test_a_demo_given_another_issuer_says_to_unset_it(stepup, issuer):
    """An issuer exported for a real deployment (README) would send the demo IdP elsewhere:
    one line naming both, before any port is taken, not a demo that cannot work."""
    result = stepup("demo", "--port", "5000", **{**DEMO, "STEPUP_ISSUER": issuer})
    assert result.exit_code == 2
    assert result.output == (f"stepup: error: the demo serves the bridge at "
                             f"http://127.0.0.1:5000, not at STEPUP_ISSUER={issuer}: unset "
                             "STEPUP_ISSUER to run the demo\n")


def test_a_demo_given_an_issuer_with_user_information_does_not_show_it(stepup):
    result = stepup("demo", "--port", "5000",
                    **{**DEMO, "STEPUP_ISSUER": "https://ops:s3cretpw@mfa.example"})
    assert result.exit_code == 2
    assert "STEPUP_ISSUER" in result.output and "s3cretpw" not in result.output


def test_the_version_is_the_installed_package_s():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"stepup, version {version('stepup-bridge')}\n"


def test_no_command_summary_is_cut_short():
    """Click cuts a docstring's first sentence at 45 characters with "..." in the list."""
    listing = CliRunner().invoke(main, ["--help"]).output.split("Commands:")[1]
    assert len(listing.splitlines()) >= 7 and "..." not in listing


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite: no lock_timeout
def test_a_row_held_elsewhere_is_busy_not_unreachable(stepup, act, database_url):
    """A help-desk command meets a user's row another session holds: it waits for the lock
    timeout, then says the database is busy, not "not reachable" (which sends the operator
    to the network)."""
    act.enroll("ann")
    holder = sa.create_engine(database_url).connect()
    holder.exec_driver_sql("SELECT 1 FROM users WHERE subject = 'ann' FOR UPDATE")
    try:
        waited = stepup("user", "unlock", "ann",
                        STEPUP_DATABASE_URL=database_url + "?options=-c%20lock_timeout%3D500")
    finally:
        holder.rollback()
        holder.close()
    line = one_line_error(waited)
    assert line.startswith("stepup: error: the database is busy: a row or table this command "
                           "needs is held by another session"), line
    assert "not reachable" not in line
