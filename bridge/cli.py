"""The ``stepup`` command line (its names are a contract: scripts and docs depend on them)."""

from __future__ import annotations

import getpass
import ipaddress
import json
import logging
import os
import re
import secrets
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import click
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from . import helpdesk
from .app import Bridge, build_bridge, create_app
from .keyring import JWKS_MAX_AGE, PUBLISH_AHEAD, RING_REFRESH
from .oidc.clients import CLIENT_NAME_LIMIT, check_names, client_name, in_clear, new_client
from .settings import ConfigError, Settings, is_local_host, load_settings, settings_warnings
from .store import Client, Store, create_engine, migrate
from .store.migrate import SchemaError
from .text import display_name

# Nothing imported here may import prometheus_client (bridge.ops does, inside create_app):
# `serve` must set PROMETHEUS_MULTIPROC_DIR first.


def _settings() -> Settings:
    """The settings, saying on stderr which STEPUP_ variables are no setting (a typo,
    STEPUP_DATABSE_URL, would have the command act on the embedded database, silently) and
    whether the config file shows its secrets to every user."""
    for warning in settings_warnings(os.environ):
        click.echo(f"stepup: warning: {warning}", err=True)
    return load_settings()


def _bridge() -> Bridge:
    """The bridge a command works on: its audit events name the operator and go to stderr as
    JSON lines too."""
    from . import logs

    bridge = build_bridge(_settings())
    bridge.store.operator = _operator()
    logs.audit_to_stderr()
    return bridge


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


#: Exit codes beside 0 and 2 (a usage or set-up error), so a ticketing script tells the cases
#: apart: nothing of that name (1, as ``grep``: a user not enrolled, a client not registered),
#: and refused (3: not locked, or a lock the user set over their factors: reset instead).
NOT_FOUND, REFUSED = 1, 3


#: The extra that installs each optional module (pyproject.toml [project.optional-dependencies]).
_EXTRAS = {"psycopg": "postgres", "redis": "redis",
           "keycloak": "keycloak"}


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
def serve(host: str, port: int) -> None:
    """Run the production server (gunicorn) on the configured settings."""
    from .server import cannot_listen, run_gunicorn

    settings = load_settings()
    # Before the metrics folder in it: mkdir(parents=True) would make it with the default mode.
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    metrics_dir = os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", str(settings.data_dir / f"metrics-{port}"))
    _clear_metric_files(Path(metrics_dir))
    from . import logs

    logs.configure()
    app = create_app()  # fail fast, in the master, on bad settings or an old schema
    if why := cannot_listen(host, port):
        _fail(f"cannot listen on {host}:{port}: {why} (another server there? choose a port "
              "with --port)")
    click.echo(f"Stepup Bridge {settings.issuer} listening on http://{host}:{port} "
               f"({settings.workers} workers, database {_safe_url(settings.database)})")
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
    run_gunicorn(app, host, port, settings.workers, settings.timeout)


@main.command(short_help="Run the bridge and a demo IdP, to click through.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--idp-port", default=5001, show_default=True, type=click.IntRange(1, 65535))
def demo(port: int, idp_port: int) -> None:
    """Run the bridge plus a small demo IdP that hands off to it (all on 127.0.0.1)."""
    from werkzeug.serving import make_server

    from .demo import DEMO_USERS, create_demo_idp
    from .server import quiet_dev_server_log

    issuer = f"http://127.0.0.1:{port}"
    idp_url = f"http://127.0.0.1:{idp_port}"
    os.environ.setdefault("STEPUP_ISSUER", issuer)
    bridge_app = create_app()
    issuer = bridge_app.extensions["stepup"].settings.issuer
    client_secret = secrets.token_urlsafe(32)
    quiet_dev_server_log()
    try:
        idp_app = create_demo_idp(issuer, "demo-idp", client_secret, idp_url)
    except ValueError as error:  # the hand-off client refuses the issuer (http off loopback)
        _fail(f"the demo IdP cannot use STEPUP_ISSUER={issuer}: {error}")
    try:  # both ports first: a demo already running keeps its registration if one is taken
        servers = [make_server("127.0.0.1", port, bridge_app, threaded=True),
                   make_server("127.0.0.1", idp_port, idp_app, threaded=True)]
    except SystemExit:  # werkzeug has said which port is taken
        _fail("choose free ports with --port and --idp-port, e.g. "
              "scripts/demo.sh --port 5010 --idp-port 5011")
    with bridge_app.extensions["stepup"].store.begin() as tx:
        tx.remove_client("demo-idp")
        tx.add_client(new_client(bridge_app.extensions["stepup"].secrets.pepper, "demo-idp",
                                 secret=client_secret, jwks_uri=None,
                                 redirect_uris=[f"{idp_url}/callback"], redirect_uri_prefixes=[],
                                 name="Demo IdP"))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    users = ", ".join(f"{name} / {pw}" for name, pw in DEMO_USERS.values())
    click.echo(f"Stepup Bridge:  {issuer}\nDemo IdP:       {idp_url}   <- open this\n"
               f"Demo users:     {users}\nPress Ctrl+C to stop.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        for server in servers:
            server.shutdown()


# -- clients ------------------------------------------------------------------------------
@main.group()
def client() -> None:
    """Register the IdPs that may hand users off to the bridge."""


@client.command("add")
@click.option("--client-id", required=True,
              help="The id the IdP authenticates with at /par and /token.")
@click.option("--client-secret", envvar="STEPUP_CLIENT_SECRET",
              help="Shared secret (client_secret_basic / _post); better from "
                   "STEPUP_CLIENT_SECRET, which process listings do not show.")
@click.option("--jwks-uri", help="The client's public keys (private_key_jwt).")
@click.option("--redirect-uri", "redirect_uris", multiple=True,
              help="Where the bridge may send users back, matched exactly (repeatable).")
@click.option("--redirect-uri-prefix", "prefixes", multiple=True,
              help="Same scheme, host, port and path; any query (e.g. Keycloak's callback).")
@click.option("--id-token-alg", type=click.Choice(["ES256", "RS256"]), default="ES256",
              show_default=True)
@click.option("--no-enrollment", is_flag=True, help="Unknown users may not enroll.")
@click.option("--admin", is_flag=True,
              help="May call the help-desk API (client credentials, scope stepup:admin).")
@click.option("--client-name", "name",
              help="What users' security notices call its sign-ins, e.g. \"Acme staff "
                   "portal\" (default: the client id).")
@click.option("--replace", is_flag=True, help="Overwrite an existing registration.")
def client_add(client_id, client_secret, jwks_uri, redirect_uris, prefixes, id_token_alg,
               no_enrollment, admin, name, replace) -> None:
    """Register an IdP (or a help-desk tool, --admin) as a client."""
    bridge = _bridge()
    record = new_client(bridge.secrets.pepper, client_id, secret=client_secret,
                        jwks_uri=jwks_uri, redirect_uris=list(redirect_uris),
                        redirect_uri_prefixes=list(prefixes), id_token_alg=id_token_alg,
                        allow_enrollment=not no_enrollment, admin=admin, name=name)
    _register(bridge, record, replace)
    click.echo(f"Registered client {client_id}")


def _register(bridge: Bridge, record, replace: bool) -> None:
    with bridge.store.begin() as tx:
        found = tx.find_client(record.client_id)
        if found and not replace:
            _fail(f"client {record.client_id!r} is already registered (use --replace)")
        if found and _same(found, record, "created_at", "client_name"):
            # The same registration again (`keycloak install` run again, a script re-applied),
            # perhaps under another name: the sign-ins in progress and their codes go on.
            if found.client_name != record.client_name:
                tx.name_client(record.client_id, record.client_name)
                tx.audit("client_renamed", time.time(), client_id=record.client_id)
            return
        tx.remove_client(record.client_id)
        tx.add_client(record)
        # The most privileged registration, an admin one, shows as such in the trail.
        tx.audit("client_registered", time.time(), client_id=record.client_id,
                 admin=record.admin, auth="private_key_jwt" if record.jwks_uri else "client_secret")


def _same(a: Client, b: Client, *besides: str) -> bool:
    """Two registrations agree on everything but ``besides``."""
    return ({**a.__dict__, **dict.fromkeys(besides)}
            == {**b.__dict__, **dict.fromkeys(besides)})


@client.command("list")
def client_list() -> None:
    """List registered clients (never their secrets)."""
    with _bridge().store.begin() as tx:
        for c in tx.list_clients():
            auth = "private_key_jwt" if c.jwks_uri else "client_secret"
            uris = " ".join([*c.redirect_uris, *(f"{p}?*" for p in c.redirect_uri_prefixes)])
            role = ""
            if any(in_clear(uri) for uri in [*c.redirect_uris, *c.redirect_uri_prefixes]):
                # Registered before plain http to another machine was refused.
                role = "\tPLAIN HTTP: codes cross the network in clear; add it again with https"
            if c.jwks_uri and in_clear(c.jwks_uri):
                role += ("\tPLAIN HTTP JWKS: whoever is on the way can be this client; add it "
                         "again with an https --jwks-uri")
            if c.admin:
                # Registered before an --admin client had to be a help-desk tool alone.
                role += ("\tadmin AND IdP: one leaked secret starts sign-ins and resets factors; "
                        "register the help-desk tool as a client of its own and add this one "
                        "again without --admin" if uris else "\tadmin")
            named = f"\tname={c.client_name}" if c.client_name else ""
            click.echo(f"{c.client_id}\t{auth}\t{c.id_token_alg}\t"
                       f"enrollment={'on' if c.allow_enrollment else 'off'}\t{uris}{role}"
                       f"{named}")


@client.command("remove")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def client_remove(client_id: str, yes: bool) -> None:
    """Remove a client registration: its sign-ins are refused from then on.

    Exit 1: no such client; 2: not confirmed."""
    bridge = _bridge()
    with bridge.store.begin() as tx:
        found = tx.find_client(client_id)
    if found is None:
        _fail(f"no client {client_id!r}", NOT_FOUND)
    # All of an IdP's users sign in through it: a slip on the id stops every sign-in there.
    hands_off = found.redirect_uris or found.redirect_uri_prefixes
    role = "sign-ins it hands off are" if hands_off else "help-desk calls it makes are"
    if not yes and not _confirmed(f"Remove client {client_id}? All {role} refused from then "
                                  "on"):
        _fail("not confirmed: nothing was removed (--yes to skip the question)")
    if not _unregister(bridge, client_id):
        _fail(f"no client {client_id!r}", NOT_FOUND)  # removed by another, meanwhile
    click.echo(f"Removed client {client_id}")


def _unregister(bridge: Bridge, client_id: str) -> bool:
    """Remove a client, audited; False when there was none."""
    with bridge.store.begin() as tx:
        if not tx.remove_client(client_id):
            return False
        tx.audit("client_removed", time.time(), client_id=client_id)
    return True


# -- users (help desk) --------------------------------------------------------------------
@main.group()
def user() -> None:
    """Help-desk view of a user's second factor."""


#: Help desks look users up by name; the bridge knows them by the IdP's subject.
_SUBJECT_HINT = ("users are known by the IdP's subject, its user id (in Keycloak the user's ID, "
                 "a UUID), not by username")


def _subject(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A subject the database can keep, checked before any audit row is written."""
    if not helpdesk.is_subject(value):
        _fail(f"not a subject: empty, unprintable or over {helpdesk.SUBJECT_LIMIT} characters "
              f"({_SUBJECT_HINT})")
    return value


@user.command("show")
@click.argument("subject", callback=_subject)
def user_show(subject: str) -> None:
    """Show a user's enrollment, lock state and recent audit events (no secrets); exit
    status 1 for a subject not enrolled."""
    with _bridge().store.begin() as tx:
        found = helpdesk.show(tx, subject, time.time(), None)
        trail = tx.audit_trail(subject, leave_out=helpdesk.LOOK_UPS)
    if found is None:
        click.echo(f"{subject}: not enrolled ({_SUBJECT_HINT})")
    elif not found["factors"]:
        click.echo(f"{subject}: no factor, LOCKED after a disowned reset (unlock lets them "
                   "enroll again)")
    else:
        state = "active"
        if found["locked"]:
            state = {"failures": "LOCKED after too many wrong codes",
                     "not_me": f"LOCKED by the user (\"this wasn't me\" on "
                               f"{_disowned(found)})"
                     }.get(found["lock_reason"], "LOCKED")
        click.echo(f"{subject}: enrolled {_when(found['enrolled_at'])}, {state}, "
                   f"{found['failures']} consecutive failure(s), "
                   f"recovery code #{found['recovery_code_version']}")
    for event in trail:
        click.echo(f"  {_when(event['at'])}  {event['event']:<20} {event['client_id'] or ''} "
                   f"{event['ip'] or ''} {json.dumps(event['detail']) if event['detail'] else ''}")
    if found is None:
        sys.exit(1)  # as grep: a script can tell "no such user" from a user shown


def _disowned(found: dict) -> str:
    """The event a "this wasn't me" lock disowned, and when: one from before the current
    factors were set up was about factors a reset revoked since (the lock stands: whoever did
    it may have set up these too)."""
    kind, at = found["disowned_event"], found["disowned_event_at"]
    if kind is None or at is None:
        return "an event no longer kept"
    before = ", before these factors were set up" if at < found["enrolled_at"] else ""
    return f"{kind} of {_when(at)}{before}"


@user.command("unlock")
@click.argument("subject", callback=_subject)
def user_unlock(subject: str) -> None:
    """Lift a lock after checking it's the user; their authenticator and code stay valid.
    Exit 1: not enrolled; exit 3: refused (not locked, or locked by a "this wasn't me" that
    disowned a use or change of the factors: reset instead)."""
    try:
        barred = helpdesk.change(_bridge().store, helpdesk.unlock, subject, time.time(), None)
    except helpdesk.Refused as refusal:
        _refused(subject, refusal)
    click.echo(f"Unlocked {subject}: " + ("they enroll again at their next sign-in." if barred
               else "the failure count starts again from zero."))


def _confirmed(question: str) -> bool:
    """The operator's yes; no, Ctrl-C or no terminal to ask on (end of input) is a no."""
    try:
        return click.confirm(question, default=False)
    except click.Abort:
        return False


def _refused(subject: str, refusal: helpdesk.Refused) -> NoReturn:
    """The one line of a refused unlock or reset, and its exit code."""
    if isinstance(refusal, helpdesk.NotEnrolled):
        _fail(f"{subject} is not enrolled ({_SUBJECT_HINT})", NOT_FOUND)
    if isinstance(refusal, helpdesk.NotLocked):
        _fail(f"{subject} is not locked", REFUSED)
    _fail(f"{subject} locked this from a security notice (a use or change of their factors "
          f"was not them): reset instead, so they set up new factors "
          f"(stepup user reset {subject})", REFUSED)


@user.command("reset")
@click.argument("subject", callback=_subject)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def user_reset(subject: str, yes: bool) -> None:
    """Revoke a user's TOTP and recovery code (they enroll again at next sign-in).

    Exit 1: not enrolled."""
    if not yes and not _confirmed(f"Revoke the second factor of {subject}?"):
        # 2, as any usage error (1 is "not enrolled"): nothing was asked of the bridge.
        _fail("not confirmed: nothing was reset (--yes to skip the question)")
    try:
        helpdesk.change(_bridge().store, helpdesk.reset, subject, time.time(), None)
    except helpdesk.Refused as refusal:
        _refused(subject, refusal)
    click.echo(f"Reset {subject}: TOTP and recovery code revoked; they will enroll again.")


# -- addresses ----------------------------------------------------------------------------
@main.group()
def ip() -> None:
    """Reopen an address closed by failed tries."""


@ip.command("unblock")
@click.argument("address")
@click.option("--client", "client_id", metavar="CLIENT_ID",
              help="Reopen this client's authentication window for the address instead "
                   "(after fixing an IdP's wrong secret).")
def ip_unblock(address: str, client_id: str | None) -> None:
    """Forget the failed codes from ADDRESS (STEPUP_IP_LIMIT), so its users are let in again
    now rather than when the failures age out: an office behind one address that a few users'
    mistakes, or a guesser among them, closed. Audited."""
    from .throttle import RedisUnreachable

    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        _fail(f"{address!r} is not an IP address")
    # As the bridge counts it: an IPv4 address given in its IPv6 spelling is the IPv4 one.
    address = str(getattr(parsed, "ipv4_mapped", None) or parsed)
    bridge = _bridge()
    with bridge.store.begin() as tx:
        if client_id and tx.find_client(client_id) is None:  # '' is every unknown id's window
            _fail(f"no client {client_id!r} is registered (stepup client list)", NOT_FOUND)
        try:
            cleared = (tx.clear_ip_failures(address, client_id) if client_id is not None
                       else bridge.challenge.limiter.clear(tx, address))
        except RedisUnreachable as e:
            _fail(str(e))
        if cleared:
            tx.audit("ip_unblocked", time.time(), client_id=client_id, ip=address,
                     failures=cleared)
    window = f"client {client_id}'s authentication window" if client_id else "code window"
    if not cleared:
        # Nothing to forget here: the users may see another address's window, or the nodes
        # count in a Redis this command was not told of.
        redis = "" if client_id is not None or bridge.settings.redis_url else (
            "; the nodes count in Redis? give this command their STEPUP_REDIS_URL")
        click.echo(f"{address} has no recent failures in the {window}{redis}.")
        return
    click.echo(f"Unblocked {address} ({window}): {cleared} recent failure"
               f"{'' if cleared == 1 else 's'} forgotten.")


# -- keys and database --------------------------------------------------------------------
@main.group()
def keys() -> None:
    """Signing keys, and the encryption key of stored secrets."""


@keys.command("rotate")
@click.option("--publish-ahead", default=PUBLISH_AHEAD, show_default=True,
              type=click.IntRange(0, 86400),
              help="Seconds the new keys are published before they sign: the JWKS may be "
                   f"cached {JWKS_MAX_AGE} s, after a node's {RING_REFRESH} s to notice them.")
def keys_rotate(publish_ahead: int) -> None:
    """New signing keys; the previous ones stay published until their tokens expire."""
    bridge = _bridge()
    kids = bridge.signing_keys.rotate(time.time(), publish_ahead)
    with bridge.store.begin() as tx:
        tx.audit("signing_key_rotation", time.time(), kids=kids)
    click.echo(f"New signing keys {', '.join(kids)}: published now, signing in "
               f"{publish_ahead} s; every node picks them up within {RING_REFRESH} s.")


@keys.command("rotate-encryption")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 100_000))
def keys_rotate_encryption(batch: int) -> None:
    """Re-encrypt TOTP secrets, signing keys and open sign-ins under the first key of
    STEPUP_ENCRYPTION_KEYS.

    Safe while serving: each row is re-sealed with a compare-and-set, in small transactions.
    """
    bridge = _bridge()
    vault = bridge.secrets.vault
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


@main.group()
def db() -> None:
    """Database schema and backups."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to this version (alembic)."""
    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # the SQLite file's
    engine = create_engine(settings.database)
    migrate.upgrade(engine)
    click.echo(f"Database at revision {migrate.current(engine)}")


@db.command("status")
def db_status() -> None:
    """Which schema the database has, and what `stepup db upgrade` would change (reads only).
    Exits 0 when there is nothing to do, 1 when there is, 2 on a newer schema."""
    settings = _settings()
    click.echo(f"Database: {_safe_url(settings.database)}")
    found, todo = (migrate.pending(create_engine(settings.database))
                   if _exists(settings.database) else (None, []))
    if found is None:
        click.echo(f"No schema yet: `stepup db upgrade` creates schema {migrate.HEAD}.")
        sys.exit(NOT_FOUND)
    if not todo:
        click.echo(f"Schema {found}: the one this bridge runs on. Nothing to upgrade.")
        return
    click.echo(f"Schema {found}; this bridge runs on {migrate.HEAD}. `stepup db upgrade` "
               "applies:")
    for step in todo:
        click.echo(textwrap.fill(step.summary, 100, initial_indent=f"  {step.revision}  ",
                                 subsequent_indent=" " * 8))
    if all(step.rolling for step in todo):
        click.echo(f"Nodes on {found} keep working beside each: upgrade, then restart the "
                   "nodes one by one.")
    else:
        click.echo(f"Nodes on {found} cannot run beside "
                   + ", ".join(step.revision for step in todo if not step.rolling)
                   + ": stop every node, upgrade, then start the new version.")
    sys.exit(NOT_FOUND)


def _exists(database: str) -> bool:
    """A database URL names something to read: a SQLite file that is not there yet is not
    created by looking at it (PostgreSQL: the server says)."""
    from sqlalchemy.engine import make_url

    url = make_url(database)
    return url.get_backend_name() != "sqlite" or Path(url.database or "").is_file()


@db.command("backup")
@click.argument("target", metavar="FILE", type=click.Path(path_type=Path))
def db_backup(target: Path) -> None:
    """Copy the embedded SQLite database to a new file FILE, consistently, while nodes run
    (back up keys/secrets.json too: without it the copy is useless)."""
    settings = _settings()
    if target.exists() or target.is_symlink():
        _fail(f"{target} exists: name a new file")
    source = Store(create_engine(settings.database)).backup(target)
    click.echo(f"Backed up {source} to {target}")


# -- Keycloak -----------------------------------------------------------------------------
@main.group(short_help="Plug a Keycloak realm into the bridge.")
def keycloak() -> None:
    """Plug a Keycloak realm into the bridge (needs the authenticator jar in providers/)."""


def _keycloak_options(f):
    options = [
        click.option("--server-url", required=True, help="Keycloak base URL."),
        click.option("--realm", required=True, help="The realm to work on."),
        click.option("--admin-user", envvar="KEYCLOAK_ADMIN_USER", show_envvar=True,
                     help="An admin user of --admin-realm (with --admin-password)."),
        click.option("--admin-password", envvar="KEYCLOAK_ADMIN_PASSWORD", show_envvar=True,
                     help="Its password: prefer the environment variable (a command line "
                          "shows in ps)."),
        click.option("--admin-client-id", envvar="KEYCLOAK_ADMIN_CLIENT_ID", show_envvar=True,
                     help="Service-account client with realm-admin (instead of a user)."),
        click.option("--admin-client-secret", envvar="KEYCLOAK_ADMIN_CLIENT_SECRET",
                     show_envvar=True, help="Its secret: prefer the environment variable."),
        click.option("--admin-realm", default="master", show_default=True,
                     help="The realm the admin user or client belongs to."),
        click.option("--bridge-issuer", help="The bridge's public URL (default STEPUP_ISSUER)."),
        click.option("--flow", default="browser-stepup", show_default=True,
                     help="Name of the browser flow install makes."),
        click.option("--client-scope", default="stepup", show_default=True,
                     help="Name of the client scope that carries the bridge's claims."),
        click.option("--no-verify-tls", is_flag=True,
                     help="Do not verify Keycloak's TLS certificate (tests only)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _install_options(settings, kw: dict, **extra):
    from stepup_keycloak import InstallOptions

    return InstallOptions(
        server_url=kw["server_url"], realm=kw["realm"],
        bridge_issuer=kw["bridge_issuer"] or settings.issuer,
        admin_username=kw["admin_user"], admin_password=kw["admin_password"],
        admin_client_id=kw["admin_client_id"], admin_client_secret=kw["admin_client_secret"],
        admin_realm=kw["admin_realm"], flow=kw["flow"], client_scope=kw["client_scope"],
        verify_tls=not kw["no_verify_tls"], **extra)


@keycloak.command("install")
@_keycloak_options
@click.option("--cover", default="all", show_default=True,
              help="Doors that get the step-up, comma separated: browser, reset-credentials, "
                   "registration, brokers, direct-grant (doors left out are undone).")
@click.option("--source-flow", default="",
              help="Browser flow to copy (default: the one the realm has bound now).")
@click.option("--acr-values", help="acr_values the authenticator asks the bridge for.")
@click.option("--no-enrollment", is_flag=True, help="Users without a factor cannot enroll.")
@click.option("--conditional-loa", type=click.IntRange(2, 100),
              help="Ask for the bridge only when a client requests this level (acr_values).")
@click.option("--loa-max-age", type=click.IntRange(0), default=36000, show_default=True,
              help="Seconds a reached level counts in the SSO session (0: ask every time).")
@click.option("--existing-clients", is_flag=True,
              help="Also add the client scope to the clients that exist already.")
@click.option("--client-name", "name",
              help="What users' security notices call the realm's sign-ins (default: the "
                   "realm's display name, else its name).")
@click.option("--sign-out-everyone", "sign_out", is_flag=True,
              help="Once every covered door passes the audit, end the realm's sessions and "
                   "refuse the refresh and offline tokens issued before (they never met the "
                   "step-up).")
def keycloak_install(cover, source_flow, acr_values, no_enrollment, conditional_loa,
                     loa_max_age, existing_clients, name, sign_out, **kw) -> None:
    """Put the step-up on every door into the realm (browser, password reset, registration,
    identity providers, direct grant), add the claims, register the realm at the bridge,
    then audit.
    Safe to run again, with other options too."""
    from stepup_keycloak import DOORS, ProvisioningError, audit, connect, install

    bridge = _bridge()
    doors = DOORS if cover == "all" else tuple(d.strip() for d in cover.split(",") if d.strip())
    try:
        opts = _install_options(
            bridge.settings, kw, source_flow=source_flow, acr_values=acr_values,
            allow_enrollment=not no_enrollment, conditional_loa=conditional_loa,
            loa_max_age=loa_max_age, cover=doors,
            existing_clients=existing_clients, bridge_acr=bridge.settings.acr)
        # The registration the realm will need, checked before the realm changes: install
        # half-done would leave every login needing a client the bridge does not have.
        prefixes = _kept_prefixes(bridge, opts.bridge_client_id, opts.redirect_uri_prefixes)
        check_names(opts.bridge_client_id, [], prefixes)
        name = None if name is None else client_name(name)
        admin = connect(opts)
        result = install(admin, opts)
        # A secret the realm kept from an earlier run (edited by hand, say) is checked here.
        record = new_client(bridge.secrets.pepper, result.bridge_client_id,
                            secret=result.bridge_client_secret, jwks_uri=None,
                            redirect_uris=[], redirect_uri_prefixes=prefixes,
                            allow_enrollment=not no_enrollment,
                            name=name or _realm_name(result.realm_display_name, opts.realm))
    except (ProvisioningError, ValueError) as e:
        _fail(str(e))
    _register(bridge, record, replace=True)
    click.echo(f"Realm {opts.realm}: step-up on {', '.join(result.covered) or 'no door'} "
               f"({'changed' if result.changed else 'already up to date'}); "
               f"bridge client '{record.client_id}' registered.")
    if result.identity_providers:
        click.echo(f"Identity providers: {', '.join(result.identity_providers)}.")
    if result.clients_scoped:
        click.echo(f"Client scope '{opts.client_scope}' added to: "
                   f"{', '.join(result.clients_scoped)}.")
    try:
        findings = audit(admin, opts)
    except ProvisioningError as e:
        _fail(f"installed, but the audit failed: {e}")
    _print_audit(findings, opts.realm)
    # A door it was asked to cover still open (a Kerberos alternative beside the password form,
    # say) fails the command, so automation that runs install notices; doors left out do not.
    # A step handing off elsewhere sits on a door that reaches it, whichever that is.
    if left := sorted({f.door for f in findings
                       if f.covered_by in opts.cover or f.door == "step config"}):
        _fail(f"installed, but the audit still finds {', '.join(left)} open or with the "
              "step-up out of place (the OPEN lines above say what to change)"
              + ("; nobody was signed out: users would sign in again through the open door"
                 if sign_out else ""))
    # Sessions and tokens from before install never meet the step; ending them signs every
    # user of the realm out, so it is asked for, not done on every re-run, and only once every
    # covered door has the step.
    if sign_out:
        _sign_out_everyone(admin, opts)
    elif result.changed:
        click.echo("Sessions and tokens from before this run do not meet the step-up until "
                   "they end: run again with --sign-out-everyone to end them now.")


def _realm_name(display: str | None, realm: str) -> str | None:
    """The name users see on the realm's login page (its display name, when one that fits a
    notice is set), else the realm's own (if it fits: else none, and the client id shows)."""
    return (display_name(display or "", CLIENT_NAME_LIMIT)
            or display_name(realm, CLIENT_NAME_LIMIT))


def _sign_out_everyone(admin, opts) -> None:
    from stepup_keycloak import ProvisioningError, sign_out_everyone

    try:
        unreached = sign_out_everyone(admin, opts)
    except ProvisioningError as e:
        _fail(f"installed, but signing everyone out failed: {e} (it may have happened in "
              "part; running install with --sign-out-everyone again is safe)")
    click.echo(f"Realm {opts.realm}: every session signed out; refresh and offline tokens "
               "issued before now are refused (access tokens live out their lifespan).")
    if unreached:
        click.echo(f"Keycloak could not tell {len(unreached)} application(s) to end their own "
                   f"sessions: {', '.join(unreached)}.")


def _kept_prefixes(bridge: Bridge, client_id: str, prefixes: list[str]) -> list[str]:
    """Install's callback prefixes plus any the client had (a re-run drops none but one in
    plain http to another machine, registered before such were refused: said so)."""
    with bridge.store.begin() as tx:
        found = tx.find_client(client_id)
    kept = []
    for prefix in found.redirect_uri_prefixes if found else []:
        if in_clear(prefix):
            click.echo(f"Dropped the callback prefix {prefix}: plain http to another machine "
                       "(the code would cross the network in clear).", err=True)
        else:
            kept.append(prefix)
    return kept + [p for p in prefixes if p not in kept]


def _print_audit(findings, realm: str) -> bool:
    for finding in findings:
        click.echo(f"OPEN  {finding}")
    if findings:
        click.echo(f"Realm {realm}: {len(findings)} way(s) in without the step-up.")
    else:
        click.echo(f"Realm {realm}: every way in passes the step-up.")
    return not findings


@keycloak.command("audit")
@_keycloak_options
def keycloak_audit(**kw) -> None:
    """List every way into the realm that does not pass the step-up, one line each with what to
    change; exit status 0 only when there is none."""
    from stepup_keycloak import ProvisioningError, audit, connect

    settings = _settings()
    try:
        opts = _install_options(settings, kw)
        findings = audit(connect(opts), opts)
    except ProvisioningError as e:
        _fail(str(e))
    if not _print_audit(findings, opts.realm):
        sys.exit(1)


@keycloak.command("uninstall")
@_keycloak_options
def keycloak_uninstall(**kw) -> None:
    """Restore the realm's previous flows and remove what install created."""
    from stepup_keycloak import ProvisioningError, connect, uninstall

    bridge = _bridge()
    try:
        opts = _install_options(bridge.settings, kw)
        changed = uninstall(connect(opts), opts)
    except ProvisioningError as e:
        _fail(str(e))
    _unregister(bridge, opts.bridge_client_id)
    click.echo(f"Realm {opts.realm}: {'restored' if changed else 'nothing to undo'}.")


#: prometheus_client's per-process files (``counter_<pid>.db``, ``gauge_livesum_<pid>.db``, ...).
_METRIC_FILE = re.compile(r"(counter|gauge_[a-z]+|histogram|summary)_\d+\.db")


def _clear_metric_files(folder: Path) -> None:
    """Metric files of a previous run would be counted again: remove them, and only them. Any
    other ``*.db`` there (the SQLite database, when the folder is the data folder) is refused:
    /metrics reads every one."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if others := sorted(item.name for item in folder.glob("*.db")
                        if not _METRIC_FILE.fullmatch(item.name)):
        raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR={folder} holds {', '.join(others[:3])}: "
                          "give the metrics a folder of their own")
    for item in folder.glob("*.db"):
        item.unlink()


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def _safe_url(url: str) -> str:
    """The database URL without its passwords (libpq also takes them as query parameters:
    ``password``, ``sslpassword``), for the start-up line."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    query = {k: "hidden" if "password" in k.lower() else v for k, v in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True)




if __name__ == "__main__":
    main()
