"""An in-memory Keycloak 26 admin REST API behind `responses`, backed by dicts.

Only the endpoints provisioning uses, with the Keycloak 26 behaviour that matters to it: the
``/authentication`` part is in :mod:`fake_flows`; here are the token endpoint (password and
client-credentials grants, checked against ``users``/``clients``), the realm (a PUT replaces
``attributes`` wholesale, as ``DefaultExportImportManager.updateRealm`` does; ``logout-all``
moves its not-before), client scopes
with their mappers, the realm's default client scopes, the server's features and the
fine-grained (v1) permissions of identity providers and users, read-only. Admin calls need a
bearer token the token endpoint issued.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import responses
from fake_flows import BASE, FakeAuthentication, Reply, reply

__all__ = ["BASE", "FakeKeycloak"]


class FakeKeycloak(FakeAuthentication):
    """One realm: its flows (see fake_flows), settings and client scopes, and a token endpoint.

    ``calls`` records every request as (method, decoded path, parsed body); ``fail`` makes
    matching requests answer an error instead.
    """

    def __init__(self, realm: str = "acme") -> None:
        super().__init__()
        self.realm_name = realm
        self.scopes: dict[str, dict[str, Any]] = {}
        self.default_scopes: list[str] = []
        self.users = {("master", "admin"): "admin-password-123"}
        self.clients = {("master", "provisioner"): "provisioner-secret-456"}
        self.tokens: set[str] = set()
        self.query: dict[str, str] = {}
        self.token_requests: list[dict[str, str]] = []
        self.calls: list[tuple[str, str, Any]] = []
        self.failures: list[tuple[str, str, int, dict[str, Any]]] = []
        #: Clients' admin URLs that logout-all reports it could not reach.
        self.unreached_admin_urls: list[str] = []
        self.realm: dict[str, Any] = {
            "id": "realm-id",
            "realm": realm,
            "enabled": True,
            "browserFlow": "browser",
            "directGrantFlow": "direct grant",
            "resetCredentialsFlow": "reset credentials",
            "resetPasswordAllowed": True,
            "registrationFlow": "registration",
            "registrationAllowed": False,
            "attributes": {"frontendUrl": "https://sso.example.test", "acr.loa.map": "{}"},
        }
        for name in ("profile", "email", "roles"):
            scope_id = next(self.ids)
            self.scopes[scope_id] = {
                "id": scope_id,
                "name": name,
                "protocol": "openid-connect",
                "attributes": {},
                "protocolMappers": [],
            }
            self.default_scopes.append(scope_id)
        #: Identity providers by alias, and clients by id (representations as Keycloak lists them).
        self.idps: dict[str, dict[str, Any]] = {}
        self.clients_by_id: dict[str, dict[str, Any]] = {}
        #: Enabled server features (``/admin/serverinfo`` names); see :meth:`grant_permission`.
        self.features: set[str] = set()
        #: Whether ``/admin/serverinfo`` leaves its features out (newer servers, realm admins).
        self.hide_features = False
        #: Fine-grained v1 permissions: ``"users"`` or an IdP alias -> scope -> policy names.
        self.permissions: dict[str, dict[str, list[str]]] = {}
        #: Client policies and profiles, the realm's and the server's global ones (as the
        #: admin API lists them: ``{"name", "enabled", "profiles"}``, ``{"name", "executors"}``).
        self.client_policies: list[dict[str, Any]] = []
        self.global_client_policies: list[dict[str, Any]] = []
        self.client_profiles: list[dict[str, Any]] = []
        self.global_client_profiles: list[dict[str, Any]] = []
        self.management_id = self.add_client("realm-management", bearerOnly=True)["id"]
        prefix = rf"/admin/realms/{re.escape(realm)}"
        scope = prefix + r"/client-scopes/([^/]+)"
        self.routes = [
            ("POST", r"/realms/([^/]+)/protocol/openid-connect/token", self.token),
            ("GET", prefix, self.get_realm),
            ("PUT", prefix, self.put_realm),
            ("POST", prefix + r"/logout-all", self.logout_all),
            *self.authentication_routes(prefix + "/authentication"),
            ("GET", prefix + r"/client-scopes", self.list_scopes),
            ("POST", prefix + r"/client-scopes", self.create_scope),
            ("PUT", scope, self.update_scope),
            ("DELETE", scope, self.delete_scope),
            ("GET", scope + r"/protocol-mappers/models", self.mappers),
            ("POST", scope + r"/protocol-mappers/models", self.add_mapper),
            ("PUT", scope + r"/protocol-mappers/models/([^/]+)", self.update_mapper),
            ("GET", r"/admin/serverinfo", self.server_info),
            ("GET", prefix + r"/identity-provider/instances/([^/]+)/management/permissions",
             self.idp_permissions),
            ("GET", prefix + r"/users-management-permissions", self.users_permissions),
            ("GET", prefix + r"/clients/([^/]+)/authz/resource-server/permission/([^/]+)/"
             r"associatedPolicies", self.associated_policies),
            ("GET", prefix + r"/identity-provider/instances", self.list_idps),
            ("PUT", prefix + r"/identity-provider/instances/([^/]+)", self.put_idp),
            ("GET", prefix + r"/clients", self.list_clients),
            ("GET", prefix + r"/client-policies/policies", self.list_client_policies),
            ("GET", prefix + r"/client-policies/profiles", self.list_client_profiles),
            ("PUT", prefix + r"/clients/([^/]+)", self.put_client),
            ("PUT", prefix + r"/clients/([^/]+)/default-client-scopes/([^/]+)",
             self.add_client_scope),
            ("GET", prefix + r"/default-default-client-scopes", self.list_defaults),
            ("PUT", prefix + r"/default-default-client-scopes/([^/]+)", self.add_default),
            ("DELETE", prefix + r"/default-default-client-scopes/([^/]+)", self.remove_default),
        ]

    def bound_flows(self) -> set[str]:
        bindings = ("browserFlow", "directGrantFlow", "resetCredentialsFlow", "registrationFlow")
        used = {self.realm[b] for b in bindings}
        for client in self.clients_by_id.values():
            overrides = client.get("authenticationFlowBindingOverrides") or {}
            used |= {self.flows[i]["alias"] for i in overrides.values() if i in self.flows}
        return used | {i.get("postBrokerLoginFlowAlias") for i in self.idps.values()} - {None}

    def add_idp(self, alias: str, **rep: Any) -> None:
        self.idps[alias] = {"alias": alias, "providerId": "oidc", "enabled": True,
                            "config": {"clientId": "kc", "clientSecret": "**********"}, **rep}

    def add_client(self, client_id: str, **rep: Any) -> dict[str, Any]:
        internal = next(self.ids)
        self.clients_by_id[internal] = {
            "id": internal, "clientId": client_id, "protocol": "openid-connect",
            "bearerOnly": False, "directAccessGrantsEnabled": False,
            "defaultClientScopes": ["profile", "email"], "optionalClientScopes": [], **rep}
        return self.clients_by_id[internal]

    def grant_permission(self, holder: str, scope: str, *policies: str) -> None:
        """Turn on the fine-grained permissions of ``holder`` (an IdP alias or ``"users"``) and
        give its ``scope`` permission these policies (none: it exists but allows nobody)."""
        self.permissions.setdefault(holder, {})[scope] = list(policies)

    # -- wiring --------------------------------------------------------------------------------

    def register(self, rsps: responses.RequestsMock) -> None:
        for method in ("GET", "POST", "PUT", "DELETE"):
            rsps.add_callback(method, re.compile(re.escape(BASE) + "/.*"), callback=self)

    def fail(self, method: str, path_pattern: str, status: int, body: dict[str, Any]) -> None:
        """Answer matching requests with ``status`` and ``body`` instead of serving them."""
        self.failures.append((method, path_pattern, status, body))

    def writes(self) -> list[tuple[str, str, Any]]:
        """Calls that would change Keycloak (the token request is not one)."""
        return [c for c in self.calls if c[0] != "GET" and not c[1].endswith("/token")]

    def __call__(self, request: Any) -> Reply:
        raw_path = urlsplit(request.url).path  # routed as sent; each part decoded, as JAX-RS does
        path = unquote(raw_path)
        raw = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
        body: Any = _parse(raw, request.headers.get("Content-Type", ""))
        self.calls.append((request.method, path, body))
        for method, pattern, status, error in self.failures:
            if method == request.method and re.fullmatch(pattern, path):
                return reply(status, error)
        is_token = path.endswith("/token")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not is_token and bearer not in self.tokens:
            return reply(401, {"error": "HTTP 401 Unauthorized"})
        self.query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        for method, pattern, handler in self.routes:
            match = re.fullmatch(pattern, raw_path)
            if method == request.method and match:
                return handler(body, *(unquote(part) for part in match.groups()))
        return reply(404, {"error": f"fake: no route for {request.method} {path}"})

    # -- token endpoint ------------------------------------------------------------------------

    def token(self, form: dict[str, str], realm: str) -> Reply:
        self.token_requests.append({**form, "realm": realm})
        if form.get("grant_type") == "password":
            ok = self.users.get((realm, form.get("username", ""))) == form.get("password")
            error = ("invalid_grant", "Invalid user credentials")
        else:
            ok = self.clients.get((realm, form.get("client_id", ""))) == form.get("client_secret")
            error = ("unauthorized_client", "Invalid client or Invalid client credentials")
        if not ok:
            return reply(401, {"error": error[0], "error_description": error[1]})
        token = f"token-{len(self.tokens) + 1}"
        self.tokens.add(token)
        return reply(200, {"access_token": token, "expires_in": 300, "token_type": "Bearer"})

    # -- realm ---------------------------------------------------------------------------------

    def get_realm(self, _: Any) -> Reply:
        return reply(200, self.realm)

    def put_realm(self, rep: dict[str, Any]) -> Reply:
        if rep.get("attributes") is not None:
            self.realm["attributes"] = dict(rep["attributes"])
        for binding in ("browserFlow", "resetCredentialsFlow", "directGrantFlow",
                        "registrationFlow"):
            if rep.get(binding) is not None:
                found = self.flow_by_alias(rep[binding])
                self.realm[binding] = found["alias"] if found else None
        return reply(204)

    def logout_all(self, _: Any) -> Reply:
        """Sessions are not modelled: the realm's not-before is what ending them leaves."""
        self.realm["notBefore"] = self.realm.get("notBefore", 0) + 1
        return reply(200, {"successRequests": [], "failedRequests": self.unreached_admin_urls})

    # -- identity providers and clients ----------------------------------------------------------

    def list_idps(self, _: Any) -> Reply:
        return reply(200, self._paged(list(self.idps.values()), default_max=100))

    def put_idp(self, rep: dict[str, Any], alias: str) -> Reply:
        if alias not in self.idps:
            return reply(404, {"error": "Could not find identity provider"})
        flow = rep.get("postBrokerLoginFlowAlias") or None
        if flow and not self.flow_by_alias(flow):
            message = f"No available authentication flow with alias: {flow}"
            return reply(400, {"errorMessage": message})
        config = {k: v for k, v in (rep.get("config") or {}).items() if v != ""}
        self.idps[alias] = {**rep, "postBrokerLoginFlowAlias": flow, "config": config}
        if flow is None:
            del self.idps[alias]["postBrokerLoginFlowAlias"]
        return reply(204)

    def list_clients(self, _: Any) -> Reply:
        clients = [c for c in self.clients_by_id.values()
                   if self.query.get("clientId", c["clientId"]) == c["clientId"]]
        return reply(200, self._paged(clients))

    def select_flow(self, policy: str, alias: str, enabled: bool = True,
                    scope: str = "realm", conditions: bool = True) -> None:
        """A client policy (``scope`` "realm" or "global") whose profile's flow selector sends
        every client's browser logins to flow ``alias`` (none: without ``conditions``)."""
        profile = {"name": f"{policy}-profile", "executors": [
            {"executor": "auth-flow-enforcer", "configuration": {"auth-flow-alias": alias}}]}
        rep = {"name": policy, "enabled": enabled, "profiles": [profile["name"]],
               "conditions": [{"condition": "any-client", "configuration": {}}]
               if conditions else []}
        if scope == "global":
            self.global_client_profiles.append(profile)
            self.global_client_policies.append(rep)
        else:
            self.client_profiles.append(profile)
            self.client_policies.append(rep)

    def list_client_policies(self, _: Any) -> Reply:
        answer: dict[str, Any] = {"policies": self.client_policies}
        if self.query.get("include-global-policies") == "true":
            answer["globalPolicies"] = self.global_client_policies
        return reply(200, answer)

    def list_client_profiles(self, _: Any) -> Reply:
        answer: dict[str, Any] = {"profiles": self.client_profiles}
        if self.query.get("include-global-profiles") == "true":
            answer["globalProfiles"] = self.global_client_profiles
        return reply(200, answer)

    # -- server features and fine-grained permissions (v1) ------------------------------------

    def server_info(self, _: Any) -> Reply:
        if self.hide_features:
            return reply(200, {"systemInfo": {}})
        enabled = sorted(self.features | {"TOKEN_EXCHANGE_STANDARD_V2"})  # on by default
        return reply(200, {"features": [{"name": n, "enabled": True} for n in enabled]
                           + [{"name": "DOCKER", "enabled": False}]})

    def _permissions(self, holder: str) -> Reply:
        if "ADMIN_FINE_GRAINED_AUTHZ" not in self.features:
            return reply(501, {"error": "Feature not enabled"})
        scopes = self.permissions.get(holder)
        if scopes is None:
            return reply(200, {"enabled": False})
        return reply(200, {"enabled": True, "resource": f"res-{holder}",
                           "scopePermissions": {s: f"perm-{holder}-{s}" for s in scopes}})

    def idp_permissions(self, _: Any, alias: str) -> Reply:
        if alias not in self.idps:
            return reply(404, {"error": "Could not find identity provider"})
        return self._permissions(alias)

    def users_permissions(self, _: Any) -> Reply:
        return self._permissions("users")

    def associated_policies(self, _: Any, client_id: str, permission: str) -> Reply:
        for holder, scopes in self.permissions.items():
            for scope, policies in scopes.items():
                if client_id == self.management_id and permission == f"perm-{holder}-{scope}":
                    return reply(200, [{"id": f"id-{p}", "name": p, "type": "client"}
                                       for p in policies])
        return reply(404, {"error": "HTTP 404 Not Found"})

    def _paged(self, items: list[Any], default_max: int | None = None) -> list[Any]:
        """``first``/``max`` as Keycloak 26 reads them; identity providers come 100 at a time
        when ``max`` is not given (IdentityProvidersResource), clients all at once."""
        first = int(self.query.get("first", 0))
        size = int(self.query["max"]) if "max" in self.query else default_max
        return items[first:first + size] if size is not None else items[first:]

    def put_client(self, rep: dict[str, Any], client_id: str) -> Reply:
        client = self.clients_by_id.get(client_id)
        if client is None:
            return reply(404, {"error": "Could not find client"})
        overrides = dict(client.get("authenticationFlowBindingOverrides") or {})
        for binding, flow_id in (rep.get("authenticationFlowBindingOverrides") or {}).items():
            if not flow_id:  # Keycloak: an empty value removes the override
                overrides.pop(binding, None)
            elif flow_id not in self.flows:
                return reply(400, {"errorMessage": "Flow not found"})
            else:
                overrides[binding] = flow_id
        client.update(authenticationFlowBindingOverrides=overrides,
                      attributes=dict(rep.get("attributes") or {}))
        return reply(204)

    def add_client_scope(self, _: Any, client_id: str, scope_id: str) -> Reply:
        client = self.clients_by_id.get(client_id)
        if client is None or scope_id not in self.scopes:
            return reply(404, {"error": "Could not find client"})
        name = self.scopes[scope_id]["name"]
        if name not in client["defaultClientScopes"]:
            client["defaultClientScopes"].append(name)
        return reply(204)

    # -- client scopes -------------------------------------------------------------------------

    def scope_by_name(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.scopes.values() if s["name"] == name), None)

    def list_scopes(self, _: Any) -> Reply:
        return reply(200, list(self.scopes.values()))

    def create_scope(self, rep: dict[str, Any]) -> Reply:
        if self.scope_by_name(rep["name"]):
            return reply(409, {"errorMessage": f"Client Scope {rep['name']} already exists"})
        scope_id = next(self.ids)
        self.scopes[scope_id] = {**rep, "id": scope_id, "protocolMappers": []}
        return reply(201, headers={"Location": f"{BASE}/admin/client-scopes/{scope_id}"})

    def update_scope(self, rep: dict[str, Any], scope_id: str) -> Reply:
        scope = self.scopes[scope_id]
        scope.update({k: v for k, v in rep.items() if k in ("name", "description", "attributes")})
        return reply(204)

    def delete_scope(self, _: Any, scope_id: str) -> Reply:
        scope = self.scopes.pop(scope_id, None)
        if scope is None:
            return reply(404, {"error": "Could not find client scope"})
        if scope_id in self.default_scopes:
            self.default_scopes.remove(scope_id)
        for client in self.clients_by_id.values():  # Keycloak drops it from clients too
            client["defaultClientScopes"] = [
                n for n in client["defaultClientScopes"] if n != scope["name"]]
        return reply(204)

    def mappers(self, _: Any, scope_id: str) -> Reply:
        return reply(200, self.scopes[scope_id]["protocolMappers"])

    def add_mapper(self, rep: dict[str, Any], scope_id: str) -> Reply:
        existing = self.scopes[scope_id]["protocolMappers"]
        if any(m["name"] == rep["name"] for m in existing):
            return reply(409, {"errorMessage": "Protocol mapper exists with same name"})
        mapper_id = next(self.ids)
        existing.append({**rep, "id": mapper_id})
        return reply(201, headers={"Location": f"{BASE}/models/{mapper_id}"})

    def update_mapper(self, rep: dict[str, Any], scope_id: str, mapper_id: str) -> Reply:
        for mapper in self.scopes[scope_id]["protocolMappers"]:
            if mapper["id"] == mapper_id:
                mapper["config"] = dict(rep["config"])
                return reply(204)
        return reply(404, {"error": "Model not found"})

    def list_defaults(self, _: Any) -> Reply:
        listed = [{"id": i, "name": self.scopes[i]["name"]} for i in self.default_scopes]
        return reply(200, listed)

    def add_default(self, _: Any, scope_id: str) -> Reply:
        if scope_id not in self.scopes:
            return reply(404, {"error": "Client scope not found"})
        if scope_id not in self.default_scopes:
            self.default_scopes.append(scope_id)
        return reply(204)

    def remove_default(self, _: Any, scope_id: str) -> Reply:
        if scope_id not in self.scopes:
            return reply(404, {"error": "Client scope not found"})
        if scope_id in self.default_scopes:
            self.default_scopes.remove(scope_id)
        return reply(204)


def _parse(raw: str, content_type: str) -> Any:
    if not raw:
        return None
    if "x-www-form-urlencoded" in content_type:
        return {k: v[0] for k, v in parse_qs(raw).items()}
    try:
        return json.loads(raw)
    except ValueError:
        return raw
