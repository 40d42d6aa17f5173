"""The ``/authentication`` part of the fake Keycloak 26 admin API: flows, executions, configs.

Keycloak 26 behaviour kept here (``AuthenticationManagementResource``): new executions and
sub-flows are appended DISABLED with priority last+1; raise/lower-priority swap with the
neighbour; ``PUT …/executions`` also writes the ``priority`` it is sent (0 when missing); the
executions listing is depth first with ``level``/``index`` and throws 404 when an execution's
provider is not deployed; a copy names sub-flows ``"<new> <old sub-flow alias>"``; config
aliases are unique per realm and empty config values are dropped on update; deleting a flow
deletes its sub-flows and configs. Errors carry Keycloak's bodies: ``{"error": …}`` for JAX-RS
exceptions, ``{"errorMessage": …}`` for ``ErrorResponse``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

BASE = "https://kc.test"
DISPLAY = {
    "auth-cookie": "Cookie",
    "auth-spnego": "Kerberos",
    "identity-provider-redirector": "Identity Provider Redirector",
    "conditional-user-configured": "Condition - user configured",
    "organization": "Organization Identity-First Login",
    "auth-username-password-form": "Username Password Form",
    "auth-password-form": "Password Form",
    "auth-username-form": "Username Form",
    "deny-access-authenticator": "Deny access",
    "auth-otp-form": "OTP Form",
    "webauthn-authenticator": "WebAuthn Authenticator",
    "webauthn-authenticator-passwordless": "WebAuthn Passwordless Authenticator",
    "auth-recovery-authn-code-form": "Recovery Authentication Code Form",
    "conditional-level-of-authentication": "Condition - Level of Authentication",
    "stepup-bridge": "Stepup Bridge",
    "reset-credentials-choose-user": "Choose User",
    "reset-credential-email": "Send Reset Email",
    "reset-password": "Reset Password",
    "reset-otp": "Reset OTP",
    "direct-grant-validate-username": "Username Validation",
    "direct-grant-validate-password": "Password",
    "direct-grant-validate-otp": "OTP",
    "registration-page-form": "Registration Page",
    "registration-user-creation": "Registration User Profile Creation",
    "registration-password-action": "Password Validation",
    "registration-recaptcha-action": "Recaptcha",
    "registration-terms-and-conditions": "Terms and conditions",
}
#: Sub-flows that are forms (``form-flow``): their execution names the form's authenticator,
#: which the executions listing reports as the sub-flow's ``providerId``.
FORM_FLOWS = {"registration form": "registration-page-form"}
# Keycloak 26's built-in browser flow: (provider or sub-flow alias, requirement, children).
BROWSER = [
    ("auth-cookie", "ALTERNATIVE", None),
    ("auth-spnego", "DISABLED", None),
    ("identity-provider-redirector", "ALTERNATIVE", None),
    ("Organization", "ALTERNATIVE", [
        ("Browser - Conditional Organization", "CONDITIONAL", [
            ("conditional-user-configured", "REQUIRED", None),
            ("organization", "ALTERNATIVE", None),
        ]),
    ]),
    ("forms", "ALTERNATIVE", [
        ("auth-username-password-form", "REQUIRED", None),
        ("Browser - Conditional 2FA", "CONDITIONAL", [
            ("conditional-user-configured", "REQUIRED", None),
            ("auth-otp-form", "ALTERNATIVE", None),
            ("webauthn-authenticator", "DISABLED", None),
            ("auth-recovery-authn-code-form", "DISABLED", None),
        ]),
    ]),
]  # fmt: skip
# Keycloak 26's built-in reset-credentials and direct grant flows.
RESET = [
    ("reset-credentials-choose-user", "REQUIRED", None),
    ("reset-credential-email", "REQUIRED", None),
    ("reset-password", "REQUIRED", None),
    ("Reset - Conditional OTP", "CONDITIONAL", [
        ("conditional-user-configured", "REQUIRED", None),
        ("reset-otp", "REQUIRED", None),
    ]),
]
DIRECT_GRANT = [
    ("direct-grant-validate-username", "REQUIRED", None),
    ("direct-grant-validate-password", "REQUIRED", None),
    ("Direct Grant - Conditional OTP", "CONDITIONAL", [
        ("conditional-user-configured", "REQUIRED", None),
        ("direct-grant-validate-otp", "REQUIRED", None),
    ]),
]  # fmt: skip
# Keycloak 26's built-in registration flow: one form, whose actions create the account.
REGISTRATION = [
    ("registration form", "REQUIRED", [
        ("registration-user-creation", "REQUIRED", None),
        ("registration-password-action", "REQUIRED", None),
        ("registration-recaptcha-action", "DISABLED", None),
        ("registration-terms-and-conditions", "DISABLED", None),
    ]),
]  # fmt: skip
Reply = tuple[int, dict[str, str], str]
#: The authenticator's config property marked secret, and Keycloak's mask for it.
SECRET_KEY, MASK = "stepup.clientSecret", "**********"


class FakeAuthentication:
    """Flows (seeded with Keycloak 26's built-in ``browser``), executions and configs."""

    def __init__(self) -> None:
        self.providers = set(DISPLAY)
        self.ids = (f"id-{n}" for n in itertools.count(1))
        self.flows: dict[str, dict[str, Any]] = {}
        self.executions: dict[str, dict[str, Any]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        #: As Keycloak 26.7 does (26.5 does not): the secret of an authenticator's config is read
        #: masked, and a PUT that sends the mask keeps the stored value.
        self.mask_secrets = False
        top = self._add_flow("browser", top_level=True, built_in=True)
        self._seed(top, BROWSER)
        self._seed(self._add_flow("reset credentials", top_level=True, built_in=True), RESET)
        self._seed(self._add_flow("direct grant", top_level=True, built_in=True), DIRECT_GRANT)
        self._seed(self._add_flow("registration", top_level=True, built_in=True), REGISTRATION)

    def authentication_routes(self, auth: str) -> list[tuple[str, str, Any]]:
        return [
            ("GET", auth + r"/flows", self.list_flows),
            ("POST", auth + r"/flows", self.create_flow),
            ("GET", auth + r"/authenticator-providers", self.list_providers),
            ("DELETE", auth + r"/executions/([^/]+)", self.delete_execution),
            ("POST", auth + r"/flows/([^/]+)/copy", self.copy_flow),
            ("DELETE", auth + r"/flows/([^/]+)", self.delete_flow),
            ("GET", auth + r"/flows/([^/]+)/executions", self.list_executions),
            ("PUT", auth + r"/flows/([^/]+)/executions", self.update_execution),
            ("POST", auth + r"/flows/([^/]+)/executions/execution", self.add_execution),
            ("POST", auth + r"/flows/([^/]+)/executions/flow", self.add_subflow),
            ("POST", auth + r"/executions/([^/]+)/raise-priority", self.raise_priority),
            ("POST", auth + r"/executions/([^/]+)/lower-priority", self.lower_priority),
            ("POST", auth + r"/executions/([^/]+)/config", self.new_config),
            ("GET", auth + r"/config/([^/]+)", self.get_config),
            ("PUT", auth + r"/config/([^/]+)", self.put_config),
        ]

    def bound_flows(self) -> set[str]:
        """Aliases of flows the realm uses (they cannot be deleted)."""
        return set()

    # -- looking inside, for tests -------------------------------------------------------------

    def flow_by_alias(self, alias: str) -> dict[str, Any] | None:
        return next((f for f in self.flows.values() if f["alias"] == alias), None)

    def children(self, flow_id: str) -> list[dict[str, Any]]:
        kids = [e for e in self.executions.values() if e["parent"] == flow_id]
        return sorted(kids, key=lambda e: (e["priority"], e["seq"]))

    def layout(self, alias: str) -> list[tuple[str, str]]:
        """(provider or sub-flow alias, requirement) of a flow's direct children, in order."""
        flow = self.flow_by_alias(alias)
        assert flow, alias
        return [(self._name(e), e["requirement"]) for e in self.children(flow["id"])]

    def execution_of(self, provider: str) -> list[dict[str, Any]]:
        return [e for e in self.executions.values() if e.get("authenticator") == provider]

    # -- flows and executions ------------------------------------------------------------------

    def list_flows(self, _: Any) -> Reply:
        top = [f for f in self.flows.values() if f["topLevel"]]
        return reply(200, top)

    def list_providers(self, _: Any) -> Reply:
        return reply(200, [{"id": p, "displayName": DISPLAY[p]} for p in sorted(self.providers)])

    def create_flow(self, data: dict[str, Any]) -> Reply:
        if self.flow_by_alias(data["alias"]):
            return reply(409, {"errorMessage": "Flow " + data["alias"] + " already exists"})
        flow = self._add_flow(data["alias"], top_level=True, built_in=False)
        return reply(201, headers={"Location": f"{BASE}/flows/{flow['id']}"})

    def delete_execution(self, _: Any, execution_id: str) -> Reply:
        execution = self.executions.get(execution_id)
        if execution is None:
            return reply(404, {"error": "Illegal execution"})
        if self.flows[execution["parent"]]["builtIn"]:
            return reply(400, {"error": "It is illegal to remove execution from a built in flow"})
        if execution["flow_id"]:
            self._deep_delete(self.flows[execution["flow_id"]])
        self.configs.pop(execution["config"] or "", None)
        del self.executions[execution_id]
        return reply(204)

    def copy_flow(self, data: dict[str, str], alias: str) -> Reply:
        if self.flow_by_alias(data["newName"]):
            return reply(409, {"errorMessage": "New flow alias name already exists"})
        source = self.flow_by_alias(alias)
        if source is None:
            return reply(404, {"error": "Flow not found"})
        copy = self._add_flow(data["newName"], top_level=True, built_in=False)
        self._copy_children(source, copy, data["newName"])
        return reply(201)

    def delete_flow(self, _: Any, flow_id: str) -> Reply:
        flow = self.flows.get(flow_id)
        if flow is None:
            return reply(404, {"error": "Flow not found"})
        if flow["builtIn"]:
            return reply(400, {"error": "Can't delete built in flow"})
        if flow["alias"] in self.bound_flows():
            return reply(400, {"error": "Cannot remove authentication flow, it is in use"})
        self._deep_delete(flow)
        return reply(204)

    def list_executions(self, _: Any, alias: str) -> Reply:
        flow = self.flow_by_alias(alias)
        if flow is None:
            return reply(404, {"error": "Flow not found"})
        if any(e.get("authenticator") not in self.providers | {None} for e in self._tree(flow)):
            return reply(404, {"error": "Could not find authenticator provider"})
        result: list[dict[str, Any]] = []
        self._recurse(flow, 0, result)
        return reply(200, result)

    def update_execution(self, rep: dict[str, Any], alias: str) -> Reply:
        if self.flow_by_alias(alias) is None:
            return reply(404, {"error": "flow not found"})
        model = self.executions.get(rep.get("id", ""))
        if model is None:
            return reply(404, {"error": "Illegal execution"})
        model["priority"] = rep.get("priority", 0)
        model["requirement"] = rep["requirement"]
        return reply(204)

    def add_execution(self, data: dict[str, Any], alias: str) -> Reply:
        parent = self.flow_by_alias(alias)
        if parent is None or parent["builtIn"]:
            return reply(400, {"error": "Parent flow doesn't exist or is built in"})
        if data.get("provider") not in self.providers:
            return reply(
                400, {"error": f"No authentication provider found for id: {data.get('provider')}"}
            )
        execution = self._add_execution(parent["id"], "DISABLED", authenticator=data["provider"])
        return reply(201, headers={"Location": f"{BASE}/executions/{execution['id']}"})

    def add_subflow(self, data: dict[str, Any], alias: str) -> Reply:
        parent = self.flow_by_alias(alias)
        if parent is None or parent["builtIn"]:
            return reply(400, {"error": "Parent flow doesn't exist or is built in"})
        if self.flow_by_alias(data["alias"]):
            return reply(409, {"errorMessage": "New flow alias name already exists"})
        flow = self._add_flow(data["alias"], top_level=False, built_in=False, kind=data["type"])
        self._add_execution(parent["id"], "DISABLED", flow_id=flow["id"])
        return reply(201, headers={"Location": f"{BASE}/flows/{flow['id']}"})

    def raise_priority(self, _: Any, execution_id: str) -> Reply:
        return self._swap(execution_id, -1)

    def lower_priority(self, _: Any, execution_id: str) -> Reply:
        return self._swap(execution_id, +1)

    # -- authenticator configs -----------------------------------------------------------------

    def new_config(self, rep: dict[str, Any], execution_id: str) -> Reply:
        execution = self.executions.get(execution_id)
        if execution is None:
            return reply(404, {"error": "Illegal execution"})
        other = next((c for c in self.configs.values() if c["alias"] == rep.get("alias")), None)
        if not rep.get("alias") or (other and other["id"] != execution.get("config")):
            return reply(
                409,
                {
                    "errorMessage": f"Authentication execution configuration "
                    f"{rep.get('alias')} already exists"
                },
            )
        self.configs.pop(execution.get("config") or "", None)
        config_id = next(self.ids)
        self.configs[config_id] = {
            "id": config_id,
            "alias": rep["alias"],
            "config": dict(rep.get("config") or {}),
        }
        execution["config"] = config_id
        return reply(201, headers={"Location": f"{BASE}/config/{config_id}"})

    def get_config(self, _: Any, config_id: str) -> Reply:
        if config_id not in self.configs:
            return reply(404, {"error": "Could not find authenticator config"})
        config = self.configs[config_id]
        if self.mask_secrets and SECRET_KEY in config["config"]:
            config = {**config, "config": {**config["config"], SECRET_KEY: MASK}}
        return reply(200, config)

    def put_config(self, rep: dict[str, Any], config_id: str) -> Reply:
        if config_id not in self.configs:
            return reply(404, {"error": "Could not find authenticator config"})
        config = {k: v for k, v in (rep.get("config") or {}).items() if v != ""}
        if self.mask_secrets and config.get(SECRET_KEY) == MASK:
            config[SECRET_KEY] = self.configs[config_id]["config"][SECRET_KEY]
        self.configs[config_id].update(alias=rep["alias"], config=config)
        return reply(204)

    # -- internals -----------------------------------------------------------------------------

    def _add_flow(self, alias: str, *, top_level: bool, built_in: bool, kind: str = "basic-flow"):
        flow_id = next(self.ids)
        self.flows[flow_id] = {
            "id": flow_id,
            "alias": alias,
            "description": "",
            "providerId": kind,
            "topLevel": top_level,
            "builtIn": built_in,
        }
        return self.flows[flow_id]

    def _add_execution(self, parent_id: str, requirement: str, **what: Any) -> dict[str, Any]:
        kids = self.children(parent_id)
        execution_id = next(self.ids)
        self.executions[execution_id] = {
            "id": execution_id,
            "parent": parent_id,
            "requirement": requirement,
            "priority": kids[-1]["priority"] + 1 if kids else 0,
            "seq": len(self.executions),
            "authenticator": None,
            "flow_id": None,
            "config": None,
            **what,
        }
        return self.executions[execution_id]

    def _seed(self, flow: dict[str, Any], spec: list[Any]) -> None:
        for priority, (name, requirement, kids) in enumerate(spec, start=1):
            if kids is None:
                execution = self._add_execution(flow["id"], requirement, authenticator=name)
            else:
                form = FORM_FLOWS.get(name)
                sub = self._add_flow(name, top_level=False, built_in=True,
                                     kind="form-flow" if form else "basic-flow")
                execution = self._add_execution(flow["id"], requirement, flow_id=sub["id"],
                                                authenticator=form)
                self._seed(sub, kids)
            execution["priority"] = priority * 10

    def _copy_children(self, source: dict[str, Any], target: dict[str, Any], name: str) -> None:
        for kid in self.children(source["id"]):
            copy = {k: v for k, v in kid.items() if k not in ("id", "parent", "seq")}
            if kid["flow_id"]:
                sub = self.flows[kid["flow_id"]]
                new_sub = self._add_flow(f"{name} {sub['alias']}", top_level=False, built_in=False,
                                         kind=sub["providerId"])
                copy["flow_id"] = new_sub["id"]
                self._copy_children(sub, new_sub, name)
            if kid["config"]:
                old = self.configs[kid["config"]]
                config_id = next(self.ids)
                self.configs[config_id] = {
                    **old,
                    "id": config_id,
                    "alias": f"{name} {old['alias']}",
                }
                copy["config"] = config_id
            execution = self._add_execution(target["id"], kid["requirement"])
            execution.update(copy)

    def _tree(self, flow: dict[str, Any]) -> list[dict[str, Any]]:
        result = []
        for kid in self.children(flow["id"]):
            result.append(kid)
            if kid["flow_id"]:
                result.extend(self._tree(self.flows[kid["flow_id"]]))
        return result

    def _recurse(self, flow: dict[str, Any], level: int, result: list[dict[str, Any]]) -> None:
        for index, kid in enumerate(self.children(flow["id"])):
            rep: dict[str, Any] = {
                "id": kid["id"],
                "requirement": kid["requirement"],
                "level": level,
                "index": index,
                "priority": kid["priority"],
                "requirementChoices": ["REQUIRED", "ALTERNATIVE", "DISABLED"],
            }
            if kid["flow_id"]:
                sub = self.flows[kid["flow_id"]]
                rep.update(
                    displayName=sub["alias"],
                    description=sub["description"],
                    configurable=False,
                    authenticationFlow=True,
                    flowId=sub["id"],
                )
                if kid["authenticator"]:  # a form: its authenticator, as Keycloak lists it
                    rep["providerId"] = kid["authenticator"]
                result.append(rep)
                self._recurse(sub, level + 1, result)
                continue
            rep.update(
                displayName=DISPLAY[kid["authenticator"]],
                configurable=True,
                providerId=kid["authenticator"],
            )
            if kid["config"]:
                rep.update(
                    authenticationConfig=kid["config"], alias=self.configs[kid["config"]]["alias"]
                )
            result.append(rep)

    def _swap(self, execution_id: str, step: int) -> Reply:
        model = self.executions.get(execution_id)
        if model is None:
            return reply(404, {"error": "Illegal execution"})
        if self.flows[model["parent"]]["builtIn"]:
            return reply(400, {"error": "It is illegal to modify execution in a built in flow"})
        kids = self.children(model["parent"])
        at = kids.index(model) + step
        if 0 <= at < len(kids):
            other = kids[at]
            model["priority"], other["priority"] = other["priority"], model["priority"]
        return reply(204)

    def _deep_delete(self, flow: dict[str, Any]) -> None:
        for kid in self.children(flow["id"]):
            if kid["flow_id"]:
                self._deep_delete(self.flows[kid["flow_id"]])
            self.configs.pop(kid["config"] or "", None)
            del self.executions[kid["id"]]
        del self.flows[flow["id"]]

    def _name(self, execution: dict[str, Any]) -> str:
        if execution["flow_id"]:
            return self.flows[execution["flow_id"]]["alias"]
        return execution["authenticator"]


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    text = "" if body is None else json.dumps(body)
    return status, {"Content-Type": "application/json", **(headers or {})}, text
