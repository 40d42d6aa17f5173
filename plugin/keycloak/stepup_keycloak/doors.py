"""The doors into a realm, and how install puts the step-up on each one (uninstall takes it off).

- ``browser``: a copy of the bound browser flow, the step right after the password form (or, with
  a level of authentication, the documented step-up layout: the password form inside a level-1
  condition sub-flow, the step inside a level-N one), bound as the browser flow.
- ``reset-credentials``: a copy of the bound reset-credentials flow, the step right after "Send
  Reset Email", so the user passes the bridge after following the link and before choosing a new
  password; bound as the reset-credentials flow.
- ``registration``: a copy of the bound registration flow, the step right after the registration
  form (the account exists then), so a self-registered user enrolls at the bridge before the
  first session; bound as the registration flow.
- ``brokers``: a flow holding only the step, set as *post login flow* of every identity provider
  (Keycloak runs it after first-broker-login too), remembering any flow it replaces.
- ``direct-grant``: a copy of the bound direct grant flow with the step after the password; the
  step has no browser there and refuses, which closes the password grant for the whole realm.

A client's browser or direct grant *override* naming a flow without the step is pointed at our
flow of that door (and pointed back by uninstall).

Every door is reconciled to the requested state, from whatever layout an earlier run left.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .audit import early_steps, passes
from .errors import ProvisioningError
from .flows import Step, by_provider, by_subflow, find
from .options import (
    ACR_LOA_MAP_ATTRIBUTE,
    AUTHENTICATOR_ID,
    CONFIG_ACR_VALUES,
    CONFIG_ALLOW_ENROLLMENT,
    CONFIG_CLIENT_ID,
    CONFIG_CLIENT_SECRET,
    CONFIG_ISSUER,
    CONFIG_ON_UNAVAILABLE,
    CONFIG_SECRET_CHECK,
    DEFAULT_BROWSER_FLOW,
    DEFAULT_DIRECT_GRANT_FLOW,
    DEFAULT_REGISTRATION_FLOW,
    DEFAULT_RESET_FLOW,
    DIRECT_GRANT_ANCHORS,
    LOA_CONDITION_ID,
    LOA_LEVEL_KEY,
    LOA_MAX_AGE_KEY,
    MAPPED_ACR_ATTRIBUTE,
    MASKED_SECRET,
    PASSWORD_FORMS,
    PREVIOUS_DIRECT_GRANT_ATTRIBUTE,
    PREVIOUS_FLOW_ATTRIBUTE,
    PREVIOUS_POST_BROKER_KEY,
    PREVIOUS_REGISTRATION_ATTRIBUTE,
    PREVIOUS_RESET_ATTRIBUTE,
    REGISTRATION_FORM,
    RESET_EMAIL_STEP,
)
from .steps import Steps

#: ``loa-max-age`` of the password level: Keycloak's documented step-up layout uses 10 hours.
PASSWORD_LOA_MAX_AGE = 36000
is_stepup = by_provider(AUTHENTICATOR_ID)


class Doors:
    """Install and uninstall the step-up on each door of one realm."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.opts = steps.opts

    # -- the step's config -------------------------------------------------------------------------

    def existing_secret(self) -> str | None:
        """The bridge client secret an earlier install wrote into our flows' steps; a secret
        Keycloak shows masked only when every step carries the check of the one the bridge
        holds (``registered_check``), else None: a new one is needed."""
        configs = self._step_configs()
        found = next((str(c[CONFIG_CLIENT_SECRET]) for c in configs
                      if c.get(CONFIG_CLIENT_SECRET)), None)
        kept = self.opts.registered_check is not None and all(
            c.get(CONFIG_CLIENT_SECRET) == MASKED_SECRET
            and c.get(CONFIG_SECRET_CHECK) == self.opts.registered_check for c in configs)
        return None if found == MASKED_SECRET and not kept else found

    def _step_configs(self) -> list[dict[str, Any]]:
        aliases = {f.get("alias") for f in self.steps.flows()}
        return [(self.steps.read_config(step) or {}).get("config") or {}
                for flow in self.opts.our_flows if flow in aliases
                for step in find(self.steps.steps(flow), is_stepup)]

    def _values(self, secret: str) -> dict[str, str | None]:
        values = {
            CONFIG_ISSUER: self.opts.bridge_issuer,
            CONFIG_CLIENT_ID: self.opts.bridge_client_id,
            CONFIG_CLIENT_SECRET: secret,
            CONFIG_ACR_VALUES: self.opts.acr_values,
            CONFIG_ALLOW_ENROLLMENT: "true" if self.opts.allow_enrollment else "false",
            CONFIG_ON_UNAVAILABLE: "fail",
        }
        if secret != MASKED_SECRET:  # a kept secret keeps its check
            check = self.opts.secret_check
            values[CONFIG_SECRET_CHECK] = check(secret) if check else None
        return values

    def _configure(self, flow: str, step: Step, secret: str) -> str:
        alias = self.opts.config_alias(flow)
        return self.steps.save_config(flow, step, alias, self._values(secret))

    # -- browser -----------------------------------------------------------------------------------

    def install_browser(self, secret: str) -> Step:
        self._not_rebound("browserFlow", self.opts.flow, PREVIOUS_FLOW_ATTRIBUTE, "browser")
        realm = self.steps.realm()
        source = self.opts.source_flow or realm.get("browserFlow") or DEFAULT_BROWSER_FLOW
        new = self.steps.flow(self.opts.flow) is None
        journal = len(self.steps.done)
        self.steps.copy_flow(source, self.opts.flow)
        try:
            step = self._place_browser_step(source if new else self.opts.flow)
            self._configure(self.opts.flow, step, secret)
            # Never bind a layout in which the step runs before anything proves who the user
            # is: its REQUIRED would make Keycloak skip the password form beside it.
            if early_steps(self.steps.steps(self.opts.flow)):
                raise ProvisioningError(
                    f"flow {self.opts.flow!r} would run the step-up before the password form"
                    + ("; it was not bound" if new else ", and it is bound already: move the "
                       "step after the password form, or run `stepup keycloak uninstall`")
                    + " (see docs/keycloak.md, 'Where the step sits')")
        except ProvisioningError:
            if new:  # a copy this run made and cannot use: gone again, nothing changed here
                self.steps.delete_flow(self.opts.flow)
                del self.steps.done[journal:]
            raise
        self.steps.bind("browserFlow", self.opts.flow, PREVIOUS_FLOW_ATTRIBUTE)
        self._map_acr()
        self._point_overrides("browser", self.opts.flow)
        return step

    def uninstall_browser(self) -> None:
        self._restore_overrides("browser", self.opts.flow)
        self.steps.unbind(
            "browserFlow", self.opts.flow, PREVIOUS_FLOW_ATTRIBUTE, DEFAULT_BROWSER_FLOW
        )
        self.steps.delete_flow(self.opts.flow)
        self._unmap_acr()

    def _place_browser_step(self, shape: str) -> Step:
        """Reconcile the browser copy to the requested layout; return the step-up execution.
        ``shape``: the flow an administrator would change when the layout is refused (the
        source of a new copy, or the copy itself)."""
        flow, o = self.opts.flow, self.opts
        listing = self.steps.steps(flow)
        holders = {str(s.alias): s for s in listing if s.is_subflow}

        def runs(step: Step | None) -> bool:  # neither it nor a sub-flow around it is off
            return step is None or (step.requirement != "DISABLED" and runs(
                holders.get(step.parent)))

        password = next((s for s in listing if s.provider in PASSWORD_FORMS and runs(s)), None)
        if password is None:
            raise ProvisioningError(
                f"flow {shape!r} has no password form ({', '.join(PASSWORD_FORMS)}) "
                "to put the step-up after"
            )
        provider = str(password.provider)
        wrapped = password.parent == o.password_subflow
        if wrapped:
            wrapper = self._must_child(flow, by_subflow(o.password_subflow))
            parent, slot = wrapper.parent, wrapper.position
        else:
            parent, slot = password.parent, password.position
        if o.conditional_loa is not None:
            if not wrapped and password.requirement != "REQUIRED":
                # The level-1 sub-flow would take the password form's place as CONDITIONAL,
                # and beside a CONDITIONAL step Keycloak skips the ALTERNATIVE ones: a passkey
                # or Kerberos would no longer sign anyone in.
                raise ProvisioningError(
                    f"flow {shape!r}: the password form is one of several ALTERNATIVE ways in; "
                    "with --conditional-loa its level sub-flow would turn the others off. "
                    "Install without --conditional-loa (the step then follows the sub-flow "
                    "that holds them all), or give the password form a sub-flow of its own")
            return self._loa_layout(flow, parent, slot, provider, wrapped)
        if wrapped:
            return self._plain_layout(flow, parent, slot, provider, wrapped)
        anchor = _anchor(password, holders, shape)
        after = by_provider(provider) if anchor is password else by_subflow(str(anchor.alias))
        return self._plain_layout(flow, anchor.parent, anchor.position, provider, False, after)

    def _plain_layout(
        self, flow: str, parent: str, slot: int, provider: str, wrapped: bool,
        after: Callable[[Step], bool] | None = None,
    ) -> Step:
        """The password form (or ``after``: the sub-flow holding it and its alternatives),
        then the step-up REQUIRED, both directly in ``parent``."""
        o, steps = self.opts, self.steps
        if wrapped:  # from the level layout: the password form back out of its sub-flow
            steps.ensure(flow, parent, by_provider(provider),
                         lambda: steps.add_execution(parent, provider), "REQUIRED", slot)
            steps.delete_execution(self._must_child(flow, by_subflow(o.password_subflow)))
        level = steps.child(flow, parent, by_subflow(o.loa_subflow))
        if level is not None:
            steps.delete_execution(level)
        self._drop_stray_steps(flow, parent)
        anchor = self._must_child(flow, after or by_provider(provider))
        return steps.ensure(flow, parent, is_stepup,
                            lambda: steps.add_execution(parent, AUTHENTICATOR_ID),
                            "REQUIRED", anchor.position + 1)

    def _loa_layout(
        self, flow: str, parent: str, slot: int, provider: str, wrapped: bool
    ) -> Step:
        """Keycloak's documented step-up layout: a level-1 sub-flow with the password form,
        then a level-N sub-flow with the step-up, both CONDITIONAL on the level."""
        o, steps = self.opts, self.steps
        pw_flow, up_flow = o.password_subflow, o.loa_subflow
        steps.ensure(flow, parent, by_subflow(pw_flow),
                     lambda: steps.add_subflow(parent, pw_flow, "Password (level 1)"),
                     "CONDITIONAL", slot)
        self._level_condition(flow, pw_flow, 1, o.password_loa_config_alias, PASSWORD_LOA_MAX_AGE)
        steps.ensure(flow, pw_flow, by_provider(provider),
                     lambda: steps.add_execution(pw_flow, provider), "REQUIRED", 1)
        if not wrapped:  # the bare password form is now inside the level-1 sub-flow
            bare = steps.child(flow, parent, by_provider(provider))
            if bare is not None:
                steps.delete_execution(bare)
        self._drop_stray_steps(flow, up_flow)
        steps.ensure(flow, parent, by_subflow(up_flow),
                     lambda: steps.add_subflow(parent, up_flow, "Stepup Bridge step-up"),
                     "CONDITIONAL", slot + 1)
        level = int(o.conditional_loa or 0)
        self._level_condition(flow, up_flow, level, o.loa_config_alias, o.loa_max_age)
        return steps.ensure(flow, up_flow, is_stepup,
                            lambda: steps.add_execution(up_flow, AUTHENTICATOR_ID), "REQUIRED", 1)

    def _level_condition(
        self, flow: str, parent: str, level: int, alias: str, max_age: int
    ) -> None:
        steps = self.steps
        condition = steps.ensure(flow, parent, by_provider(LOA_CONDITION_ID),
                                 lambda: steps.add_execution(parent, LOA_CONDITION_ID),
                                 "REQUIRED", 0)
        values: dict[str, str | None] = {LOA_LEVEL_KEY: str(level), LOA_MAX_AGE_KEY: str(max_age)}
        steps.save_config(flow, condition, alias, values)

    def _map_acr(self) -> None:
        """With a level: map the bridge's ``acr`` to it, remembering that we did (keys the
        administrator set stay as they are)."""
        acr, level = self.opts.bridge_acr, self.opts.conditional_loa
        if level is None:
            self._unmap_acr()
            return
        if not acr:
            return
        attributes = dict(self.steps.realm().get("attributes") or {})
        mapping = _loa_map(attributes)
        if mapping.get(acr) == level:
            return
        mapping[acr] = level
        attributes[ACR_LOA_MAP_ATTRIBUTE] = json.dumps(mapping)
        attributes[MAPPED_ACR_ATTRIBUTE] = acr
        self.steps.update_realm(f"map acr {acr!r} to level {level}", {"attributes": attributes})

    def _unmap_acr(self) -> None:
        """Remove the mapping install added, if any."""
        attributes = dict(self.steps.realm().get("attributes") or {})
        acr = attributes.pop(MAPPED_ACR_ATTRIBUTE, None)
        if acr is None:
            return
        mapping = _loa_map(attributes)
        mapping.pop(acr, None)
        attributes[ACR_LOA_MAP_ATTRIBUTE] = json.dumps(mapping)
        self.steps.update_realm(f"unmap acr {acr!r}", {"attributes": attributes})

    # -- reset credentials, registration, direct grant: a copy with the step after an anchor ----

    def install_reset(self, secret: str) -> Step:
        return self._install_copy(
            "resetCredentialsFlow", DEFAULT_RESET_FLOW, self.opts.reset_flow,
            PREVIOUS_RESET_ATTRIBUTE, (RESET_EMAIL_STEP,), secret, "reset-credentials")

    def uninstall_reset(self) -> None:
        self.steps.unbind("resetCredentialsFlow", self.opts.reset_flow, PREVIOUS_RESET_ATTRIBUTE,
                          DEFAULT_RESET_FLOW)
        self.steps.delete_flow(self.opts.reset_flow)

    def install_registration(self, secret: str) -> Step:
        return self._install_copy(
            "registrationFlow", DEFAULT_REGISTRATION_FLOW, self.opts.registration_flow,
            PREVIOUS_REGISTRATION_ATTRIBUTE, (REGISTRATION_FORM,), secret, "registration")

    def uninstall_registration(self) -> None:
        self.steps.unbind("registrationFlow", self.opts.registration_flow,
                          PREVIOUS_REGISTRATION_ATTRIBUTE, DEFAULT_REGISTRATION_FLOW)
        self.steps.delete_flow(self.opts.registration_flow)

    def install_direct_grant(self, secret: str) -> Step:
        step = self._install_copy(
            "directGrantFlow", DEFAULT_DIRECT_GRANT_FLOW, self.opts.direct_grant_flow,
            PREVIOUS_DIRECT_GRANT_ATTRIBUTE, DIRECT_GRANT_ANCHORS, secret, "direct-grant")
        self._point_overrides("direct_grant", self.opts.direct_grant_flow)
        return step

    def uninstall_direct_grant(self) -> None:
        self._restore_overrides("direct_grant", self.opts.direct_grant_flow)
        self.steps.unbind("directGrantFlow", self.opts.direct_grant_flow,
                          PREVIOUS_DIRECT_GRANT_ATTRIBUTE, DEFAULT_DIRECT_GRANT_FLOW)
        self.steps.delete_flow(self.opts.direct_grant_flow)

    def _install_copy(self, binding: str, default: str, flow: str, remember: str,
                      anchors: tuple[str, ...], secret: str, door: str) -> Step:
        self._not_rebound(binding, flow, remember, door)
        steps = self.steps
        steps.copy_flow(steps.realm().get(binding) or default, flow)
        listed = steps.steps(flow)
        anchor = next(
            (s for provider in anchors for s in listed if s.provider == provider), None)
        if anchor is None:
            raise ProvisioningError(
                f"flow {flow!r} has no {' or '.join(map(repr, anchors))} step to put the "
                "step-up after"
            )
        self._drop_stray_steps(flow, anchor.parent)
        anchor = self._must_child(flow, lambda s: s.id == anchor.id)
        step = steps.ensure(flow, anchor.parent, is_stepup,
                            lambda: steps.add_execution(anchor.parent, AUTHENTICATOR_ID),
                            "REQUIRED", anchor.position + 1)
        self._configure(flow, step, secret)
        steps.bind(binding, flow, remember)
        return step

    def _not_rebound(self, binding: str, flow: str, remember: str, door: str) -> None:
        """Refuses when install bound our copy ``flow`` once, and the realm now binds another
        flow, without the step, that it was not copied from: the administrator bound a new one
        since. Re-running would bind the old copy again, dropping whatever the new flow adds
        (a WebAuthn step, a condition), and uninstall would bring back the flow from before
        it. (A flow bound since that has the step, a copy of ours, is replaced as before.)"""
        if self.steps.flow(flow) is None:
            return
        realm = self.steps.realm()
        bound = realm.get(binding)
        copied_from = (realm.get("attributes") or {}).get(remember)
        if copied_from is None or bound in (None, flow, copied_from):
            return
        if self.steps.flow(bound) is not None and passes(
                bound, self.steps.steps(bound), browser=binding == "browserFlow",
                level_of=self.steps.loa_level):
            return
        raise ProvisioningError(
            f"the realm's {binding} is {bound!r}, bound after {flow!r} was copied from "
            f"{copied_from!r}: run `stepup keycloak uninstall --cover {door}`, then install "
            f"again, to put the step-up into a copy of {bound!r}")

    # -- clients' flow overrides -------------------------------------------------------------------

    def _point_overrides(self, binding: str, flow: str) -> None:
        """A client whose ``binding`` override names a flow without the step gets ``flow``
        instead (the one it had is remembered in a client attribute); overrides to flows that
        pass the step are the administrator's and stay."""
        ids = {f["alias"]: f["id"] for f in self.steps.flows()}
        aliases = {v: k for k, v in ids.items()}
        for client in self.steps.clients():
            overrides = dict(client.get("authenticationFlowBindingOverrides") or {})
            current = overrides.get(binding)
            if not current or current == ids[flow]:
                continue
            alias = aliases.get(current)
            if alias and passes(alias, self.steps.steps(alias), browser=binding == "browser",
                                level_of=self.steps.loa_level):
                continue
            attributes = {**(client.get("attributes") or {}), _previous_override(binding): current}
            self._update_client(client, {**overrides, binding: ids[flow]}, attributes,
                                f"point the {binding} override of client "
                                f"{client['clientId']!r} at flow {flow!r}")

    def _restore_overrides(self, binding: str, flow: str) -> None:
        found = self.steps.flow(flow)
        ids = {f["id"] for f in self.steps.flows()}
        for client in self.steps.clients():
            overrides = dict(client.get("authenticationFlowBindingOverrides") or {})
            attributes = dict(client.get("attributes") or {})
            previous = attributes.pop(_previous_override(binding), None)
            if found is None or overrides.get(binding) != found["id"]:
                continue
            # Keycloak removes an override sent as "" (an empty map would change nothing).
            overrides[binding] = previous if previous in ids else ""
            self._update_client(client, overrides, attributes,
                                f"restore the {binding} override of client "
                                f"{client['clientId']!r}")

    def _update_client(self, client: dict[str, Any], overrides: dict[str, str],
                       attributes: dict[str, str], action: str) -> None:
        payload = {**client, "authenticationFlowBindingOverrides": overrides,
                   "attributes": attributes}
        self.steps.write(action, self.steps.admin.update_client, client["id"], payload)

    # -- identity providers ------------------------------------------------------------------------

    def install_brokers(self, secret: str) -> list[str]:
        """The step-up as post login flow of every identity provider; their aliases. A post
        login flow of the administrator's that has the step already stays, as client
        overrides do: replaced, whatever else it checks (a group, a condition that denies)
        would stop running, since Keycloak runs one post login flow per provider."""
        steps, flow = self.steps, self.opts.broker_flow
        steps.create_flow(flow, "Stepup Bridge after an external identity provider")
        self._drop_stray_steps(flow, flow)
        step = steps.ensure(flow, flow, is_stepup,
                            lambda: steps.add_execution(flow, AUTHENTICATOR_ID), "REQUIRED", 0)
        self._configure(flow, step, secret)
        aliases = []
        for idp in self.steps.identity_providers():
            aliases.append(str(idp["alias"]))
            previous = idp.get("postBrokerLoginFlowAlias") or ""
            if previous == flow or (previous and self.steps.flow(previous) is not None and passes(
                    previous, self.steps.steps(previous), browser=False)):
                continue
            config = dict(idp.get("config") or {})
            if previous:
                config[PREVIOUS_POST_BROKER_KEY] = previous
            self._update_idp(idp, flow, config)
        return aliases

    def uninstall_brokers(self) -> None:
        flow = self.opts.broker_flow
        for idp in self.steps.identity_providers():
            if idp.get("postBrokerLoginFlowAlias") != flow:
                continue
            config = dict(idp.get("config") or {})
            previous = config.pop(PREVIOUS_POST_BROKER_KEY, "")
            if previous and self.steps.flow(previous) is None:
                previous = ""
            self._update_idp(idp, previous, config)
        self.steps.delete_flow(flow)

    def _update_idp(self, idp: dict[str, Any], flow: str, config: dict[str, str]) -> None:
        payload = {**idp, "postBrokerLoginFlowAlias": flow, "config": config}
        what = f"flow {flow!r}" if flow else "no flow"
        self.steps.write(
            f"set the post login flow of identity provider {idp['alias']!r} to {what}",
            self.steps.admin.update_idp, idp["alias"], payload)

    # -- shared ------------------------------------------------------------------------------------

    def _drop_stray_steps(self, flow: str, keep_in: str) -> None:
        """Delete step-up executions anywhere but directly in ``keep_in`` (a layout change),
        and all but the first there (one added by hand, say to another bridge: the one kept
        gets this bridge's config)."""
        kept = False
        for step in find(self.steps.steps(flow), is_stepup):
            if step.parent == keep_in and not kept:
                kept = True
            else:
                self.steps.delete_execution(step)

    def _must_child(self, flow: str, match: Any) -> Step:
        found = next((s for s in self.steps.steps(flow) if match(s)), None)
        if found is None:
            raise ProvisioningError(f"Keycloak did not list the expected step in flow {flow!r}")
        return found


def _anchor(password: Step, holders: dict[str, Step], shape: str) -> Step:
    """What the step-up goes right after: the password form when it is REQUIRED, or else the
    nearest REQUIRED sub-flow around it (``holders``: the flow's sub-flows by alias). In a
    (sub-)flow with a REQUIRED execution Keycloak skips every ALTERNATIVE one, so the step-up
    must not join a password form that is one of several ways in (beside a passkey, Kerberos,
    a certificate): it would skip them all. It follows the sub-flow that holds them."""
    anchor = password
    while anchor.requirement != "REQUIRED":
        if anchor.parent not in holders:
            raise ProvisioningError(
                f"flow {shape!r}: the password form is one of several ALTERNATIVE ways in, and "
                "no REQUIRED sub-flow holds them all for the step-up to follow: put them in a "
                "sub-flow of their own, REQUIRED, and run install again")
        anchor = holders[anchor.parent]
    return anchor


def _previous_override(binding: str) -> str:
    """Client attribute remembering the ``binding`` override install replaced."""
    return f"stepup.previousOverride.{binding}"


def _loa_map(attributes: dict[str, Any]) -> dict[str, Any]:
    try:
        mapping = json.loads(attributes.get(ACR_LOA_MAP_ATTRIBUTE) or "{}")
    except ValueError:
        mapping = {}
    return mapping if isinstance(mapping, dict) else {}
