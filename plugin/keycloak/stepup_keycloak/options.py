"""What ``stepup keycloak install|uninstall`` is asked to do, checked once at construction.

:class:`InstallOptions` is the click-free input of :func:`stepup_keycloak.install`. Every
option's default is defined and documented here, next to the names Keycloak and the
``stepup-bridge`` authenticator must agree on. Bad values fail when the options are built
(one :class:`ProvisioningError` line), not half-way through changing a realm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from .errors import ProvisioningError

#: Provider id of the Java authenticator (its Factory's ``PROVIDER_ID``).
AUTHENTICATOR_ID = "stepup-bridge"
#: Executions the step-up goes right after. A copy of ``browser`` has the first one; a flow
#: split into username form + password form has the second.
PASSWORD_FORMS = ("auth-username-password-form", "auth-password-form")
#: Keycloak's built-in condition used by the ``conditional_loa`` layout, and its config keys.
LOA_CONDITION_ID = "conditional-level-of-authentication"
LOA_LEVEL_KEY = "loa-condition-level"
LOA_MAX_AGE_KEY = "loa-max-age"
#: Realm attribute remembering the browser flow that was bound before install.
PREVIOUS_FLOW_ATTRIBUTE = "stepup.previousBrowserFlow"
#: Browser flow restored by uninstall when nothing was remembered.
DEFAULT_BROWSER_FLOW = "browser"
#: The same three for the reset-credentials (password reset) and direct grant bindings.
PREVIOUS_RESET_ATTRIBUTE = "stepup.previousResetCredentialsFlow"
DEFAULT_RESET_FLOW = "reset credentials"
PREVIOUS_DIRECT_GRANT_ATTRIBUTE = "stepup.previousDirectGrantFlow"
DEFAULT_DIRECT_GRANT_FLOW = "direct grant"
#: The e-mail step of the reset-credentials flow: the step-up goes right after it, so the user
#: passes the bridge after following the e-mailed link and before choosing a new password.
RESET_EMAIL_STEP = "reset-credential-email"
#: The same three for self-registration; the step-up goes right after the registration form
#: (the account exists then), so a new user enrolls at the bridge before the first session.
PREVIOUS_REGISTRATION_ATTRIBUTE = "stepup.previousRegistrationFlow"
DEFAULT_REGISTRATION_FLOW = "registration"
REGISTRATION_FORM = "registration-page-form"
#: Executions the step-up goes after in a direct grant flow (it refuses there: no browser).
DIRECT_GRANT_ANCHORS = ("direct-grant-validate-password", "direct-grant-validate-username")
#: Identity-provider config key remembering its post-login flow from before install.
PREVIOUS_POST_BROKER_KEY = "stepup.previousPostBrokerLoginFlow"
#: Realm attribute holding the ACR-to-LoA mapping (a JSON object), as the admin console writes it.
ACR_LOA_MAP_ATTRIBUTE = "acr.loa.map"
#: Realm attribute naming the ``acr`` install mapped there (uninstall removes only that one).
MAPPED_ACR_ATTRIBUTE = "stepup.mappedAcr"
#: The ways into a realm install can put the step-up on (``--cover``).
DOORS = ("browser", "reset-credentials", "registration", "brokers", "direct-grant")
#: Login-actions paths the authenticator comes back to (Keycloak's LoginActionsService): one
#: redirect-URI prefix each at the bridge.
CALLBACK_PATHS = ("authenticate", "reset-credentials", "registration", "post-broker-login",
                  "first-broker-login")
#: What Keycloak leaves unencoded in a path segment besides letters, digits and ``-._``
#: (RFC 3986 sub-delims, ':', '@', '~'), as ``quote``'s ``safe``.
PATH_SEGMENT_SAFE = "!$&'()*+,;=:@~"
#: Authenticator config keys read by the Java authenticator (typed Configuration there).
CONFIG_ISSUER = "stepup.issuer"
CONFIG_CLIENT_ID = "stepup.clientId"
CONFIG_CLIENT_SECRET = "stepup.clientSecret"  # noqa: S105 - a key name, not a secret
#: What newer Keycloaks (26.7; not 26.5) answer for a secret of an authenticator's config: the
#: admin API shows it masked, and keeps the stored value when the mask is sent back.
MASKED_SECRET = "**********"  # noqa: S105 - Keycloak's mask, not a secret
#: Beside the secret: the bridge's keyed digest of it (``InstallOptions.secret_check``), which
#: tells a re-run whether a secret Keycloak shows masked is the one the bridge holds.
CONFIG_SECRET_CHECK = "stepup.clientSecretCheck"  # noqa: S105 - a key name, not a secret
CONFIG_ACR_VALUES = "stepup.acrValues"
CONFIG_ALLOW_ENROLLMENT = "stepup.allowEnrollment"
CONFIG_ON_UNAVAILABLE = "stepup.onBridgeUnavailable"
#: User-session notes the authenticator writes after a verified assertion, mapped to claims
#: (note -> (claim, JSON type)). ``stepup.amr`` holds the bridge's ``amr`` list joined with
#: commas (e.g. ``otp``), so its claim is one string, not a JSON array. The claims are not named
#: ``acr``/``amr`` because Keycloak's own acr mapper already owns ``acr``.
SESSION_NOTE_CLAIMS = {
    "stepup.amr": ("stepup_amr", "String"),
    "stepup.acr": ("stepup_acr", "String"),
    "stepup.auth_time": ("stepup_auth_time", "long"),
}


@dataclass(frozen=True)
class InstallOptions:
    """Where to install the step-up and how the authenticator reaches the bridge.

    Admin login is one of two modes: ``admin_username`` + ``admin_password`` (a user of
    ``admin_realm``, through the ``admin-cli`` client), or ``admin_client_id`` +
    ``admin_client_secret`` (a confidential client of ``admin_realm`` with a service account
    holding realm-management's ``realm-admin``; set ``admin_realm`` to ``realm`` when that client
    lives in the managed realm).
    """

    #: Keycloak's base URL, e.g. ``https://sso.example.com`` (add ``/auth`` for old set-ups).
    server_url: str
    #: The realm that gets the step-up.
    realm: str
    #: Public base URL of the bridge (its OpenID issuer).
    bridge_issuer: str
    admin_username: str | None = None
    admin_password: str | None = field(default=None, repr=False)
    admin_client_id: str | None = None
    admin_client_secret: str | None = field(default=None, repr=False)
    #: Realm the admin account (or service-account client) belongs to.
    admin_realm: str = "master"
    #: Client id Keycloak uses at the bridge; default ``keycloak-<realm>``.
    bridge_client_id: str = ""
    #: Client secret at the bridge. Not given: install keeps the one already written to
    #: Keycloak, or generates one (``secrets.token_urlsafe(32)``) on the first run, so re-running
    #: install never rotates it by accident (see ``registered_check``). Given: it is written,
    #: replacing the old one.
    bridge_client_secret: str | None = field(default=None, repr=False)
    #: The bridge's keyed digest of a client secret, written beside each secret written (None:
    #: no check is kept, and a stale one is removed).
    secret_check: Callable[[str], str] | None = field(default=None, repr=False, compare=False)
    #: The digest of the secret the bridge holds now (None: it holds none). A Keycloak that
    #: shows the secret only masked keeps it where it is when every step carries this digest as
    #: its check; otherwise install writes a new secret, as nobody can read the old one back.
    registered_check: str | None = field(default=None, repr=False)
    #: Browser flow copied. Empty: the one the realm has bound now, so that the realm's own
    #: checks (WebAuthn, IdP redirects, conditions) stay in front of the step-up.
    source_flow: str = ""
    #: Alias of the copy that gets the step-up and is bound as the realm's browser flow.
    flow: str = "browser-stepup"
    #: ``acr_values`` the authenticator asks the bridge for (space separated); None: bridge default.
    acr_values: str | None = None
    #: Whether the bridge may enroll users it does not know yet (first TOTP set-up).
    allow_enrollment: bool = True
    #: None: the step-up is REQUIRED right after the password form (every login). A level N:
    #: the step-up sits in a CONDITIONAL sub-flow behind "Condition - Level of Authentication"
    #: with that level, so it runs only when a relying party asks for it (``acr_values`` or the
    #: ``claims`` parameter, mapped to level N by the realm's ACR-to-LoA mapping).
    conditional_loa: int | None = None
    #: ``loa-max-age`` of that condition in seconds (Keycloak's default 36000; 0: every time).
    loa_max_age: int = 36000
    #: Client scope carrying the step-up claims, added to every new client by default.
    client_scope: str = "stepup"
    #: The doors that get the step-up (a subset of ``DOORS``); doors left out are undone.
    cover: tuple[str, ...] = DOORS
    #: Copy of the bound reset-credentials flow that gets the step-up.
    reset_flow: str = "reset-credentials-stepup"
    #: Copy of the bound registration flow that gets the step-up.
    registration_flow: str = "registration-stepup"
    #: Flow with only the step-up, set as post login flow of every identity provider.
    broker_flow: str = "post-broker-stepup"
    #: Copy of the bound direct grant flow that gets the (refusing) step-up.
    direct_grant_flow: str = "direct-grant-stepup"
    #: Also add the client scope to every client that exists already (new ones get it anyway).
    existing_clients: bool = False
    #: The bridge's ``acr``; with ``conditional_loa`` it is mapped to that level in the realm's
    #: ACR-to-LoA mapping, so a client asking for it gets the bridge and an ``acr`` claim.
    bridge_acr: str | None = None
    #: TLS verification towards Keycloak: True, False, or a CA bundle path.
    verify_tls: bool | str = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "server_url", _base_url("server_url", self.server_url))
        object.__setattr__(self, "bridge_issuer", _base_url("bridge_issuer", self.bridge_issuer))
        for name in ("realm", "admin_realm", "flow", "client_scope"):
            if not getattr(self, name).strip():
                raise ProvisioningError(f"{name} must not be empty")
        if not self.bridge_client_id:
            object.__setattr__(self, "bridge_client_id", f"keycloak-{self.realm}")
        if self.uses_password and self.uses_client_credentials:
            raise ProvisioningError(
                "give either an admin user and its password, or an admin client id and its "
                "secret, not both"
            )
        if not (self.uses_password or self.uses_client_credentials):
            missing = ("its password (--admin-password, or KEYCLOAK_ADMIN_PASSWORD)"
                       if self.admin_username else
                       "its secret (--admin-client-secret, or KEYCLOAK_ADMIN_CLIENT_SECRET)"
                       if self.admin_client_id else "an admin user or an admin client id")
            raise ProvisioningError(
                "give either an admin user and its password, or an admin client id and its "
                f"secret: {missing} is missing"
            )
        if self.flow == DEFAULT_BROWSER_FLOW:
            raise ProvisioningError("flow must not be Keycloak's built-in 'browser' flow")
        if self.source_flow and self.flow == self.source_flow:
            raise ProvisioningError(f"flow must differ from source_flow ({self.flow!r})")
        if " " in self.client_scope:
            raise ProvisioningError(f"client_scope {self.client_scope!r} must not contain spaces")
        if self.conditional_loa is not None and self.conditional_loa < 2:
            raise ProvisioningError(
                "conditional_loa must be a level of 2 or more (level 1 is the password)"
            )
        if not self.cover:
            raise ProvisioningError("cover must name at least one door (or run uninstall)")
        unknown = sorted(set(self.cover) - set(DOORS))
        if unknown:
            raise ProvisioningError(
                f"unknown door(s) {', '.join(unknown)}; choose from {', '.join(DOORS)}"
            )
        object.__setattr__(self, "cover", tuple(d for d in DOORS if d in self.cover))
        if len(set(self.our_flows)) != len(self.our_flows):
            raise ProvisioningError("the flow aliases install creates must differ")
        if self.loa_max_age < 0:
            raise ProvisioningError("loa_max_age must be 0 or more seconds")

    @property
    def our_flows(self) -> list[str]:
        """The flows install creates (uninstall deletes them)."""
        return [self.flow, self.reset_flow, self.registration_flow, self.broker_flow,
                self.direct_grant_flow]

    @property
    def uses_password(self) -> bool:
        """True when the admin logs in as a user (password grant through ``admin-cli``)."""
        return bool(self.admin_username and self.admin_password)

    @property
    def uses_client_credentials(self) -> bool:
        """True when the admin is a service-account client (client-credentials grant)."""
        return bool(self.admin_client_id and self.admin_client_secret)

    @property
    def admin_account(self) -> str:
        """The admin identity in words, for error messages (never the secret)."""
        if self.uses_password:
            return f"admin account {self.admin_username!r} of realm {self.admin_realm!r}"
        return f"service account of client {self.admin_client_id!r} in realm {self.admin_realm!r}"

    def config_alias(self, flow: str) -> str:
        """Alias of the step-up's config in ``flow`` (aliases are unique per realm)."""
        suffix = "" if flow == self.flow else f"-{flow}"
        return f"{AUTHENTICATOR_ID}-{self.realm}{suffix}"

    @property
    def loa_config_alias(self) -> str:
        """Alias of the step-up level's condition config."""
        return f"stepup-loa-{self.realm}"

    @property
    def password_loa_config_alias(self) -> str:
        """Alias of the password level's (level 1) condition config."""
        return f"stepup-loa1-{self.realm}"

    @property
    def loa_subflow(self) -> str:
        """Alias of the conditional step-up sub-flow (flow aliases are unique per realm)."""
        return f"{self.flow} step-up"

    @property
    def password_subflow(self) -> str:
        """Alias of the level-1 sub-flow holding the password form in the conditional layout."""
        return f"{self.flow} password"

    @property
    def redirect_uri_prefixes(self) -> list[str]:
        """Where the bridge sends the browser back: the authenticator's refresh URL is one of
        these paths plus a per-login query, so the bridge registers them as prefixes."""
        # Percent-encoded as Keycloak writes the realm in its own URLs, a path segment whose
        # sub-delims, ':' and '@' stay as they are (its Encode.encodePathSegmentAsIs): the
        # refresh URL the authenticator sends has o'brien, zürich as z%C3%BCrich.
        base = f"{self.server_url}/realms/{quote(self.realm, safe=PATH_SEGMENT_SAFE)}/login-actions"
        return [f"{base}/{path}" for path in CALLBACK_PATHS]

    def secrets(self) -> tuple[str, ...]:
        """Every secret in these options, so error messages can be scrubbed of them."""
        values = (self.admin_password, self.admin_client_secret, self.bridge_client_secret)
        return tuple(v for v in values if v)


def _base_url(name: str, value: str) -> str:
    """An http(s) URL without trailing slash, so paths can be appended with ``/``."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProvisioningError(f"{name} must be an http(s) URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ProvisioningError(f"{name} must not have a query or fragment")
    return value.strip().rstrip("/")
