"""``stepup keycloak audit``: every way into a realm that does not pass the step-up.

Read-only. A flow *passes* the step-up when every way through it runs a REQUIRED
``stepup-bridge`` execution, judged the way Keycloak 26 runs flows: when a flow has REQUIRED or
CONDITIONAL steps its ALTERNATIVE ones are ignored, otherwise any one ALTERNATIVE is enough; a
CONDITIONAL sub-flow may be skipped, so it only counts when its one condition is the level of
authentication (step-up only when a client asks for it is an administrator's choice), while a
CONDITIONAL execution runs as REQUIRED. The cookie, the identity-provider redirector and
organization steps lead to a session or a broker login that are judged on their own door, so
they are neutral. Wherever a browser reaches the step (the browser, reset-credentials and
registration doors, clients' browser overrides, flows a client policy selects) it must also
come after a first factor (:func:`early_steps`), and every step that passes a door must hand
off to this bridge (its configured issuer).

Doors checked: the bound browser and reset-credentials flows (the latter only while "Forgot
password" is on), self-registration (or organizations' invitations), every client's flow
overrides (OpenID Connect and SAML), the flows client policies select (their *auth-flow-enforcer*
executor), direct access grants, CIBA, SAML ECP, docker registry logins, and every enabled
identity provider's post login flow.
Then the grants that run no flow at all, where the server has their preview feature on and the
realm lets a client use them: legacy token exchange (external tokens, impersonation), its
experimental external-to-internal successor, and the JWT authorization grant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .flows import Step
from .options import AUTHENTICATOR_ID, CONFIG_ISSUER, LOA_CONDITION_ID
from .steps import Steps

#: Steps that hand over to a session or another door instead of authenticating here.
NEUTRAL = frozenset({"auth-cookie", "identity-provider-redirector", "organization"})
#: Keycloak's "Deny access": a way through it lets nobody in.
DENY_ACCESS = "deny-access-authenticator"
#: Executions that prove who the user is. The step-up must come after one of them: a step that
#: anyone reaches by typing a username (after "Username Form" or "Choose User") would let them
#: set up an authenticator on an account that has none, or fail codes until one is locked.
FIRST_FACTORS = frozenset({
    "auth-username-password-form", "auth-password-form", "auth-spnego", "auth-cookie",
    "auth-x509-client-username-form", "reset-credential-email", "registration-page-form",
})
#: Forms of a credential the user may not have (their factories allow user set-up): REQUIRED,
#: Keycloak skips one for a user without that credential and only queues setting it up, so it
#: proves nothing; ALTERNATIVE, a user without it must pass another alternative (Keycloak's
#: passwordless layout: a passkey, or the password), so it proves like the others.
CREDENTIAL_FORMS = frozenset({
    "auth-otp-form", "webauthn-authenticator", "webauthn-authenticator-passwordless",
    "auth-recovery-authn-code-form",
})


class Verdict(Enum):
    PASSES = "passes"
    OPEN = "open"
    NEUTRAL = "neutral"
    #: Only inside :func:`judge`: no way through (Deny access), which the step is not.
    CLOSED = "closed"


@dataclass(frozen=True)
class Finding:
    """One open door: what it is and what to change."""

    door: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.door}: {self.what} — {self.fix}"

    @property
    def covered_by(self) -> str:
        """The door of ``install --cover`` that should have closed this one: a client policy
        that selects a flow without the step opens the browser door, which install cannot
        close for it (the policy is the administrator's)."""
        return "browser" if self.door == "client policy" else self.door.replace(" ", "-")


def audit(steps: Steps) -> list[Finding]:
    """Every open door of the realm, browser first; empty when every door passes the step-up."""
    realm = steps.realm()
    flows = {f["alias"]: f for f in steps.flows()}
    by_id = {f["id"]: f["alias"] for f in flows.values()}
    listings: dict[str, list[Step]] = {}
    cache: dict[tuple[str, bool], Verdict] = {}

    def listing(alias: str) -> list[Step]:
        if alias not in listings:
            listings[alias] = steps.steps(alias)
        return listings[alias]

    def verdict(alias: str | None, levels: bool = False) -> Verdict:
        """``levels``: a browser login's door, where a step behind a level condition is the
        documented step-up on request (docs/keycloak.md, section 5)."""
        if not alias or alias not in flows:
            return Verdict.OPEN
        if (alias, levels) not in cache:
            cache[alias, levels] = judge(alias, listing(alias), levels, steps.loa_level)
        return cache[alias, levels]

    findings: list[Finding] = []

    def too_early(door: str, alias: str | None, how: str = "",
                  levels: bool = False) -> list[Finding]:
        """A finding for each step-up in ``alias`` that nothing proving the user comes before
        (``how``: how the door reaches that flow, when it is not the door's own binding)."""
        if verdict(alias, levels) is not Verdict.PASSES:
            return []  # reported as open already
        return [Finding(
            door, f"{how}Stepup Bridge MFA in {alias!r} (in {step.parent!r}) runs before "
            "anything proves who the user is: whoever types a username reaches the bridge, and "
            "can set up an authenticator on an account that has none, or lock out one that has",
            "move it after the password form (after Send Reset Email when resetting a "
            "password), where `stepup keycloak install` puts it")
            for step in early_steps(listing(str(alias)))]

    browser = realm.get("browserFlow")
    if verdict(browser, levels=True) is not Verdict.PASSES:
        findings.append(Finding(
            "browser", f"the bound browser flow {browser!r} lets users in without the step-up",
            # Install's own flow: running it again lays the step out the same way.
            "switch off the way in beside the step (Kerberos, a passkey, a certificate as an "
            "ALTERNATIVE), or move Stepup Bridge MFA after the sub-flow that holds every way "
            "in (docs/keycloak.md, 'Where the step sits')" if browser == steps.opts.flow else
            "run `stepup keycloak install` (or put Stepup Bridge MFA REQUIRED after the password "
            "form and bind that flow)" if steps.opts.flow not in flows else
            # Install copied another flow before this one was bound: it would bind that copy.
            f"run `stepup keycloak uninstall --cover browser`, then `stepup keycloak install`, "
            f"to put the step-up into a copy of {browser!r}"))
    findings += too_early("browser", browser, levels=True)
    for door, switches, binding, runs, setting in _SWITCHED_DOORS:
        flow = realm.get(binding)
        if not any(realm.get(switch) for switch in switches):
            continue
        if verdict(flow) is not Verdict.PASSES:
            findings.append(Finding(
                door, runs.format(flow=flow) + " without the step-up",
                f"run `stepup keycloak install` (covers {door}), or turn off {setting}"))
        else:
            findings += too_early(door, flow)
    direct = realm.get("directGrantFlow")
    clients = steps.clients()
    features = steps.features()
    if features is None:  # not known: those doors are not judged, and audit fails for it
        findings.append(Finding(
            "server features", "the server does not list its features to this admin account, "
            "so the doors that need one (token exchange, the JWT authorization grant, docker "
            "logins) could not be judged",
            "run audit as an admin of the master realm"))
        features = frozenset()
    for client in clients:
        findings.extend(_client_findings(client, direct, by_id, verdict, too_early))
    # A client policy's flow selector sends the logins of the clients it matches to its flow,
    # ahead of their overrides and the realm's binding (a flow that does not exist fails them).
    for policy, alias, claimed in steps.selected_flows():
        if alias not in flows:
            continue
        how = f"client policy {policy!r} sends the logins of the clients it matches to {alias!r}"
        if verdict(alias, levels=True) is not Verdict.PASSES:
            findings.append(Finding(
                "client policy", f"{how}, which lets users in without the step-up",
                "remove its Authentication flow selector (Realm settings → Client policies → "
                f"Profiles), or add Stepup Bridge MFA REQUIRED after the password form of "
                f"{alias!r}"))
        else:
            findings += too_early("client policy", alias, how=f"{how}: ", levels=True)
            # The selector's level is the login's once the flow ends, whatever ran: at the
            # step-up's level, a password alone gets its acr, unless the step always runs.
            if claimed is not None and verdict(alias) is not Verdict.PASSES and any(
                    level is not None and claimed >= level
                    for level in step_levels(listing(alias), steps.loa_level)):
                findings.append(Finding(
                    "client policy", f"{how} and gives its logins level {claimed} when that "
                    f"flow ends (auth-flow-loa), the level at which {alias!r} runs the step-up "
                    "only when asked: a password alone gets the step-up's acr",
                    "clear the selector's Authentication flow LoA, or set it below the "
                    "step-up's level"))
    # Docker registry logins: a password over HTTP Basic through the realm's docker flow, for
    # docker-v2 clients, while the server runs the docker feature.
    docker = realm.get("dockerAuthenticationFlow")
    registries = [c.get("clientId") for c in clients if c.get("protocol") == "docker-v2"
                  and c.get("enabled", True)]
    if registries and "DOCKER" in features and verdict(docker) is not Verdict.PASSES:
        findings.append(Finding(
            "docker", f"docker registry client(s) {', '.join(map(repr, registries))} sign users "
            f"in with a password through {docker!r}, without the step-up",
            "remove or disable those clients, or add Stepup Bridge MFA REQUIRED to that flow "
            "(it refuses there, having no browser: that closes it)"))
    idps = [idp for idp in steps.identity_providers() if idp.get("enabled", True)]
    for idp in idps:
        if idp.get("providerId") in NO_BROKER_LOGIN:
            continue  # judged with the grants that run no flow
        post = idp.get("postBrokerLoginFlowAlias")
        if verdict(post) is not Verdict.PASSES:
            now = f"post login flow {post!r}" if post else "no post login flow"
            findings.append(Finding(
                "brokers", f"identity provider {idp['alias']!r} has {now}",
                "run `stepup keycloak install` (covers brokers), or set its post login flow to "
                "a flow with Stepup Bridge MFA REQUIRED"))
        # Transient users (an experimental feature): Keycloak makes a new user, with a new
        # id, at every login through the provider, so to the bridge each one is a user it
        # has never seen, and the step-up is a first enrollment every time.
        if "TRANSIENT_USERS" in features and \
                (idp.get("config") or {}).get("doNotStoreUsers") == "true":
            findings.append(Finding(
                "brokers", f"identity provider {idp['alias']!r} does not store its users: each "
                "login through it is a new user, whose step-up is an enrollment anyone signed "
                "in there can complete",
                "turn off that provider's 'Do not store users'"))
    findings.extend(_flowless_grants(steps, features, clients, idps))
    # A step that passes a door but hands off to another bridge (a test one, an old address)
    # lets users in on that bridge's say, not this one's.
    for alias in sorted({a for (a, _), v in cache.items() if v is Verdict.PASSES}):
        for step in listing(alias):
            if step.is_subflow or step.provider != AUTHENTICATOR_ID \
                    or step.requirement == "DISABLED":
                continue
            issuer = ((steps.read_config(step) or {}).get("config") or {}).get(CONFIG_ISSUER)
            if issuer != steps.opts.bridge_issuer:
                findings.append(Finding(
                    "step config", f"Stepup Bridge MFA in {alias!r} hands off to "
                    f"{issuer or 'no bridge'!s}, not to this bridge ({steps.opts.bridge_issuer})",
                    "run `stepup keycloak install` again (it rewrites the step's config), or "
                    "set its Bridge issuer"))
    return findings


#: Identity provider types whose tokens Keycloak never exchanges (no ExchangeExternalToken).
NO_TOKEN_EXCHANGE = frozenset({"saml", "jwt-authorization-grant"})
#: Identity provider types no browser logs in through: no broker login, no post login flow.
NO_BROKER_LOGIN = frozenset({"jwt-authorization-grant"})


def _flowless_grants(steps: Steps, features: frozenset[str], clients: list[dict[str, Any]],
                     idps: list[dict[str, Any]]) -> list[Finding]:
    """Grants that create a user session without running any authentication flow, so no step
    can stand in their way: only turning them off closes them. Each needs a preview or
    experimental feature of the server, and something in the realm that lets a client use it
    (checked against Keycloak 26.5's token endpoint)."""
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
            if client.get("publicClient") or not client.get("enabled", True) or \
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


#: Doors realm settings open: (door, the settings' keys (any one opens it), the flow binding,
#: what the flow does, the settings' names in the admin console). Organizations open the
#: registration door with registration off: an invitation link registers the invitee
#: (Keycloak's Organizations.isRegistrationAllowed).
_SWITCHED_DOORS = (
    ("reset-credentials", ("resetPasswordAllowed",), "resetCredentialsFlow",
     "\"Forgot password?\" runs {flow!r}, which signs users in after the e-mailed link",
     "Forgot password under Realm settings → Login"),
    ("registration", ("registrationAllowed", "organizationsEnabled"), "registrationFlow",
     "user registration (or an organization's invitation) runs {flow!r}, which signs a new "
     "account in", "User registration under Realm settings → Login, and Organizations"),
)


def _client_findings(client: dict[str, Any], direct: str | None, by_id: dict[str, str],
                     verdict: Any, too_early: Any) -> list[Finding]:
    protocol = client.get("protocol", "openid-connect")
    if client.get("bearerOnly") or not client.get("enabled", True) \
            or protocol not in ("openid-connect", "saml"):
        return []  # no login: bearer-only, or switched off (Keycloak refuses it every grant)
    name = client.get("clientId")
    attributes = client.get("attributes") or {}
    overrides = client.get("authenticationFlowBindingOverrides") or {}
    found = []
    for binding, flow_id in sorted(overrides.items()):
        if not flow_id:
            continue
        alias = by_id.get(flow_id, flow_id)
        how = f"client {name!r} overrides its {binding} flow with {alias!r}"
        if verdict(alias, binding == "browser") is not Verdict.PASSES:
            found.append(Finding(
                "client flow override", f"{how}, which lets users in without the step-up",
                f"remove the override (Clients → {name} → Advanced → Authentication flow "
                "overrides) or add Stepup Bridge MFA REQUIRED to that flow"))
        elif binding == "browser":  # the password grant's step refuses: no one set up there
            found += too_early("client flow override", alias, how=f"{how}: ", levels=True)
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


def early_steps(listing: list[Step]) -> list[Step]:
    """The REQUIRED step-up executions of a flow with no first factor before them on their
    way: no earlier REQUIRED sibling, in their own sub-flow or any around it, that proves who
    the user is (:data:`FIRST_FACTORS`, or a sub-flow that always runs one)."""
    children: dict[str, list[Step]] = {}
    holder: dict[str, Step] = {}
    for step in listing:
        children.setdefault(step.parent, []).append(step)
        if step.is_subflow:
            holder[str(step.alias)] = step

    def proves(step: Step) -> bool:
        if step.provider in FIRST_FACTORS:
            return True
        if step.provider in CREDENTIAL_FORMS:
            return step.requirement == "ALTERNATIVE"
        if not step.is_subflow:
            return False
        kids = [s for s in children.get(str(step.alias), []) if s.requirement != "DISABLED"]
        required = [s for s in kids if _required(s)]
        if required or any(s.requirement == "CONDITIONAL" for s in kids):
            return any(proves(s) for s in required)
        alternatives = [s for s in kids if s.requirement == "ALTERNATIVE"]
        return bool(alternatives) and all(proves(s) for s in alternatives)

    def runs_first(step: Step) -> bool:
        """Runs on every way that reaches what follows it: REQUIRED, or a level-of-
        authentication sub-flow (skipped only for a session that reached its level already)."""
        return _required(step) or (step.requirement == "CONDITIONAL"
                                   and _conditions(children, step) == {LOA_CONDITION_ID})

    def proven_before(step: Step) -> bool:
        while True:
            if any(runs_first(s) and proves(s) for s in children[step.parent][:step.position]):
                return True
            if step.parent not in holder:
                return False
            step = holder[step.parent]

    return [s for s in listing if not s.is_subflow and s.provider == AUTHENTICATOR_ID
            and _required(s) and not proven_before(s)]


def step_levels(listing: list[Step], level_of: Callable[[Step], int | None]) -> list[int | None]:
    """The levels of the "Condition - Level of Authentication" sub-flows that hold the
    step-up in a flow (None where a level cannot be read)."""
    children: dict[str, list[Step]] = {}
    for step in listing:
        children.setdefault(step.parent, []).append(step)

    def holds(parent: str) -> bool:
        return any(s.requirement != "DISABLED" and (
            s.provider == AUTHENTICATOR_ID or (s.is_subflow and holds(str(s.alias))))
            for s in children.get(parent, []))

    levels = []
    for step in listing:
        if step.is_subflow and step.requirement != "DISABLED" and holds(str(step.alias)):
            condition = next((s for s in children.get(str(step.alias), [])
                              if s.provider == LOA_CONDITION_ID and s.requirement != "DISABLED"),
                             None)
            if condition is not None:
                levels.append(level_of(condition))
    return levels


def passes(alias: str, listing: list[Step], browser: bool,
           level_of: Callable[[Step], int | None] | None = None) -> bool:
    """Whether the flow ``alias`` passes the step-up as a door of its kind: on every way
    through it, and (where a browser reaches it) after a first factor."""
    return (judge(alias, listing, levels=browser, level_of=level_of) is Verdict.PASSES
            and not (browser and early_steps(listing)))


def judge(alias: str, listing: list[Step], levels: bool = False,
          level_of: Callable[[Step], int | None] | None = None) -> Verdict:
    """Whether every way through the flow ``alias`` runs the step-up. ``levels``: a step in
    a sub-flow behind "Condition - Level of Authentication" counts, as the step-up a browser
    login runs when its client asks for that level. Nowhere else: the password grant asks
    for no level, so once a level-1 password sub-flow has set one the step's condition does
    not match, and a reset, a broker or a docker login would pass on a level the client asks
    for or not (Keycloak's ConditionalLoaAuthenticator.matchCondition). ``level_of`` reads a
    level condition's level: the step's sub-flow must ask for a higher one than every level
    sub-flow before it, which would otherwise have reached its level already, so that the
    step's never runs. A level that cannot be read is not compared."""
    children: dict[str, list[Step]] = {}
    for step in listing:
        children.setdefault(step.parent, []).append(step)

    def of(step: Step) -> Verdict:
        if step.is_subflow:
            return of_flow(str(step.alias))
        if step.provider == AUTHENTICATOR_ID:
            return Verdict.PASSES
        if step.provider == DENY_ACCESS:
            return Verdict.CLOSED
        if step.provider in NEUTRAL:
            return Verdict.NEUTRAL
        return Verdict.OPEN

    def of_flow(parent: str) -> Verdict:
        kids = [s for s in children.get(parent, []) if s.requirement != "DISABLED"
                and not str(s.provider or "").startswith("conditional-")]
        required = [s for s in kids if _required(s)]
        conditional = [s for s in kids if s.requirement == "CONDITIONAL" and s.is_subflow]
        if required or conditional:
            verdicts = [of(s) for s in required]
            if Verdict.PASSES in verdicts or (levels and any(
                    _level_step_up(s, conditional[:n]) for n, s in enumerate(conditional))):
                return Verdict.PASSES
            if Verdict.CLOSED in verdicts:
                return Verdict.CLOSED
            verdicts += [of(s) for s in conditional]
            return Verdict.OPEN if Verdict.OPEN in verdicts else Verdict.NEUTRAL
        verdicts = [of(s) for s in kids if s.requirement == "ALTERNATIVE"]
        for verdict in (Verdict.OPEN, Verdict.PASSES, Verdict.CLOSED):
            if verdict in verdicts:
                return verdict
        return Verdict.NEUTRAL

    def _level_step_up(step: Step, before: list[Step]) -> bool:
        """A CONDITIONAL sub-flow whose only condition is the level, with the step REQUIRED
        (not merely Deny access: the levels below it would then pass without the step), at a
        level above those of the level sub-flows ``before`` it."""
        if not (_conditions(children, step) == {LOA_CONDITION_ID}
                and of_flow(str(step.alias)) is Verdict.PASSES):
            return False
        mine = _level(step)
        return mine is None or all(
            level is None or level < mine for level in
            (_level(s) for s in before if _conditions(children, s) == {LOA_CONDITION_ID}))

    def _level(sub_flow: Step) -> int | None:
        condition = next((s for s in children.get(str(sub_flow.alias), [])
                          if s.provider == LOA_CONDITION_ID and s.requirement != "DISABLED"),
                         None)
        return level_of(condition) if condition is not None and level_of else None

    verdict = of_flow(alias)
    return Verdict.PASSES if verdict is Verdict.CLOSED else verdict  # nobody gets through


def _required(step: Step) -> bool:
    """Runs whenever its flow runs: REQUIRED, or CONDITIONAL on an execution (Keycloak skips
    only CONDITIONAL sub-flows, by their conditions; an execution it runs as REQUIRED)."""
    return step.requirement == "REQUIRED" or (step.requirement == "CONDITIONAL"
                                              and not step.is_subflow)


def _conditions(children: dict[str, list[Step]], step: Step) -> set[str | None]:
    """The enabled conditions directly inside a sub-flow (none for an execution)."""
    if not step.is_subflow:
        return set()
    return {s.provider for s in children.get(str(step.alias), [])
            if str(s.provider or "").startswith("conditional-") and s.requirement != "DISABLED"}
