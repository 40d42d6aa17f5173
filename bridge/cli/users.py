"""``stepup user`` and ``stepup ip``: the help desk's commands."""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from typing import NoReturn

import click

from .. import helpdesk
from .base import NOT_FOUND, REFUSED, _bridge, _confirmed, _fail, main


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
    with _bridge(existing=True).store.begin() as tx:
        found = helpdesk.show(tx, subject, time.time(), None)
        trail = tx.audit_trail(subject, leave_out=helpdesk.LOOK_UPS)
    if found is None:
        click.echo(f"{subject}: not enrolled ({_not_enrolled(trail)})")
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
        # "-" for what a command's event has no value for (the shell's: no client, no
        # address), so the columns stay where a reader expects them.
        click.echo(f"  {_when(event['at'])}  {event['event']:<20} {event['client_id'] or '-'} "
                   f"{event['ip'] or '-'} {json.dumps(event['detail']) if event['detail'] else ''}")
    if found is None:
        sys.exit(1)  # as grep: a script can tell "no such user" from a user shown


_FACTOR_EVENTS = frozenset({"enrollment", "reenrollment", "helpdesk_reset", "helpdesk_unlock",
                            "not_me"})


def _not_enrolled(trail: list[dict]) -> str:
    """Why a subject has no factor, as far as its events tell: a reset's "not enrolled" is no
    mistyped subject (the username hint is for a subject with no history at all)."""
    # The newest event that set factors up or took them away says what happened last.
    last = next((e for e in trail if e["event"] in _FACTOR_EVENTS), None)
    if last is not None and last["event"] == "helpdesk_reset":
        return f"the help desk reset their factors on {_when(last['at'])}"
    if trail:
        return "no factor; their events are below"
    return _SUBJECT_HINT


def _disowned(found: dict) -> str:
    """The event a "this wasn't me" lock disowned, and when: one from before the current
    factors were set up was about factors a reset revoked since (the lock stands: whoever did
    it may have set up these too)."""
    kind, at = found["disowned_event"], found["disowned_event_at"]
    if kind is None or at is None:
        return "an event no longer kept"
    before = ", before these factors were set up" if at < found["enrolled_at"] else ""
    return f"{kind} of {_when(at)}{before}"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


@user.command("unlock")
@click.argument("subject", callback=_subject)
def user_unlock(subject: str) -> None:
    """Lift a lock after checking it's the user; their authenticator and code stay valid.
    Exit 1: not enrolled; exit 3: refused (not locked, or locked by a "this wasn't me" that
    disowned a use or change of the factors: reset instead)."""
    try:
        barred = helpdesk.change(_bridge(existing=True).store, helpdesk.unlock, subject,
                                 time.time(), None)
    except helpdesk.Refused as refusal:
        _refused(subject, refusal)
    click.echo(f"Unlocked {subject}: " + ("they enroll again at their next sign-in." if barred
               else "the failure count starts again from zero."))


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

    Exit 1: not enrolled; exit 2: not confirmed."""
    if not yes and not _confirmed(f"Revoke the second factor of {subject}?"):
        # 2, as any usage error (1 is "not enrolled"): nothing was asked of the bridge.
        _fail("not confirmed: nothing was reset (--yes to skip the question)")
    try:
        helpdesk.change(_bridge(existing=True).store, helpdesk.reset, subject, time.time(), None)
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
                   "(after fixing an IdP's wrong secret); '' the window of unknown client "
                   "ids.")
def ip_unblock(address: str, client_id: str | None) -> None:
    """Forget the failed codes from ADDRESS (STEPUP_IP_LIMIT), so its users are let in again
    now rather than when the failures age out: an office behind one address that a few users'
    mistakes, or a guesser among them, closed. Audited."""
    from ..throttle import IPV6_PREFIX, RedisUnreachable, window_source

    try:
        if "/" in address:  # an IPv6 /64 as the bridge prints it (its log, this command)
            network = ipaddress.ip_network(address, strict=False)
            if network.prefixlen < IPV6_PREFIX:
                raise ValueError(address)
            parsed = network.network_address
        else:
            parsed = ipaddress.ip_address(address)
    except ValueError:
        _fail(f"{address!r} is not an IP address (nor an IPv6 /{IPV6_PREFIX})")
    # As the bridge counts it: an IPv4 address given in its IPv6 spelling is the IPv4 one, an
    # IPv6 one the /64 it is in.
    address = window_source(str(getattr(parsed, "ipv4_mapped", None) or parsed))
    bridge = _bridge(existing=True)
    with bridge.store.begin() as tx:
        if client_id and tx.find_client(client_id) is None:  # '' is every unknown id's window
            _fail(f"no client {client_id!r} is registered (stepup client list)", NOT_FOUND)
        try:
            cleared = (tx.clear_ip_failures(address, client_id) if client_id is not None
                       else bridge.challenge.attempts.limiter.clear(tx, address))
        except RedisUnreachable as e:
            _fail(str(e))
        if cleared:
            tx.audit("ip_unblocked", time.time(), client_id=client_id, ip=address,
                     failures=cleared)
    window = ("code window" if client_id is None else
              f"client {client_id}'s authentication window" if client_id else
              "authentication window of unknown client ids")
    # Nodes that count in Redis also write each failure to the database: a command not given
    # their STEPUP_REDIS_URL clears only that copy, and Redis still holds the window.
    redis = "" if client_id is not None or bridge.settings.redis_url else (
        "; if the nodes count in Redis, give this command their STEPUP_REDIS_URL")
    if not cleared:
        click.echo(f"{address} has no recent failures in the {window}{redis}.")
        return
    click.echo(f"Unblocked {address} ({window}): {cleared} recent failure"
               f"{'' if cleared == 1 else 's'} forgotten{redis}.")
