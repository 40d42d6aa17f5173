"""The ``stepup`` group, the helpers every command shares, and the commands that run servers."""

from __future__ import annotations

import getpass
import logging
import os
import re
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import click
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from ..app import Bridge, build_bridge, create_app
from ..oidc.clients import new_client
from ..settings import ConfigError, Settings, is_local_host, load_settings, settings_warnings
from ..store.migrate import SchemaError

# Nothing imported in bridge.cli may import prometheus_client (bridge.ops does, inside
# create_app): `serve` must set PROMETHEUS_MULTIPROC_DIR first.


def _settings() -> Settings:
    """The settings, saying on stderr which STEPUP_ variables are no setting (a typo,
    STEPUP_DATABSE_URL, would have the command act on the embedded database, silently) and
    whether the config file shows its secrets to every user."""
    for warning in settings_warnings(os.environ):
        click.echo(f"stepup: warning: {warning}", err=True)
    return load_settings()


def _bridge(existing: bool = False) -> Bridge:
    """The bridge a command works on: its audit events name the operator and go to stderr as
    JSON lines too. A command about what the bridge holds (``existing``: the clients, a user,
    an address, the keys) needs the embedded database to be there: in another folder it would
    get a new, empty one (and a secrets file), and a help desk would be told a locked user is
    "not enrolled", an operator that no client is registered."""
    from .. import logs

    settings = _settings()
    if existing and not _exists(settings.database):
        setting = "STEPUP_DATABASE_URL" if settings.database_url else "STEPUP_DATA_DIR"
        default = "" if settings.database_url or settings.data_dir != Path("instance").resolve() \
            else " (none given: ./instance, where you are)"
        # A database URL's schema is made by `db upgrade` alone; the embedded one by a start.
        first = "create it first (`stepup db upgrade`)" if settings.database_url else \
            "set the bridge up first (`stepup serve`, `stepup client add`)"
        _fail(f"no bridge database at {_safe_url(settings.database)}: run this command with "
              f"the bridge's {setting}{default}, or {first}")
    bridge = build_bridge(settings)
    bridge.store.operator = _operator()
    logs.audit_to_stderr()
    return bridge


def _exists(database: str) -> bool:
    """A database URL names something to read: a SQLite file that is not there yet is not
    created by looking at it (PostgreSQL: the server says)."""
    from sqlalchemy.engine import make_url

    url = make_url(database)
    return url.get_backend_name() != "sqlite" or Path(url.database or "").is_file()


def _operator() -> str:
    """Who ran the command, as the shell says (not verified): the user behind sudo, else this
    process's user, else its uid."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (OSError, KeyError):  # a uid with no name (a container's); KeyError before 3.13
        return f"uid {os.getuid()}"


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"stepup: error: {message}", err=True)
    sys.exit(code)


def _confirmed(question: str) -> bool:
    """The operator's yes; no, Ctrl-C or no terminal to ask on (end of input) is a no."""
    try:
        return click.confirm(question, default=False)
    except click.Abort:
        return False


#: Exit codes beside 0 and 2 (a usage or set-up error), so a ticketing script tells the cases
#: apart: nothing of that name (1, as ``grep``: a user not enrolled, a client not registered),
#: and refused (3: not locked, or a lock the user set over their factors: reset instead).
NOT_FOUND, REFUSED = 1, 3


#: The extra that installs each optional module (pyproject.toml [project.optional-dependencies]).
_EXTRAS = {"psycopg": "postgres", "redis": "redis",
           "keycloak": "keycloak"}


#: PostgreSQL's lock_not_available (lock_timeout) and query_canceled (statement_timeout).
WAITED_TOO_LONG = ("55P03", "57014")


class _Group(click.Group):
    """Turn configuration and schema problems into one line instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ConfigError, SchemaError, ValueError) as e:
            _fail(str(e))
        except ImportError as e:  # an optional part used without the extra that installs it
            module = (e.name or "").partition(".")[0]
            if module not in _EXTRAS:
                raise
            _fail(f"{module} is not installed: install the bridge with its "
                  f"'{_EXTRAS[module]}' extra (from the clone: pip install '.[{_EXTRAS[module]}]')")
        except SQLAlchemyError as e:
            if getattr(getattr(e, "orig", None), "sqlstate", None) in WAITED_TOO_LONG:
                # Reached, and busy: "not reachable" would send the operator to the network.
                _fail("the database is busy: a row or table this command needs is held by "
                      "another session, or the command ran past the statement timeout "
                      f"({str(e.orig).splitlines()[0]}); try again (pg_stat_activity shows "
                      "who holds it)")
            # Reached but refused (no privilege on the schema, a constraint) is not an outage.
            reached = isinstance(e, DBAPIError) and not isinstance(
                e, OperationalError | InterfaceError)
            _fail(f"the database {'refused the command' if reached else 'is not reachable'}: "
                  f"{type(e).__name__}: {str(getattr(e, 'orig', e)).splitlines()[0]}")
        except OSError as e:  # the data folder: a file in its place, read-only, no space
            if e.filename is None:  # not a file's (a socket's, say): not ours to word
                raise
            why = ("a file is in the way of a folder"
                   if isinstance(e, FileExistsError | NotADirectoryError) else e.strerror)
            _fail(f"cannot use {e.filename}: {why}")


@click.group(cls=_Group)
@click.version_option(package_name="stepup-bridge", prog_name="stepup")
def main() -> None:
    """Stepup Bridge: TOTP and recovery-code step-up for identity providers."""


# -- serve / demo -------------------------------------------------------------------------
@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Answer /metrics on this port alone (with /healthz and /readyz, nothing "
                   "else), not on --port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Where the --metrics-port listener listens.")
def serve(host: str, port: int, metrics_port: int | None, metrics_host: str) -> None:
    """Run the production server (gunicorn) on the configured settings."""
    from ..server import cannot_listen, listen_address, run_gunicorn

    settings = load_settings()
    # Before the metrics folder in it: mkdir(parents=True) would make it with the default mode.
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    metrics_dir = os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", str(settings.data_dir / f"metrics-{port}"))
    metric_files = _metric_files(Path(metrics_dir))
    from .. import logs

    logs.configure()
    app = create_app()  # fail fast, in the master, on bad settings or an old schema
    if why := cannot_listen(host, port):
        _fail(f"cannot listen on {listen_address(host, port)}: {why}")
    if metrics_port is not None:
        if metrics_port == port:
            _fail("--metrics-port must differ from --port: it is the listener for monitoring")
        if why := cannot_listen(metrics_host, metrics_port, "--metrics-"):
            _fail(f"cannot listen on {listen_address(metrics_host, metrics_port)}: {why}")
    # Only now: a start refused above (the port taken by the node that writes them, say)
    # must leave that node's counts alone.
    for item in metric_files:
        item.unlink(missing_ok=True)
    click.echo(f"Stepup Bridge {settings.issuer} listening on http://{listen_address(host, port)} "
               f"({settings.workers} workers, database {_safe_url(settings.database)})")
    if metrics_port is not None:
        click.echo(f"Metrics and probes on http://{listen_address(metrics_host, metrics_port)}"
                   "/metrics")
    if settings.issuer == Settings.issuer and port != 5000:
        # Discovery, the assertions' iss and every page's links would name another address.
        logging.getLogger("stepup").warning(  # a JSON line on stderr, as every other one
            "STEPUP_ISSUER is not set, so the bridge calls itself %s, not the port it listens "
            "on: set it to the URL its users and IdPs reach", settings.issuer)
    if not settings.behind_tls and not is_local_host(urlsplit(settings.issuer).hostname):
        logging.getLogger("stepup").warning(
            "STEPUP_ISSUER is plain http on a host that is not this machine: cookies go "
            "without Secure and there is no HSTS, and IdPs refuse http back channels; use "
            "https:// (a TLS proxy in front, docs/operations.md)")
    if not settings.help_url and not is_local_host(urlsplit(settings.issuer).hostname):
        logging.getLogger("stepup").warning(
            "STEPUP_HELP_URL is not set: a locked user is told to ask the help desk and is "
            "given no way to reach it; set it to your help page or a mailto: address")
    run_gunicorn(app, host, port, settings.workers, settings.timeout,
                 None if metrics_port is None else (metrics_host, metrics_port))


@main.command(short_help="Run the bridge and a demo IdP, to click through.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--idp-port", default=5001, show_default=True, type=click.IntRange(1, 65535))
# scripts/demo.sh passes its own name, so a hint names the command the user typed.
@click.option("--invoked-as", default="stepup demo", hidden=True)
def demo(port: int, idp_port: int, invoked_as: str) -> None:
    """Run the bridge plus a small demo IdP that hands off to it (all on 127.0.0.1)."""
    from werkzeug.serving import make_server

    from .. import logs
    from ..demo import DEMO_USERS, create_demo_idp
    from ..server import quiet_dev_server_log

    if port == idp_port:
        _fail("--port and --idp-port must differ: the bridge and the demo IdP each need one")
    # The demo registers its IdP and serves the database as a throwaway http://127.0.0.1
    # bridge: a deployment's config file or database must never become that. With these two
    # unset, the settings come from STEPUP_ variables alone, and the issuer is checked below.
    for name in ("STEPUP_CONFIG", "STEPUP_DATABASE_URL"):
        if os.environ.get(name):
            _fail(f"the demo runs on the embedded database of its own data folder only, not "
                  f"on {name}: unset it to run the demo")
    issuer = f"http://127.0.0.1:{port}"
    idp_url = f"http://127.0.0.1:{idp_port}"
    # The demo serves the bridge here: an issuer exported for a real deployment (README,
    # "Running it for real") would send the demo IdP elsewhere.
    given = urlsplit(os.environ.get("STEPUP_ISSUER") or issuer)
    try:
        given_port = given.port
    except ValueError:  # out of range, or not a number
        given_port = None
    if given.scheme == "http" and given.hostname in ("127.0.0.1", "localhost") \
            and given_port == port and given.path in ("", "/"):
        os.environ["STEPUP_ISSUER"] = os.environ.get("STEPUP_ISSUER") or issuer
    else:
        exported = os.environ["STEPUP_ISSUER"]
        shown = f"={exported}" if "@" not in exported else " (its value has an '@': not shown)"
        _fail(f"the demo serves the bridge at {issuer}, not at STEPUP_ISSUER{shown}: unset "
              "STEPUP_ISSUER to run the demo")
    # Before create_app migrates anything: should load_settings learn another source, what it
    # loads must still be the demo's own database and issuer.
    settings = load_settings()
    if settings.database_url or settings.issuer != os.environ["STEPUP_ISSUER"].strip():
        _fail(f"the demo serves the bridge at {issuer} on its own data folder's database, but "
              "the settings name another: unset them to run the demo")
    bridge_app = create_app()
    issuer = settings.issuer
    client_secret = secrets.token_urlsafe(32)
    quiet_dev_server_log()
    logs.audit_to_stderr()  # what a sign-in records, as a server logs it (docs/audit.md)
    # One client per IdP port: a second demo on other ports with the same data folder would
    # otherwise replace the first one's secret (invalid_client there).
    client_id = f"demo-idp-{idp_port}"
    idp_app = create_demo_idp(issuer, client_id, client_secret, idp_url)
    try:  # both ports first: a demo already running keeps its registration if one is taken
        servers = [make_server("127.0.0.1", port, bridge_app, threaded=True),
                   make_server("127.0.0.1", idp_port, idp_app, threaded=True)]
    except SystemExit:  # werkzeug has said which port is taken
        _fail(f"choose free ports with --port and --idp-port, e.g. "
              f"{invoked_as} --port 5010 --idp-port 5011")
    with bridge_app.extensions["stepup"].store.begin() as tx:
        tx.remove_client(client_id)
        tx.add_client(new_client(bridge_app.extensions["stepup"].secrets.pepper, client_id,
                                 secret=client_secret, jwks_uri=None,
                                 redirect_uris=[f"{idp_url}/callback"], redirect_uri_prefixes=[],
                                 name="Demo IdP"))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    users = ", ".join(f"{name} / {pw}" for name, pw in DEMO_USERS.values())
    click.echo(f"Stepup Bridge:  {issuer}\nDemo IdP:       {idp_url}   <- open this\n"
               f"Demo users:     {users}\nAudit events:   on stderr, one JSON line each "
               "(docs/audit.md)\nPress Ctrl+C to stop.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        for server in servers:
            server.shutdown()


#: prometheus_client's per-process files (``counter_<pid>.db``, ``gauge_livesum_<pid>.db``, ...).
_METRIC_FILE = re.compile(r"(counter|gauge_[a-z]+|histogram|summary)_\d+\.db")


def _metric_files(folder: Path) -> list[Path]:
    """The metric files of a previous run, which would be counted again: to remove, and only
    them. Any other ``*.db`` there (the SQLite database, when the folder is the data folder)
    is refused: /metrics reads every one."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    found = list(folder.glob("*.db"))
    if others := sorted(item.name for item in found if not _METRIC_FILE.fullmatch(item.name)):
        raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR={folder} holds {', '.join(others[:3])}: "
                          "give the metrics a folder of their own")
    return found


def _safe_url(url: str) -> str:
    """The database URL without its passwords (libpq also takes them as query parameters:
    ``password``, ``sslpassword``), for the start-up line."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    query = {k: "hidden" if "password" in k.lower() else v for k, v in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)
