"""Step 5: the client scope that turns the step-up's user-session notes into token claims.

After a verified assertion the authenticator stores the bridge's ``acr``, ``amr`` (joined with
commas) and ``auth_time`` as user-session notes (``SESSION_NOTE_CLAIMS`` in options). A
``oidc-usersessionmodel-note-mapper`` per note copies each into the ID token, access token,
userinfo and introspection as ``stepup_acr``, ``stepup_amr`` (a string) and
``stepup_auth_time`` (a number). The scope is a realm default ("default default client
scope"), so clients created afterwards get it; existing clients need it added.
"""

from __future__ import annotations

from typing import Any

from .errors import ProvisioningError
from .options import SESSION_NOTE_CLAIMS
from .steps import Steps

_ATTRIBUTES = {"include.in.token.scope": "true", "display.on.consent.screen": "false"}
_DESCRIPTION = "Step-up claims from Stepup Bridge (stepup keycloak install)"


def ensure_client_scope(steps: Steps) -> str:
    """Create or repair the scope, its mappers and its realm-default membership; its id."""
    scope_id = _ensure_scope(steps)
    _ensure_mappers(steps, scope_id)
    if scope_id not in _default_ids(steps):
        steps.write(
            f"make client scope {steps.opts.client_scope!r} a realm default",
            steps.admin.add_default_default_client_scope,
            scope_id,
        )
    return scope_id


def add_to_existing_clients(steps: Steps, scope_id: str) -> list[str]:
    """Add the scope as a default scope to every OpenID Connect client that lacks it."""
    name = steps.opts.client_scope
    added = []
    for client in steps.clients():
        if client.get("bearerOnly") or client.get("protocol", "openid-connect") != "openid-connect":
            continue
        listed = (client.get("defaultClientScopes") or []) + (
            client.get("optionalClientScopes") or [])
        if name in listed:
            continue
        steps.write(
            f"add client scope {name!r} to client {client['clientId']!r}",
            steps.admin.add_client_default_client_scope,
            client["id"],
            scope_id,
            {"realm": steps.opts.realm, "client": client["id"], "clientScopeId": scope_id},
        )
        added.append(str(client["clientId"]))
    return added


def delete_client_scope(steps: Steps) -> None:
    """Drop the scope from the realm defaults, then delete it (and its mappers)."""
    name = steps.opts.client_scope
    scope = steps.read("list client scopes", steps.admin.get_client_scope_by_name, name)
    if scope is None:
        return
    if scope["id"] in _default_ids(steps):
        steps.write(
            f"remove client scope {name!r} from the realm defaults",
            steps.admin.delete_default_default_client_scope,
            scope["id"],
        )
    steps.write(f"delete client scope {name!r}", steps.admin.delete_client_scope, scope["id"])


def session_note_mappers() -> list[dict[str, Any]]:
    """One ``oidc-usersessionmodel-note-mapper`` per step-up session note."""
    return [
        {
            "name": f"stepup {claim.removeprefix('stepup_')}",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-usersessionmodel-note-mapper",
            "config": {
                "user.session.note": note,
                "claim.name": claim,
                "jsonType.label": json_type,
                "id.token.claim": "true",
                "access.token.claim": "true",
                "userinfo.token.claim": "true",
                "introspection.token.claim": "true",
            },
        }
        for note, (claim, json_type) in SESSION_NOTE_CLAIMS.items()
    ]


def _default_ids(steps: Steps) -> set[str]:
    listed = steps.read("list default client scopes", steps.admin.get_default_default_client_scopes)
    return {scope.get("id") for scope in listed}


def _ensure_scope(steps: Steps) -> str:
    name = steps.opts.client_scope
    scope = steps.read("list client scopes", steps.admin.get_client_scope_by_name, name)
    if scope is None:
        payload = {
            "name": name,
            "description": _DESCRIPTION,
            "protocol": "openid-connect",
            "attributes": _ATTRIBUTES,
        }
        return steps.write(
            f"create client scope {name!r}", steps.admin.create_client_scope, payload
        )
    if scope.get("protocol") != "openid-connect":
        raise ProvisioningError(
            f"client scope {name!r} exists with protocol {scope.get('protocol')!r}; "
            "choose another client scope name"
        )
    attributes = scope.get("attributes") or {}
    if any(attributes.get(k) != v for k, v in _ATTRIBUTES.items()):
        payload = {k: scope[k] for k in ("id", "name", "description", "protocol") if k in scope}
        payload["attributes"] = {**attributes, **_ATTRIBUTES}
        steps.write(
            f"update client scope {name!r}", steps.admin.update_client_scope, scope["id"], payload
        )
    return str(scope["id"])


def _ensure_mappers(steps: Steps, scope_id: str) -> None:
    """Add missing mappers, fix drifted config; never add a second mapper of the same name."""
    listed = steps.read(
        f"list the mappers of client scope {steps.opts.client_scope!r}",
        steps.admin.get_mappers_from_client_scope,
        scope_id,
    )
    existing = {mapper.get("name"): mapper for mapper in listed}
    for wanted in session_note_mappers():
        name = wanted["name"]
        have = existing.get(name)
        if have is None:
            steps.write(
                f"add mapper {name!r}", steps.admin.add_mapper_to_client_scope, scope_id, wanted
            )
            continue
        if have.get("protocolMapper") != wanted["protocolMapper"]:
            raise ProvisioningError(
                f"client scope {steps.opts.client_scope!r} has a mapper {name!r} of type "
                f"{have.get('protocolMapper')!r}; remove it and run install again"
            )
        config = have.get("config") or {}
        if any(config.get(k) != v for k, v in wanted["config"].items()):
            steps.write(
                f"update mapper {name!r}",
                steps.admin.update_mapper_in_client_scope,
                scope_id,
                have["id"],
                {**have, "config": {**config, **wanted["config"]}},
            )
