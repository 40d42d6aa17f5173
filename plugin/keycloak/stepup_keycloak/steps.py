"""Idempotent admin-API building blocks behind install, uninstall and audit.

Each block reads first and writes only what differs; every write is recorded in
:attr:`Steps.done` (so a failure can say exactly what was already changed) and sets
:attr:`Steps.changed`. Facts about Keycloak 26's admin API these blocks rely on:

- a new execution or sub-flow is appended DISABLED at the end of its parent flow; it is moved
  with ``raise-priority``/``lower-priority`` (one swap with its neighbour per call);
- ``PUT …/flows/{alias}/executions`` also writes the ``priority`` it is sent, so a requirement
  change sends back the whole representation just read, never a partial one;
- ``PUT /admin/realms/{realm}`` replaces the realm's ``attributes`` wholesale (attributes missing
  from the request are removed), so the full map just read goes back with our keys changed;
- deleting an execution deletes its authenticator config and, for a sub-flow, the sub-flow;
  deleting a flow deletes its sub-flows and their configs; a bound flow cannot be deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from keycloak import KeycloakAdmin, urls_patterns
from keycloak.exceptions import KeycloakGetError, KeycloakPostError, raise_error_from_response

from .errors import ProvisioningError, refused
from .flows import Step, read_steps
from .options import LOA_LEVEL_KEY, MASKED_SECRET, InstallOptions

#: Items asked for per page of an admin listing.
PAGE = 100

#: Not in python-keycloak's URL patterns.
URL_LOGOUT_ALL = "admin/realms/{realm-name}/logout-all"
#: The client policy executor that sends a client's browser logins to a flow of its choosing
#: (Keycloak's AuthenticationFlowSelectorExecutor, its flow in ``auth-flow-alias``).
FLOW_SELECTOR = "auth-flow-enforcer"


class SecretUnknown(Exception):
    """A config would need a secret that Keycloak showed only masked (a new config, or one
    without it)."""


class Steps:
    """Admin calls for one realm, sharing the admin client, a ``changed`` flag and a journal."""

    def __init__(self, admin: KeycloakAdmin, opts: InstallOptions) -> None:
        self.admin = admin
        self.opts = opts
        self.changed = False
        #: What was written so far, in words ("bind flow 'x' as browser flow"), for error reports.
        self.done: list[str] = []
        self._secrets = list(opts.secrets())

    def hide(self, secret: str) -> None:
        """Scrub ``secret`` from every later error message."""
        self._secrets.append(secret)

    # -- calling Keycloak ------------------------------------------------------------------

    def read(self, action: str, call: Callable[..., Any], *args: Any) -> Any:
        """Run one admin call; a refusal becomes a one-line ProvisioningError."""
        with refused(
            action,
            server_url=self.opts.server_url,
            account=self.opts.admin_account,
            secrets=self._secrets,
        ):
            return call(*args)

    def write(self, action: str, call: Callable[..., Any], *args: Any) -> Any:
        """Like :meth:`read`, for a call that changes the realm."""
        result = self.read(action, call, *args)
        self.changed = True
        self.done.append(action)
        return result

    # -- the realm -------------------------------------------------------------------------------

    def realm(self) -> dict[str, Any]:
        return self.read(f"read realm {self.opts.realm!r}", self.admin.get_realm, self.opts.realm)

    def update_realm(self, action: str, payload: dict[str, Any]) -> None:
        self.write(action, self.admin.update_realm, self.opts.realm, payload)

    def bind(self, binding: str, alias: str, remember: str) -> None:
        """Bind ``alias`` as the realm's ``binding`` flow; remember the one it replaces, once:
        if ours was unbound or renamed since, the flow it replaced is still the one uninstall
        must bring back (the one bound now may be ours under another name)."""
        realm = self.realm()
        current = realm.get(binding)
        if current == alias:
            return
        attributes = dict(realm.get("attributes") or {})
        if current and remember not in attributes:
            attributes[remember] = current
        self.update_realm(
            f"bind flow {alias!r} as {binding} of realm {self.opts.realm!r}",
            {binding: alias, "attributes": attributes},
        )

    def unbind(self, binding: str, alias: str, remember: str, default: str) -> None:
        """Bind the remembered flow again if ``alias`` is bound; forget the remembered one."""
        realm = self.realm()
        attributes = dict(realm.get("attributes") or {})
        remembered = attributes.pop(remember, None)
        payload: dict[str, Any] = {}
        if realm.get(binding) == alias:
            aliases = {flow.get("alias") for flow in self.flows()} - {alias}
            payload[binding] = remembered if remembered in aliases else default
        if payload or remembered is not None:
            payload["attributes"] = attributes
            self.update_realm(f"restore the {binding} of realm {self.opts.realm!r}", payload)

    # -- listings --------------------------------------------------------------------------------

    def clients(self) -> list[dict[str, Any]]:
        return self._every("list clients", urls_patterns.URL_ADMIN_CLIENTS)

    def identity_providers(self) -> list[dict[str, Any]]:
        return self._every("list identity providers", urls_patterns.URL_ADMIN_IDPS)

    def _every(self, action: str, url: str) -> list[dict[str, Any]]:
        """Every item of an admin listing, page by page: asked without ``max``, Keycloak 26
        answers only the first 100 identity providers, and a door past them would be missed."""
        path = url.format(**{"realm-name": self.opts.realm})
        items: list[dict[str, Any]] = []
        while True:
            page = self.read(action, self._page, path, len(items))
            items += page
            if len(page) < PAGE:
                return items

    def _page(self, path: str, first: int) -> list[dict[str, Any]]:
        return self._get(path, first=first, max=PAGE)

    def _get(self, path: str, **query: Any) -> Any:
        return raise_error_from_response(self.admin.connection.raw_get(path, **query),
                                         KeycloakGetError)

    def selected_flows(self) -> list[tuple[str, str, int | None]]:
        """(policy, flow alias, level) for each enabled client policy, the realm's or a global
        one, with a profile whose *Authentication flow selector* (``auth-flow-enforcer``) sends
        the browser logins of the clients it matches to a flow of its own. The level is the
        selector's ``auth-flow-loa``, which Keycloak gives the login when that flow ends
        (AcrStore.setAuthFlowLevelAuthenticatedToCurrentRequest); None if not set or not a
        number."""
        base = f"admin/realms/{quote(self.opts.realm, safe='')}/client-policies"
        policies = self.read("read the client policies", self._get,
                             f"{base}/policies?include-global-policies=true")
        profiles = self.read("read the client profiles", self._get,
                             f"{base}/profiles?include-global-profiles=true")
        executors: dict[str, list[dict[str, Any]]] = {}
        for profile in (profiles.get("globalProfiles") or []) + (profiles.get("profiles") or []):
            executors[profile.get("name")] = profile.get("executors") or []
        selected = []
        for policy in (policies.get("globalPolicies") or []) + (policies.get("policies") or []):
            if policy.get("enabled", True) is False or not policy.get("conditions"):
                continue  # Keycloak applies no policy that has no condition
            for profile in policy.get("profiles") or []:
                for executor in executors.get(profile, []):
                    configuration = executor.get("configuration") or {}
                    alias = configuration.get("auth-flow-alias")
                    if executor.get("executor") == FLOW_SELECTOR and alias:
                        selected.append((policy.get("name", "?"), alias,
                                         _level(configuration.get("auth-flow-loa"))))
        return selected

    # -- the realm's sessions --------------------------------------------------------------------

    def sign_out_everyone(self) -> list[str]:
        """Keycloak's *Sign out all active sessions*: the realm's online user sessions end,
        and its *not before* becomes now, so refresh and offline tokens issued before are
        refused (``RealmAdminResource.logoutAll``, ``ResourceAdminManager.logoutAll``). Keycloak
        also tells each client that has an admin URL; the URLs it could not reach are
        returned."""
        path = URL_LOGOUT_ALL.format(**{"realm-name": quote(self.opts.realm, safe="")})
        answer = self.write(f"sign out every session of realm {self.opts.realm!r}",
                            self._post, path)
        failed = answer.get("failedRequests") if isinstance(answer, dict) else None
        return [str(url) for url in failed or []]

    def _post(self, path: str) -> Any:
        return raise_error_from_response(self.admin.connection.raw_post(path, data=""),
                                         KeycloakPostError)

    # -- the server and its fine-grained permissions ------------------------------------------

    def features(self) -> frozenset[str] | None:
        """The server's enabled features, by the names ``/admin/serverinfo`` gives them
        (``TOKEN_EXCHANGE``, ``JWT_AUTHORIZATION_GRANT`` …); None when it does not list them
        to this admin account (newer servers keep some of it from realm admins)."""
        info = self.read("read the server's features", self._get,
                         urls_patterns.URL_ADMIN_SERVER_INFO)
        if not isinstance(info.get("features"), list):
            return None
        return frozenset(f["name"] for f in info["features"] if f.get("enabled"))

    def idp_permission_policies(self, alias: str, scope: str) -> list[str]:
        """The policies behind identity provider ``alias``'s fine-grained (v1) ``scope``
        permission: none while its permissions are off."""
        return self._permission_policies(
            f"identity provider {alias!r}",
            f"identity-provider/instances/{quote(alias, safe='')}/management/permissions", scope)

    def users_permission_policies(self, scope: str) -> list[str]:
        """The policies behind the users' fine-grained (v1) ``scope`` permission."""
        return self._permission_policies("users", "users-management-permissions", scope)

    def _permission_policies(self, what: str, path: str, scope: str) -> list[str]:
        """Names of the policies of one v1 permission, which live in the realm-management
        client's authorization settings. Keycloak grants nothing through a permission that has
        no policy, so an empty list means nobody holds it."""
        base = f"admin/realms/{quote(self.opts.realm, safe='')}"
        action = f"read the {scope} permission of {what}"
        reference = self.read(action, self._get, f"{base}/{path}")
        permission = (reference.get("scopePermissions") or {}).get(scope)
        if not reference.get("enabled") or not permission:
            return []
        management = self.read("find the realm-management client", self.admin.get_client_id,
                               "realm-management")
        policies = self.read(action, self._get, f"{base}/clients/{management}/authz/"
                             f"resource-server/permission/{permission}/associatedPolicies")
        return [p.get("name", p.get("id", "?")) for p in policies]

    # -- flows -------------------------------------------------------------------------------------

    def flows(self) -> list[dict[str, Any]]:
        return self.read("list authentication flows", self.admin.get_authentication_flows)

    def flow(self, alias: str) -> dict[str, Any] | None:
        return next((f for f in self.flows() if f.get("alias") == alias), None)

    def copy_flow(self, source: str, target: str) -> None:
        """Copy ``source`` to ``target`` unless ``target`` exists (then it is reused)."""
        if self.flow(target) is not None:
            return
        self.write(
            f"copy flow {source!r} to {target!r}",
            self.admin.copy_authentication_flow,
            {"newName": target},
            _in_path(source),
        )

    def create_flow(self, alias: str, description: str) -> None:
        """An empty top-level basic flow, unless one of that alias exists."""
        if self.flow(alias) is not None:
            return
        self.write(
            f"create flow {alias!r}",
            self.admin.create_authentication_flow,
            {
                "alias": alias,
                "description": description,
                "providerId": "basic-flow",
                "topLevel": True,
                "builtIn": False,
            },
        )

    def delete_flow(self, alias: str) -> None:
        flow = self.flow(alias)
        if flow is None:
            return
        if flow.get("builtIn"):
            raise ProvisioningError(f"flow {alias!r} is built in; not deleting it")
        self.write(f"delete flow {alias!r}", self.admin.delete_authentication_flow, flow["id"])

    def steps(self, flow: str) -> list[Step]:
        """The flow's executions as :class:`Step` records, fresh from Keycloak."""
        listing = self.read(
            f"list the executions of flow {flow!r}",
            self.admin.get_authentication_flow_executions,
            _in_path(flow),
        )
        return read_steps(flow, listing)

    def child(self, flow: str, parent: str, match: Callable[[Step], bool]) -> Step | None:
        """The first step directly inside ``parent`` (``flow`` or a sub-flow) that matches."""
        return next((s for s in self.steps(flow) if s.parent == parent and match(s)), None)

    # -- executions ------------------------------------------------------------------------------

    def add_execution(self, parent: str, provider: str) -> None:
        self.write(
            f"add {provider!r} to flow {parent!r}",
            self.admin.create_authentication_flow_execution,
            {"provider": provider},
            _in_path(parent),
        )

    def add_subflow(self, parent: str, alias: str, description: str) -> None:
        self.write(
            f"add sub-flow {alias!r} to flow {parent!r}",
            self.admin.create_authentication_flow_subflow,
            {"alias": alias, "type": "basic-flow", "description": description},
            _in_path(parent),
        )

    def delete_execution(self, step: Step) -> None:
        what = f"sub-flow {step.alias!r}" if step.is_subflow else repr(step.provider)
        self.write(
            f"delete {what} from flow {step.parent!r}",
            self.admin.delete_authentication_flow_execution,
            step.id,
        )

    def ensure(
        self,
        flow: str,
        parent: str,
        match: Callable[[Step], bool],
        create: Callable[[], object],
        requirement: str,
        index: int,
    ) -> Step:
        """Make the matching step exist in ``parent`` with ``requirement`` at ``index``."""
        step = self.child(flow, parent, match)
        if step is None:
            create()
            step = self._must(self.child(flow, parent, match), parent)
        label = step.alias or step.provider
        if step.requirement != requirement:
            self.write(
                f"set {label!r} to {requirement}",
                self.admin.update_authentication_flow_executions,
                {**step.info, "requirement": requirement},
                _in_path(flow),
            )
        if step.position != index:
            self.write(
                f"move {label!r} in flow {parent!r}",
                self.admin.change_execution_priority,
                step.id,
                step.position - index,
            )
        step = self._must(self.child(flow, parent, match), parent)
        if step.position != index or step.requirement != requirement:
            raise ProvisioningError(
                f"Keycloak did not keep {label!r} {requirement} at position {index} "
                f"of flow {parent!r}; check the flow in the admin console"
            )
        return step

    def _must(self, step: Step | None, parent: str) -> Step:
        if step is None:
            raise ProvisioningError(f"Keycloak did not list the new step in flow {parent!r}")
        return step

    # -- authenticator configs ---------------------------------------------------------------------

    def read_config(self, step: Step) -> dict[str, Any] | None:
        if not step.config_id:
            return None
        return self.read(
            f"read authenticator config {step.config_id!r}",
            self.admin.get_authenticator_config,
            step.config_id,
        )

    def loa_level(self, condition: Step) -> int | None:
        """The level a "Condition - Level of Authentication" asks for; None if not set."""
        return _level(((self.read_config(condition) or {}).get("config") or {}).get(LOA_LEVEL_KEY))

    def save_config(self, flow: str, step: Step, alias: str, values: dict[str, str | None]) -> str:
        """Create or update the step's config; keys set to None are removed, others kept."""
        existing = self.read_config(step)
        old = dict((existing or {}).get("config") or {})
        new = {**old, **{k: v for k, v in values.items() if v is not None}}
        for key in [k for k, v in values.items() if v is None]:
            new.pop(key, None)
        if any(v == MASKED_SECRET and old.get(k) != MASKED_SECRET for k, v in new.items()):
            # Only where Keycloak shows the mask does sending it back keep a value.
            raise SecretUnknown(alias)
        if existing is None:
            self.write(
                f"create authenticator config {alias!r}",
                self.admin.create_execution_config,
                step.id,
                {"alias": alias, "config": new},
            )
            fresh = self.child(flow, step.parent, lambda s: s.id == step.id)
            return str(self._must(fresh, step.parent).config_id)
        if new != old or existing.get("alias") != alias:
            self.write(
                f"update authenticator config {alias!r}",
                self.admin.update_authenticator_config,
                {"id": existing["id"], "alias": alias, "config": new},
                existing["id"],
            )
        return str(existing["id"])


def _in_path(alias: str) -> str:
    """A flow alias as python-keycloak puts it in a URL path: it does not escape it, and the
    admin console takes aliases with "/", "?" or "#" in them."""
    return quote(alias, safe="")


def _level(value: Any) -> int | None:
    """A level of authentication as a config holds it (a string, or a number in a client
    policy's); None if not set or not a whole number."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
