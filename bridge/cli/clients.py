"""``stepup client``: the registrations of the IdPs and help-desk tools."""

from __future__ import annotations

import time

import click

from ..app import Bridge
from ..oidc.clients import in_clear, new_client
from ..store import Client
from .base import NOT_FOUND, _bridge, _confirmed, _fail, main


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
    click.echo({"registered": f"Registered client {client_id}",
                "renamed": f"Renamed client {client_id} (its sign-ins in progress go on)",
                "unchanged": f"Client {client_id} is already registered with these settings: "
                             "nothing changed",
                }[_register(bridge, record, replace)])


def _register(bridge: Bridge, record, replace: bool) -> str:
    """Register ``record``; what that did: ``registered``, ``renamed`` or ``unchanged``."""
    with bridge.store.begin() as tx:
        found = tx.find_client(record.client_id)
        if found and not replace:
            _fail(f"client {record.client_id!r} is already registered (use --replace)")
        if found and _same(found, record, "created_at", "client_name"):
            # The same registration again (`keycloak install` run again, a script re-applied),
            # perhaps under another name: the sign-ins in progress and their codes go on.
            if found.client_name == record.client_name:
                return "unchanged"
            tx.name_client(record.client_id, record.client_name)
            tx.audit("client_renamed", time.time(), client_id=record.client_id)
            return "renamed"
        tx.remove_client(record.client_id)
        tx.add_client(record)
        # The most privileged registration, an admin one, shows as such in the trail.
        tx.audit("client_registered", time.time(), client_id=record.client_id,
                 admin=record.admin, auth="private_key_jwt" if record.jwks_uri else "client_secret")
    return "registered"


def _same(a: Client, b: Client, *besides: str) -> bool:
    """Two registrations agree on everything but ``besides``."""
    return ({**a.__dict__, **dict.fromkeys(besides)}
            == {**b.__dict__, **dict.fromkeys(besides)})


@client.command("list")
def client_list() -> None:
    """List registered clients (never their secrets)."""
    with _bridge(existing=True).store.begin() as tx:
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
    bridge = _bridge(existing=True)
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
