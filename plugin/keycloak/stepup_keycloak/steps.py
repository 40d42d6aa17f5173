"""The idempotent steps behind install and uninstall, one admin-API concern each.

Each step reads first and writes only what differs; every write sets :attr:`Steps.changed`.
Facts about Keycloak 26's admin API these steps rely on:

- a new execution or sub-flow is appended DISABLED at the end of its parent flow; it is moved
  with ``raise-priority``/``lower-priority`` (one swap with its neighbour per call);
- ``PUT …/flows/{alias}/executions`` also writes the ``priority`` it is sent, so a requirement
  change sends back the whole representation just read, never a partial one;
- ``PUT /admin/realms/{realm}`` replaces the realm's ``attributes`` wholesale (attributes missing
  from the request are removed), so the full map just read goes back with our key changed;
- deleting a flow deletes its sub-flows and their authenticator configs.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from keycloak import KeycloakAdmin

from .errors import ProvisioningError, refused
from .flows import Step, by_provider, by_subflow, read_steps
from .options import (
    AUTHENTICATOR_ID,
    CONFIG_ACR_VALUES,
    CONFIG_ALLOW_ENROLLMENT,
    CONFIG_CLIENT_ID,
    CONFIG_CLIENT_SECRET,
    CONFIG_ISSUER,
    CONFIG_ON_UNAVAILABLE,
    DEFAULT_BROWSER_FLOW,
    LOA_CONDITION_ID,
    LOA_LEVEL_KEY,
    LOA_MAX_AGE_KEY,
    PASSWORD_FORMS,
    PREVIOUS_FLOW_ATTRIBUTE,
    InstallOptions,
)


class Steps:
    """Install/uninstall steps for one realm, sharing the admin client and a ``changed`` flag."""

    def __init__(self, admin: KeycloakAdmin, opts: InstallOptions) -> None:
        self.admin = admin
        self.opts = opts
        self.changed = False
        self._secrets = list(opts.secrets())

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
        return result

    # -- 1. the flow -------------------------------------------------------------------------

    def copy_flow(self) -> None:
        """Copy the source browser flow unless the target flow exists (then it is reused)."""
        flows = self.read("list authentication flows", self.admin.get_authentication_flows)
        if any(flow.get("alias") == self.opts.flow for flow in flows):
            return
        source = self.opts.source_flow or self.realm().get("browserFlow") or DEFAULT_BROWSER_FLOW
        self.write(
            f"copy flow {source!r}",
            self.admin.copy_authentication_flow,
            {"newName": self.opts.flow},
            source,
        )

    def steps(self) -> list[Step]:
        """The flow's executions as :class:`Step` records, fresh from Keycloak."""
        flow = self.opts.flow
        listing = self.read(
            f"list the executions of flow {flow!r}",
            self.admin.get_authentication_flow_executions,
            flow,
        )
        return read_steps(flow, listing)

    def child(self, parent: str, match: Callable[[Step], bool]) -> Step | None:
        """The first step directly inside ``parent`` that matches."""
        return next((s for s in self.steps() if s.parent == parent and match(s)), None)

    # -- 2. the step-up execution ----------------------------------------------------------

    def place_stepup(self) -> Step:
        """Put the stepup-bridge execution in place, REQUIRED; return it."""
        all_steps = self.steps()
        anchor = next((s for s in all_steps if s.provider in PASSWORD_FORMS), None)
        if anchor is None:
            raise ProvisioningError(
                f"flow {self.opts.flow!r} has no password form ({', '.join(PASSWORD_FORMS)}) "
                "to put the step-up after"
            )
        conditional = self.opts.conditional_loa is not None
        parent = self.opts.loa_subflow if conditional else anchor.parent
        self._refuse_other_layout(all_steps, parent)
        index = anchor.position + 1
        if conditional:
            self._place_loa_subflow(anchor)
            index = 1
        return self.ensure(
            parent,
            by_provider(AUTHENTICATOR_ID),
            lambda: self._add_execution(parent, AUTHENTICATOR_ID),
            "REQUIRED",
            index,
        )

    def _refuse_other_layout(self, all_steps: list[Step], parent: str) -> None:
        """Never duplicate the step, nor silently move it between layouts."""
        found = [s for s in all_steps if by_provider(AUTHENTICATOR_ID)(s)]
        if len(found) > 1 or (found and found[0].parent != parent):
            where = ", ".join(repr(s.parent) for s in found)
            raise ProvisioningError(
                f"flow {self.opts.flow!r} already has the {AUTHENTICATOR_ID} step in {where}, "
                f"not once in {parent!r}; run uninstall first or choose another flow alias"
            )

    def _place_loa_subflow(self, anchor: Step) -> None:
        """CONDITIONAL sub-flow after the password form: LoA condition, then the step-up."""
        alias = self.opts.loa_subflow
        self.ensure(
            anchor.parent,
            by_subflow(alias),
            lambda: self.write(
                f"add sub-flow {alias!r}",
                self.admin.create_authentication_flow_subflow,
                {"alias": alias, "type": "basic-flow", "description": "Stepup Bridge step-up"},
                anchor.parent,
            ),
            "CONDITIONAL",
            anchor.position + 1,
        )
        condition = self.ensure(
            alias,
            by_provider(LOA_CONDITION_ID),
            lambda: self._add_execution(alias, LOA_CONDITION_ID),
            "REQUIRED",
            0,
        )
        level = {
            LOA_LEVEL_KEY: str(self.opts.conditional_loa),
            LOA_MAX_AGE_KEY: str(self.opts.loa_max_age),
        }
        self.save_config(condition, self.opts.loa_config_alias, self.read_config(condition), level)

    def _add_execution(self, parent: str, provider: str) -> None:
        self.write(
            f"add {provider!r} to flow {parent!r}",
            self.admin.create_authentication_flow_execution,
            {"provider": provider},
            parent,
        )

    def ensure(
        self,
        parent: str,
        match: Callable[[Step], bool],
        create: Callable[[], object],
        requirement: str,
        index: int,
    ) -> Step:
        """Make the matching step exist in ``parent`` with ``requirement`` at ``index``."""
        step = self.child(parent, match)
        if step is None:
            create()
            step = self._must(self.child(parent, match), parent)
        label = step.alias or step.provider
        if step.requirement != requirement:
            self.write(
                f"set {label!r} to {requirement}",
                self.admin.update_authentication_flow_executions,
                {**step.info, "requirement": requirement},
                self.opts.flow,
            )
        if step.position != index:
            self.write(
                f"move {label!r} in flow {parent!r}",
                self.admin.change_execution_priority,
                step.id,
                step.position - index,
            )
        step = self._must(self.child(parent, match), parent)
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

    # -- 3. the authenticator config ---------------------------------------------------------

    def write_stepup_config(self, step: Step) -> tuple[str, str]:
        """Write the step-up's config; return its id and the bridge client secret in force."""
        existing = self.read_config(step)
        old = (existing or {}).get("config") or {}
        secret = (
            self.opts.bridge_client_secret
            or old.get(CONFIG_CLIENT_SECRET)
            or secrets.token_urlsafe(32)
        )
        self._secrets.append(secret)
        values = {
            CONFIG_ISSUER: self.opts.bridge_issuer,
            CONFIG_CLIENT_ID: self.opts.bridge_client_id,
            CONFIG_CLIENT_SECRET: secret,
            CONFIG_ACR_VALUES: self.opts.acr_values,
            CONFIG_ALLOW_ENROLLMENT: "true" if self.opts.allow_enrollment else "false",
            CONFIG_ON_UNAVAILABLE: "fail",
        }
        return self.save_config(step, self.opts.config_alias, existing, values), secret

    def read_config(self, step: Step) -> dict[str, Any] | None:
        if not step.config_id:
            return None
        return self.read(
            f"read authenticator config {step.config_id!r}",
            self.admin.get_authenticator_config,
            step.config_id,
        )

    def save_config(
        self,
        step: Step,
        alias: str,
        existing: dict[str, Any] | None,
        values: dict[str, str | None],
    ) -> str:
        """Create or update the step's config; keys set to None are removed, others kept."""
        old = dict((existing or {}).get("config") or {})
        new = {**old, **{k: v for k, v in values.items() if v is not None}}
        for key in [k for k, v in values.items() if v is None]:
            new.pop(key, None)
        if existing is None:
            self.write(
                f"create authenticator config {alias!r}",
                self.admin.create_execution_config,
                step.id,
                {"alias": alias, "config": new},
            )
            fresh = self.child(step.parent, lambda s: s.id == step.id)
            return str(self._must(fresh, step.parent).config_id)
        if new != old or existing.get("alias") != alias:
            self.write(
                f"update authenticator config {alias!r}",
                self.admin.update_authenticator_config,
                {"id": existing["id"], "alias": alias, "config": new},
                existing["id"],
            )
        return str(existing["id"])

    # -- 4. the realm's browser-flow binding ---------------------------------------------------

    def realm(self) -> dict[str, Any]:
        return self.read(f"read realm {self.opts.realm!r}", self.admin.get_realm, self.opts.realm)

    def bind_flow(self) -> None:
        """Bind the flow as browser flow; remember the one it replaces (once)."""
        realm = self.realm()
        current = realm.get("browserFlow")
        if current == self.opts.flow:
            return
        attributes = dict(realm.get("attributes") or {})
        attributes[PREVIOUS_FLOW_ATTRIBUTE] = current or DEFAULT_BROWSER_FLOW
        self.write(
            f"bind flow {self.opts.flow!r} as browser flow of realm {self.opts.realm!r}",
            self.admin.update_realm,
            self.opts.realm,
            {"browserFlow": self.opts.flow, "attributes": attributes},
        )

    def restore_binding(self) -> None:
        """Bind the remembered flow again if ours is bound; forget the remembered one."""
        realm = self.realm()
        attributes = dict(realm.get("attributes") or {})
        remembered = attributes.pop(PREVIOUS_FLOW_ATTRIBUTE, None)
        payload: dict[str, Any] = {}
        if realm.get("browserFlow") == self.opts.flow:
            flows = self.read("list authentication flows", self.admin.get_authentication_flows)
            aliases = {flow.get("alias") for flow in flows} - {self.opts.flow}
            previous = remembered if remembered in aliases else DEFAULT_BROWSER_FLOW
            payload["browserFlow"] = previous
        if payload or remembered is not None:
            payload["attributes"] = attributes
            self.write(
                f"restore the browser flow of realm {self.opts.realm!r}",
                self.admin.update_realm,
                self.opts.realm,
                payload,
            )

    def delete_flow(self) -> None:
        flows = self.read("list authentication flows", self.admin.get_authentication_flows)
        flow = next((f for f in flows if f.get("alias") == self.opts.flow), None)
        if flow is None:
            return
        if flow.get("builtIn"):
            raise ProvisioningError(f"flow {self.opts.flow!r} is built in; not deleting it")
        self.write(
            f"delete flow {self.opts.flow!r}", self.admin.delete_authentication_flow, flow["id"]
        )
