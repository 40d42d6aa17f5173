"""``stepup keycloak audit``: every way into a realm that does not pass the step-up.

Read-only. A flow *passes* the step-up when every way through it runs a REQUIRED
``stepup-bridge`` execution, judged the way Keycloak 26 runs flows: when a flow has REQUIRED or
CONDITIONAL steps its ALTERNATIVE ones are ignored, otherwise any one ALTERNATIVE is enough; a
CONDITIONAL sub-flow may be skipped, so it only counts when its one condition is the level of
authentication (step-up only when a client asks for it is an administrator's choice). The
cookie, the identity-provider redirector and organization steps lead to a session or a broker
login that are judged on their own door, so they are neutral.

Doors checked: the bound browser and reset-credentials flows (the latter only while "Forgot
password" is on), self-registration, every client's flow overrides (OpenID Connect and SAML),
direct access grants, CIBA and SAML ECP, and every enabled identity provider's post login flow.
Then the grants that run no flow at all, where the server has their preview feature on and the
realm lets a client use them: legacy token exchange (external tokens, impersonation), its
experimental external-to-internal successor, and the JWT authorization grant.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from .flows import Step, read_steps
from .options import AUTHENTICATOR_ID, LOA_CONDITION_ID
from .steps import Steps

#: Steps that hand over to a session or another door instead of authenticating here.
NEUTRAL = frozenset({"auth-cookie", "identity-provider-redirector", "organization"})


class Verdict(Enum):
    PASSES = "passes"
    OPEN = "open"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class Finding:
    """One open door: what it is and what to change."""

    door: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.door}: {self.what} — {self.fix}"


def audit(steps: Steps) -> list[Finding]:
    """Every open door of the realm, browser first; empty when every door passes the step-up."""
    realm = steps.realm()
    flows = {f["alias"]: f for f in steps.flows()}
    by_id = {f["id"]: f["alias"] for f in flows.values()}
    cache: dict[str, Verdict] = {}

    def verdict(alias: str | None) -> Verdict:
        if not alias or alias not in flows:
            return Verdict.OPEN
        if alias not in cache:
            listing = steps.read(f"list the executions of flow {alias!r}",
                                 steps.admin.get_authentication_flow_executions, alias)
            cache[alias] = judge(alias, read_steps(alias, listing))
        return cache[alias]

    findings: list[Finding] = []
    browser = realm.get("browserFlow")
    if verdict(browser) is not Verdict.PASSES:
        findings.append(Finding(
            "browser", f"the bound browser flow {browser!r} lets users in without the step-up",
            "run `stepup keycloak install` (or put Stepup Bridge MFA REQUIRED after the password "
            "form and bind that flow)"))
    for door, switch, binding, runs, setting in _SWITCHED_DOORS:
        flow = realm.get(binding)
        if realm.get(switch) and verdict(flow) is not Verdict.PASSES:
            findings.append(Finding(
                door, runs.format(flow=flow) + " without the step-up",
                f"run `stepup keycloak install` (covers {door}), or turn off {setting} under "
                "Realm settings → Login"))
    direct = realm.get("directGrantFlow")
    clients = steps.clients()
    for client in clients:
        findings.extend(_client_findings(client, direct, by_id, verdict))
    idps = [idp for idp in steps.identity_providers() if idp.get("enabled", True)]
    for idp in idps:
        post = idp.get("postBrokerLoginFlowAlias")
        if verdict(post) is not Verdict.PASSES:
            now = f"post login flow {post!r}" if post else "no post login flow"
            findings.append(Finding(
                "brokers", f"identity provider {idp['alias']!r} has {now}",
                "run `stepup keycloak install` (covers brokers), or set its post login flow to "
                "a flow with Stepup Bridge MFA REQUIRED"))
    findings.extend(_flowless_grants(steps, clients, idps))
    return findings


#: Identity provider types whose tokens Keycloak never exchanges (no ExchangeExternalToken).
NO_TOKEN_EXCHANGE = frozenset({"saml", "jwt-authorization-grant"})


def _flowless_grants(steps: Steps, clients: list[dict[str, Any]],
                     idps: list[dict[str, Any]]) -> list[Finding]:
    """Grants that create a user session without running any authentication flow, so no step
    can stand in their way: only turning them off closes them. Each needs a preview or
    experimental feature of the server, and something in the realm that lets a client use it
    (checked against Keycloak 26.5's token endpoint)."""
    features = steps.features()
    off = "or run Keycloak without the {} feature {}"
    found = []
    # Keycloak exchanges only the tokens of providers that can validate them (OpenID Connect
    # and the social ones), never SAML assertions or a JWT grant provider's.
    exchanging = [idp for idp in idps if idp.get("providerId") not in NO_TOKEN_EXCHANGE]
    # Legacy exchange (v1) lets a client in only through fine-grained permissions of v1, and a
    # permission with no policy allows nobody.
    if {"TOKEN_EXCHANGE", "ADMIN_FINE_GRAINED_AUTHZ"} <= features:
        for idp in exchanging:
            alias = idp["alias"]
            if steps.idp_permission_policies(alias, "token-exchange"):
                found.append(Finding(
                    "token exchange",
                    f"identity provider {alias!r} lets clients exchange its tokens for this "
                    "realm's (legacy token exchange): its users get tokens, and new users an "
                    "account, without any flow and without the step-up",
                    f"remove the policies of its token-exchange permission (Identity providers → "
                    f"{alias} → Permissions), " + off.format("preview", "token-exchange")))
        if steps.users_permission_policies("impersonate"):
            found.append(Finding(
                "token exchange",
                "the users' impersonate permission has policies: a client they allow gets any "
                "user's tokens by legacy token exchange (requested_subject), without the step-up",
                "remove the policies of the impersonate permission (Users → Permissions), "
                + off.format("preview", "token-exchange")))
    if "TOKEN_EXCHANGE_EXTERNAL_INTERNAL_V2" in features:  # no permission to hold at all
        for idp in exchanging:
            found.append(Finding(
                "token exchange",
                f"any confidential client can exchange tokens of identity provider "
                f"{idp['alias']!r} for this realm's (external-to-internal token exchange v2), "
                "without any flow and without the step-up",
                off.format("experimental", "token-exchange-external-internal:v2")))
    if "JWT_AUTHORIZATION_GRANT" in features:
        issuers = {idp["alias"] for idp in idps
                   if idp.get("providerId") == "jwt-authorization-grant"
                   or (idp.get("config") or {}).get("jwtAuthorizationGrantEnabled") == "true"}
        for client in clients:
            attributes = client.get("attributes") or {}
            if client.get("publicClient") or \
                    attributes.get("oauth2.jwt.authorization.grant.enabled") != "true":
                continue
            trusted = sorted(issuers & set(
                attributes.get("oauth2.jwt.authorization.grant.idp", "").split("##")))
            if trusted:
                name = client.get("clientId")
                found.append(Finding(
                    "jwt authorization grant",
                    f"client {name!r} takes JWTs signed by identity provider "
                    f"{', '.join(map(repr, trusted))} as a grant (RFC 7523): the users linked "
                    "to it get tokens without any flow and without the step-up",
                    f"turn off JWT Authorization Grant for {name!r} (Clients → {name}), "
                    + off.format("preview", "jwt-authorization-grant")))
    return found


#: Doors a realm setting opens: (door, the setting's key, the flow binding, what the flow does,
#: the setting's name in the admin console).
_SWITCHED_DOORS = (
    ("reset-credentials", "resetPasswordAllowed", "resetCredentialsFlow",
     "\"Forgot password?\" runs {flow!r}, which signs users in after the e-mailed link",
     "Forgot password"),
    ("registration", "registrationAllowed", "registrationFlow",
     "user registration is on and runs {flow!r}, which signs a new account in",
     "User registration"),
)


def _client_findings(client: dict[str, Any], direct: str | None, by_id: dict[str, str],
                     verdict: Any) -> list[Finding]:
    protocol = client.get("protocol", "openid-connect")
    if client.get("bearerOnly") or protocol not in ("openid-connect", "saml"):
        return []
    name = client.get("clientId")
    attributes = client.get("attributes") or {}
    overrides = client.get("authenticationFlowBindingOverrides") or {}
    found = []
    for binding, flow_id in sorted(overrides.items()):
        if not flow_id:
            continue
        alias = by_id.get(flow_id, flow_id)
        if verdict(alias) is not Verdict.PASSES:
            found.append(Finding(
                "client flow override",
                f"client {name!r} overrides its {binding} flow with {alias!r}, which lets users "
                "in without the step-up",
                f"remove the override (Clients → {name} → Advanced → Authentication flow "
                "overrides) or add Stepup Bridge MFA REQUIRED to that flow"))
    if protocol == "saml":
        if attributes.get("saml.allow.ecp.flow") == "true":
            found.append(Finding(
                "saml ecp",
                f"SAML client {name!r} allows the ECP profile, which signs users in with a "
                "password over HTTP Basic through Keycloak's fixed 'saml ecp' flow, without the "
                "step-up",
                f"turn off Allow ECP flow for {name!r} (Clients → {name} → Advanced)"))
        return found
    if client.get("directAccessGrantsEnabled"):
        flow = by_id.get(overrides.get("direct_grant", ""), direct)
        if verdict(flow) is not Verdict.PASSES:
            found.append(Finding(
                "direct grant",
                f"client {name!r} accepts the password grant (direct access grants) through "
                f"{flow!r}, which has no step-up and no browser",
                f"turn off Direct access grants for {name!r} (Clients → {name} → Settings → "
                "Capability config), or run `stepup keycloak install` (covers direct-grant)"))
    if attributes.get("oidc.ciba.grant.enabled") == "true":
        found.append(Finding(
            "ciba grant",
            f"client {name!r} has the client-initiated backchannel (CIBA) grant, which "
            "authenticates users on another device without the step-up",
            f"turn off OIDC CIBA Grant for {name!r} (Clients → {name} → Settings)"))
    return found


def judge(alias: str, listing: list[Step]) -> Verdict:
    """Whether every way through the flow ``alias`` runs the step-up."""
    children: dict[str, list[Step]] = {}
    for step in listing:
        children.setdefault(step.parent, []).append(step)

    def of(step: Step) -> Verdict:
        if step.is_subflow:
            return of_flow(str(step.alias))
        if step.provider == AUTHENTICATOR_ID:
            return Verdict.PASSES
        if step.provider in NEUTRAL:
            return Verdict.NEUTRAL
        return Verdict.OPEN

    def of_flow(parent: str) -> Verdict:
        kids = [s for s in children.get(parent, []) if s.requirement != "DISABLED"
                and not str(s.provider or "").startswith("conditional-")]
        required = [s for s in kids if s.requirement == "REQUIRED"]
        conditional = [s for s in kids if s.requirement == "CONDITIONAL"]
        if required or conditional:
            verdicts = [of(s) for s in required]
            if Verdict.PASSES in verdicts or any(_level_step_up(s) for s in conditional):
                return Verdict.PASSES
            verdicts += [of(s) for s in conditional]
            return Verdict.OPEN if Verdict.OPEN in verdicts else Verdict.NEUTRAL
        verdicts = [of(s) for s in kids if s.requirement == "ALTERNATIVE"]
        if Verdict.OPEN in verdicts:
            return Verdict.OPEN
        return Verdict.PASSES if Verdict.PASSES in verdicts else Verdict.NEUTRAL

    def _level_step_up(step: Step) -> bool:
        """A CONDITIONAL sub-flow whose only condition is the level, with the step REQUIRED."""
        if not step.is_subflow:
            return False
        inside = children.get(str(step.alias), [])
        conditions = {s.provider for s in inside if str(s.provider or "").startswith("conditional-")
                      and s.requirement != "DISABLED"}
        return conditions == {LOA_CONDITION_ID} and of_flow(str(step.alias)) is Verdict.PASSES

    return of_flow(alias)
