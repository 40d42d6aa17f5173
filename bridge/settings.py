"""Every ``STEPUP_*`` setting, its default and its check, in one place.

Settings come from (lowest to highest precedence): the defaults below, a TOML file named by
``STEPUP_CONFIG`` (keys are the variable names without the prefix, lower case), the
environment. A bad value raises :class:`ConfigError` with a one-line reason, and start-up stops.
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, urlsplit

from .text import fits_error_text

#: ``acr`` of every assertion unless ``STEPUP_ACR`` says otherwise (OpenID PAPE multi-factor).
DEFAULT_ACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
#: NIST SP 800-63B §5.2.2: no more than 100 consecutive failed attempts.
MAX_LOCKOUT_LIMIT = 100
#: Characters of ``STEPUP_TOTP_ISSUER``: apps show it on one line, and it is in every QR code
#: twice (the label and ``issuer=``).
TOTP_ISSUER_LIMIT = 40


class ConfigError(ValueError):
    """A setting has a bad value; the message is one line naming the setting."""


@dataclass(frozen=True)
class Settings:
    #: Public base URL of the bridge; the ``iss`` of every assertion.
    issuer: str = "http://127.0.0.1:5000"
    #: Folder for the SQLite file and the generated keys.
    data_dir: Path = field(default_factory=lambda: Path("instance").resolve())
    #: SQLAlchemy URL; empty means the embedded SQLite file in ``data_dir``.
    database_url: str = ""
    #: Consecutive failures (TOTP and recovery code together) before a user is locked.
    lockout_limit: int = 10
    #: Failed attempts from one client IP within ``ip_window`` seconds before it is refused.
    ip_limit: int = 50
    ip_window: int = 600
    #: ``acr`` claim of the assertions.
    acr: str = DEFAULT_ACR
    #: Lifetimes in seconds.
    request_uri_ttl: int = 60
    code_ttl: int = 60
    id_token_ttl: int = 300
    flow_ttl: int = 900
    #: Label prefix and ``issuer=`` of the otpauth URI shown at enrollment.
    totp_issuer: str = "Stepup"
    #: Where users get help (https:// page or mailto: address): a link in every page's
    #: footer, the same place each time (WCAG 3.2.6). Empty: no link.
    help_url: str = ""
    #: Seconds either side of now in which a refused TOTP code is recognised as coming from a
    #: device with a wrong clock, so the page can say so (0: never). Such codes never work.
    totp_search_window: int = 600
    #: Consecutive failed codes of one user that raise a ``failure_burst`` event (notified
    #: like a lockout, before it); 0: never.
    failure_burst: int = 3
    #: Reverse proxies in front of the bridge whose X-Forwarded-For/-Proto are trusted.
    trusted_proxies: int = 0
    #: Redis for the per-IP failure window (empty: the database holds it).
    redis_url: str = ""
    #: gunicorn for ``stepup serve``.
    workers: int = 2
    timeout: int = 30
    #: Server secrets, base64 (empty: generated into ``data_dir/keys/secrets.json``). The
    #: session and CSRF signing key and the HMAC pepper of recovery codes and client secrets
    #: are at least 32 bytes; encryption keys are ``id:key[,id:key…]``, 32 bytes each, the
    #: first one active. Never printed (``repr=False``).
    secret_key: str = field(default="", repr=False)
    pepper: str = field(default="", repr=False)
    encryption_keys: str = field(default="", repr=False)
    #: Notifications (DESIGN "Events, notifications and the help desk"). SMTP server as
    #: ``smtp://`` (plain), ``smtp+starttls://`` or ``smtps://`` (TLS) with optional
    #: ``user:password@``; empty: no e-mail. May hold a password: never printed.
    smtp_url: str = field(default="", repr=False)
    #: Sender address of the e-mails (empty: ``stepup@`` the issuer's host).
    smtp_from: str = ""
    smtp_timeout: int = 10
    #: Comma-separated receiver URLs (https, or http on localhost); empty: no webhooks.
    webhook_urls: str = ""
    #: Standard Webhooks signing secret, ``whsec_`` + base64 of 24 to 64 random bytes.
    webhook_secret: str = field(default="", repr=False)
    webhook_timeout: int = 10
    #: Comma-separated event names each channel sends (empty: all notified events).
    email_events: str = ""
    webhook_events: str = ""
    #: Seconds before the first retry of a failed delivery; doubles per attempt up to
    #: ``notify_retry_max``.
    notify_retry_base: int = 30
    notify_retry_max: int = 3600
    #: Seconds after an event when a channel still failing is given up (by default when the
    #: notice's "this wasn't me" link stops working): a dead letter, not retried for ever.
    notify_give_up: int = 7 * 86_400
    #: Seconds between two looks at the outbox by a node's sender.
    notify_poll: int = 5
    #: Seconds a help-desk API access token lives.
    admin_token_ttl: int = 300
    #: Seconds the "this wasn't me" link of a notice works, from the event.
    not_me_ttl: int = 7 * 86_400

    @property
    def smtp_sender(self) -> str:
        return self.smtp_from or f"stepup@{mail_domain(self.issuer)}"

    @property
    def webhook_url_list(self) -> list[str]:
        return [u.strip() for u in self.webhook_urls.split(",") if u.strip()]

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'stepup.db'}"

    @property
    def behind_tls(self) -> bool:
        return self.issuer.startswith("https://")


_INTS = {
    "lockout_limit": (1, MAX_LOCKOUT_LIMIT),
    "ip_limit": (1, 100_000),
    "ip_window": (1, 86_400),
    "request_uri_ttl": (5, 600),
    "code_ttl": (5, 60),
    "id_token_ttl": (30, 300),
    "flow_ttl": (60, 3600),
    "workers": (1, 64),
    "trusted_proxies": (0, 5),
    "timeout": (5, 600),
    "totp_search_window": (0, 3600),
    "failure_burst": (0, MAX_LOCKOUT_LIMIT),
    "smtp_timeout": (1, 120),
    "webhook_timeout": (1, 120),
    "notify_retry_base": (1, 3600),
    "notify_retry_max": (1, 86_400),
    "notify_give_up": (3600, 90 * 86_400),
    "notify_poll": (1, 60),
    "not_me_ttl": (600, 30 * 86_400),
    "admin_token_ttl": (30, 3600),
}
_STRINGS = ("issuer", "database_url", "acr", "totp_issuer", "help_url", "redis_url", "secret_key",
            "pepper", "encryption_keys", "smtp_url", "smtp_from", "webhook_urls",
            "webhook_secret", "email_events", "webhook_events")
#: What redis-py's from_url takes.
REDIS_SCHEMES = ("redis", "rediss", "unix")
#: Settings that are secrets: unset, they come from keys/secrets.json (bridge.keyring).
SECRET_NAMES = ("secret_key", "pepper", "encryption_keys")
#: Fewest bytes of the session key and the pepper: 256 bits, like the keys they protect.
MIN_SECRET_BYTES = 32


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
) -> Settings:
    """Build :class:`Settings` from a config file, the environment and explicit overrides."""
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    if config_path := environ.get("STEPUP_CONFIG"):
        raw.update(_read_file(Path(config_path)))
    for name in (*_INTS, *_STRINGS, "data_dir"):
        if (value := environ.get(f"STEPUP_{name.upper()}")) is not None:
            raw[name] = value
    raw.update(overrides or {})
    unknown = set(raw) - {*_INTS, *_STRINGS, "data_dir"}
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    for name in SECRET_NAMES:
        # A secret store's empty answer must not become this node's own made-up secret.
        if name in raw and isinstance(raw[name], str) and not raw[name].strip():
            raise ConfigError(f"STEPUP_{name.upper()} is set but empty: give its value, or "
                              "unset it to use keys/secrets.json in the data folder")
    values: dict[str, object] = {}
    for name, value in raw.items():
        if name in _INTS:
            values[name] = _int(name, value, *_INTS[name])
        elif name == "data_dir":
            values[name] = _data_dir(value)
        elif isinstance(value, str):
            values[name] = value.strip()
        else:  # a TOML list or number where text goes (webhook_urls, encryption_keys: commas)
            kind = _TOML_KINDS.get(type(value).__name__, type(value).__name__)
            raise ConfigError(f"setting {name} must be a quoted string, not a TOML {kind}")
    settings = Settings(**values)  # type: ignore[arg-type]
    _check_issuer(settings.issuer)
    _check_database_url(settings.database_url)
    # acr_values lists acrs with spaces between them, and a refusal's error_description
    # names the bridge's: no space, quote or backslash (RFC 6749 §5.2).
    if " " in settings.acr or not fits_error_text(settings.acr, 255):
        raise ConfigError("STEPUP_ACR must be 1 to 255 printable ASCII characters, without "
                          "spaces, quotes or backslashes")
    if not (0 < len(settings.totp_issuer) <= TOTP_ISSUER_LIMIT
            and settings.totp_issuer.isprintable()):
        raise ConfigError(f"STEPUP_TOTP_ISSUER must be 1 to {TOTP_ISSUER_LIMIT} printable "
                          "characters")
    if settings.help_url:
        _check_help_url(settings.help_url)
    for name in ("secret_key", "pepper"):
        if value := getattr(settings, name):
            decode_key(value, f"STEPUP_{name.upper()}")
    if settings.encryption_keys:
        parse_encryption_keys(settings.encryption_keys)
    if settings.redis_url:
        _check_redis_url(settings.redis_url)
    _check_notifications(settings)
    return settings


#: STEPUP_ variables that are no setting but are read elsewhere (the config file's path, the
#: CLI's client secret, the test suite's databases and browser).
_NOT_SETTINGS = frozenset({"STEPUP_CONFIG", "STEPUP_CLIENT_SECRET", "STEPUP_TEST_DATABASES",
                           "STEPUP_TEST_POSTGRES_URL", "STEPUP_CHROMIUM"})


def settings_warnings(environ: Mapping[str, str]) -> list[str]:
    """What to say at start about settings that work but should not stay as they are: each
    ``STEPUP_`` variable that is no setting (a typo leaves the setting it meant at its default,
    silently), with the setting it looks like; a config file with secrets that others may read."""
    known = [name.upper() for name in (*_INTS, *_STRINGS, "data_dir")]
    said = _open_config_file(environ.get("STEPUP_CONFIG"))
    for variable in sorted(environ):
        name = variable.removeprefix("STEPUP_")
        if name != variable and name not in known and variable not in _NOT_SETTINGS:
            like = difflib.get_close_matches(name, known, n=1)  # without the common prefix
            said.append(f"{variable} is not a setting and is ignored"
                        + (f" (did you mean STEPUP_{like[0]}?)" if like else ""))
    return said


#: Settings whose value is a secret, or is a URL that may hold a password.
_SECRET_SETTINGS = (*SECRET_NAMES, "webhook_secret")
_URL_SETTINGS = ("database_url", "smtp_url", "redis_url")


def _open_config_file(config_path: str | None) -> list[str]:
    """A warning for a config file that holds a secret and that users other than its owner and
    group may read (a default umask's 0644), or one that any of them may change (its settings
    are the bridge's): ssh refuses such a key file; the bridge, started by a service manager,
    says so instead of stopping."""
    if not config_path:
        return []
    path = Path(config_path)
    try:
        mode = path.stat().st_mode
        raw = _read_file(path) if mode & 0o006 else {}
    except (OSError, ConfigError):
        return []  # load_settings says what is wrong with it
    said = []
    if mode & 0o002:
        said.append(f"STEPUP_CONFIG {path} may be changed by every user of this machine: "
                    f"chmod o-w {path}")
    held = [name for name in _SECRET_SETTINGS if raw.get(name)]
    held += [name for name in _URL_SETTINGS
             if isinstance(raw.get(name), str) and _password(raw[name])]
    if held and mode & 0o004:
        said.append(f"STEPUP_CONFIG {path} holds {', '.join(held)} and every user of this "
                    f"machine may read it: chmod o-r {path} (or keep the secrets in the "
                    "environment)")
    return said


def _password(url: str) -> bool:
    """Whether a URL holds a password: in its user information, or (libpq) in its query."""
    try:
        parts = urlsplit(url)
    except ValueError:  # load_settings says what is wrong with it
        return False
    return bool(parts.password) or any(
        "password" in key.lower() for key, _ in parse_qsl(parts.query))


def _data_dir(value: object) -> Path:
    if isinstance(value, Path):  # given by the caller (create_app's overrides)
        value = str(value)
    if not isinstance(value, str) or not value.strip():  # "" would be the current folder
        raise ConfigError("STEPUP_DATA_DIR must be a folder's path (unset it for the default)")
    try:
        return Path(value.strip()).expanduser().resolve()
    except RuntimeError:  # "~nobody/x": no such user's home
        raise ConfigError("STEPUP_DATA_DIR starts with ~ but names no user's home "
                          "folder") from None


def _url_parts(url: str, name: str, *, at_after_host: bool = False) -> SplitResult:
    """The URL's parts with its port read, or a one-line reason naming the setting, not the
    value: a password may be in it, and an unencoded "/", "#" or "?" in one ends the host
    part early, so that urlsplit reads the user as the host and the start of the password as
    the port (or fails on it). An "@" after the host is such a split unless ``at_after_host``
    (a mailto: address); one in a path is written %40."""
    try:
        parts = urlsplit(url)
        valid = parts.port != 0 and (at_after_host or "@" not in (
            parts.path + parts.query + parts.fragment))
    except ValueError:  # a port out of range, or not a number
        valid = False
    if not valid:
        raise ConfigError(f"{name} is not a valid URL: check its host and port, and "
                          "percent-encode any '/', '#', '?' or '@' in a user or "
                          "password")
    return parts


def _check_redis_url(url: str) -> None:
    parts = _url_parts(url, "STEPUP_REDIS_URL")
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError("STEPUP_REDIS_URL must start with redis://, rediss:// or unix://")
    if not (parts.path if parts.scheme == "unix" else parts.hostname):
        raise ConfigError(f"STEPUP_REDIS_URL is not a valid {parts.scheme}:// URL: it names "
                          "no host")


_TOML_KINDS = {"list": "array", "int": "integer", "float": "float", "bool": "boolean",
               "dict": "table"}


def decode_key(value: str, name: str, size: int | None = None) -> bytes:
    """A base64 (standard or URL-safe) secret of at least ``MIN_SECRET_BYTES`` (or exactly
    ``size``) bytes; the error names the setting, never the value."""
    text = value.strip().translate(_URLSAFE)
    try:  # validate: a stray character must not be dropped in silence (a different key)
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise ConfigError(f"{name} is not valid base64") from None
    if size is not None and len(key) != size:
        raise ConfigError(f"{name} must be {size} bytes of base64, got {len(key)}")
    if size is None and len(key) < MIN_SECRET_BYTES:
        raise ConfigError(f"{name} is too weak: at least {MIN_SECRET_BYTES} random bytes of "
                          f"base64 (openssl rand -base64 32), got {len(key)}")
    return key


_URLSAFE = str.maketrans("-_", "+/")


#: Longest encryption key id an error quotes: shorter than any 32-byte key in base64 (43 or 44
#: characters), so an error that names an id never shows a key written in its place.
KEY_ID_LIMIT = 40


def parse_encryption_keys(value: str) -> dict[str, bytes]:
    """``id:base64key[,id:base64key…]`` → {id: key}, in order (the first is active)."""
    keys: dict[str, bytes] = {}
    for item in value.split(","):
        kid, sep, key = item.strip().partition(":")
        # An id prefixes each sealed value, up to the first dot: one with a dot never opens.
        if not sep or not kid.strip() or "." in kid or kid in keys:
            raise ConfigError("STEPUP_ENCRYPTION_KEYS must be id:base64key[,id:base64key...] "
                              "with distinct ids, none with a dot")
        # A long "id" may be a key written before its id ("base64key:id"): never quoted.
        named = (f"key {kid!r}" if len(kid) <= KEY_ID_LIMIT else
                 f"key with an id of {len(kid)} characters (is a key written before its id?)")
        keys[kid] = decode_key(key, f"STEPUP_ENCRYPTION_KEYS {named}", size=32)
    return keys


def _read_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"STEPUP_CONFIG: cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError:
        raise ConfigError(f"STEPUP_CONFIG: {path} is not UTF-8 text (TOML files are)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"STEPUP_CONFIG: {path} is not valid TOML: {e}") from e


def _int(name: str, value: object, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"STEPUP_{name.upper()} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"STEPUP_{name.upper()} must be between {low} and {high}, got {number}")
    return number


def _check_database_url(url: str) -> None:
    if not url:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
    except (ArgumentError, ValueError):  # the message would quote the URL's parts: not shown
        raise ConfigError("STEPUP_DATABASE_URL is not a database URL "
                          "(e.g. postgresql+psycopg://user@host/db)") from None
    if "@" in (parsed.host or ""):
        # A password with an unencoded "@": the rest of it would be taken for the host, and
        # the driver's "cannot resolve host" would print it.
        raise ConfigError("STEPUP_DATABASE_URL: an '@' in the user or password must be written "
                          "%40 (percent-encoded)")
    if backend == "postgres" or parsed.drivername in ("postgresql", "postgresql+psycopg2"):
        # libpq's spelling, and SQLAlchemy's default driver: the bridge installs psycopg 3.
        raise ConfigError("STEPUP_DATABASE_URL: write it postgresql+psycopg://… (psycopg 3, "
                          "which the bridge's 'postgres' extra installs)")
    if backend not in ("postgresql", "sqlite"):
        raise ConfigError(f"STEPUP_DATABASE_URL: {backend} is not supported "
                          "(PostgreSQL or SQLite)")
    if backend == "sqlite" and (parsed.database in (None, "", ":memory:")
                                or parsed.query.get("mode") == "memory"):
        # Each process, each pooled connection even, would get its own empty database.
        raise ConfigError("STEPUP_DATABASE_URL: an SQLite database in memory keeps nothing; "
                          "name a file (sqlite:////path/stepup.db), or leave it unset")


#: A host name's label (RFC 1123 §2.1; "_" as container and service names have it).
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?", re.IGNORECASE)


def _check_issuer(issuer: str) -> None:
    # OpenID Connect Discovery §3: https, no query or fragment (http allowed for local use).
    if any(c.isspace() or not c.isprintable() for c in issuer):
        raise ConfigError("STEPUP_ISSUER must not contain spaces or control characters")
    if "@" in issuer:
        # Before anything quotes the value: user information may hold a password, and an
        # unencoded "/" in one splits the URL elsewhere. One in a path is written %40.
        raise ConfigError("STEPUP_ISSUER must not contain '@': no user information (an '@' "
                          "in a path is written %40)")
    try:
        parts = urlsplit(issuer)
        port = parts.port  # out of range: ValueError
    except ValueError:
        raise ConfigError(f"STEPUP_ISSUER is not a valid URL: {issuer!r}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"STEPUP_ISSUER must be an http(s) URL, got {issuer!r}")
    # An empty query or fragment ("…#") is still one: every endpoint URL would carry it.
    if "?" in issuer or "#" in issuer or issuer.endswith("/"):
        raise ConfigError("STEPUP_ISSUER must have no query, fragment or trailing slash")
    if port == 0 or parts.netloc.endswith(":"):
        raise ConfigError("STEPUP_ISSUER must be scheme://host[:port][/path], with a port "
                          f"from 1 to 65535, got {issuer!r}")
    host = parts.hostname
    labels = (host[:-1] if host.endswith(".") else host).split(".")  # one root dot at most
    last = labels[-1]
    if last.isdigit() or re.fullmatch(r"0[xX][0-9a-fA-F]*", last):
        # A host ending in a number is an IPv4 address to a browser (WHATWG URL: "ends in a
        # number"), in any spelling: only the plain dotted one, or nothing.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ConfigError(f"STEPUP_ISSUER's host is not a valid IPv4 address: {host!r}"
                              ) from None
    elif ":" not in host and host.isascii() and not all(
            _LABEL.fullmatch(label) for label in labels):
        raise ConfigError(f"STEPUP_ISSUER's host is not a valid domain name: {host!r}")
    try:
        mail_domain(issuer)
    except UnicodeError:
        raise ConfigError("STEPUP_ISSUER's host is not a valid domain name") from None


def mail_domain(issuer: str) -> str:
    """The issuer's host as mail headers take it (the default sender, Message-IDs): ASCII
    (:func:`_ascii_domain`), which a mail server without SMTPUTF8 accepts too."""
    host = urlsplit(issuer).hostname or "localhost"
    try:  # an address: RFC 5321 §4.1.3's literal (a bare ::1 makes an empty From: <>)
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return f"[IPv6:{address.compressed}]" if address.version == 6 else f"[{address}]"
    return _ascii_domain(host)


def _ascii_domain(host: str) -> str:
    """A domain name as mail takes it without SMTPUTF8: an internationalised one as IDNA 2008
    with UTS 46 mapping, as browsers and requests write it (Python's own codec is IDNA 2003:
    straße would become strasse, another domain). UnicodeError if it is not one."""
    if host.isascii():
        return host
    import idna  # only for such a host: its tables cost every worker 2 MiB

    return idna.encode(host, uts46=True).decode("ascii")


def _check_help_url(url: str) -> None:
    # A link every user may follow from a sign-in page: https, or an e-mail address.
    parts = _url_parts(url, "STEPUP_HELP_URL", at_after_host=True)
    web = parts.scheme == "https" and parts.netloc
    mail = parts.scheme == "mailto" and "@" in parts.path
    if (not (web or mail) or len(url) > 500
            or any(c.isspace() or not c.isprintable() for c in url)):
        raise ConfigError("STEPUP_HELP_URL must be an https:// URL or a mailto: address")


#: Schemes of ``STEPUP_SMTP_URL``: how the connection is protected, and the default port.
SMTP_SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


def is_local_host(host: str | None) -> bool:
    """This machine, by name or loopback address: a local program, not the network. An
    IPv4-mapped address (``::ffff:127.0.0.1``, a dual-stack listener's IPv4 peer) is judged by
    its IPv4 address on every Python, as 3.13 does."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def event_names(value: str, name: str) -> frozenset[str]:
    """A comma-separated list of notified event names (empty: all of them)."""
    from .store import NOTIFIED_EVENTS

    names = frozenset(n.strip() for n in value.split(",") if n.strip())
    if value.strip() and not names:  # " , ": meant as a list, and "all" would be a surprise
        raise ConfigError(f"{name} lists no event (leave it empty for all of them)")
    if unknown := names - NOTIFIED_EVENTS:
        raise ConfigError(f"{name}: unknown event {sorted(unknown)[0]!r} (known: "
                          f"{', '.join(sorted(NOTIFIED_EVENTS))})")
    return names or NOTIFIED_EVENTS


def _check_notifications(settings: Settings) -> None:
    if settings.smtp_url:
        parts = _url_parts(settings.smtp_url, "STEPUP_SMTP_URL")
        if parts.scheme not in SMTP_SCHEMES:
            raise ConfigError("STEPUP_SMTP_URL must start with smtp://, smtp+starttls:// or "
                              "smtps://")
        if not parts.hostname:
            raise ConfigError("STEPUP_SMTP_URL has no host")
        if parts.scheme == "smtp" and parts.username and not is_local_host(parts.hostname):
            # The login (the bridge logs in whenever a user is named), and the "this wasn't
            # me" links the mails carry, would cross the network in clear.
            raise ConfigError("STEPUP_SMTP_URL: a user and password need smtp+starttls:// or "
                              "smtps:// (plain smtp:// only to a server on this host)")
    if settings.smtp_from and not is_email(settings.smtp_from):
        raise ConfigError("STEPUP_SMTP_FROM must be an e-mail address")
    for url in settings.webhook_url_list:
        parts = _url_parts(url, "STEPUP_WEBHOOK_URLS has an entry that")
        # A backslash is no URL character (RFC 3986), and requests reads a host around it
        # where urlsplit reads another: "http://hooks.example\\@localhost/" would pass the
        # localhost check below and go to hooks.example in clear.
        if (any(c.isspace() or not c.isprintable() or c == "\\" for c in url)
                or not parts.hostname):
            raise ConfigError("STEPUP_WEBHOOK_URLS has an entry that is not a URL")
        if parts.scheme != "https" and not (parts.scheme == "http"
                                            and is_local_host(parts.hostname)):
            raise ConfigError(f"STEPUP_WEBHOOK_URLS: {parts.scheme}://{parts.hostname} must use "
                              "https (http only on localhost)")
    if settings.webhook_url_list or settings.webhook_secret:  # a bad one, found before use
        webhook_keys(settings.webhook_secret)
    event_names(settings.email_events, "STEPUP_EMAIL_EVENTS")
    event_names(settings.webhook_events, "STEPUP_WEBHOOK_EVENTS")
    if settings.notify_retry_max < settings.notify_retry_base:
        raise ConfigError("STEPUP_NOTIFY_RETRY_MAX must not be below STEPUP_NOTIFY_RETRY_BASE")
    if settings.notify_give_up < settings.notify_retry_max:
        raise ConfigError("STEPUP_NOTIFY_GIVE_UP must not be below STEPUP_NOTIFY_RETRY_MAX")


def webhook_keys(value: str) -> list[bytes]:
    """The HMAC keys of ``STEPUP_WEBHOOK_SECRET``: one Standard Webhooks secret (``whsec_`` +
    base64 of 24 to 64 bytes), or several separated by spaces (or commas) while receivers move
    from one to the next (each delivery is signed with every one)."""
    name = "STEPUP_WEBHOOK_SECRET"
    given = value.replace(",", " ").split()
    if not given or not all(secret.startswith("whsec_") for secret in given):
        raise ConfigError(f"{name} must be whsec_ + base64 of 24 to 64 random bytes (it is "
                          "needed once STEPUP_WEBHOOK_URLS is set)")
    keys = []
    for secret in given:
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            raise ConfigError(f"{name} is not valid base64 after whsec_") from None
        if not 24 <= len(key) <= 64:
            raise ConfigError(f"{name} must hold 24 to 64 bytes, got {len(key)}")
        keys.append(key)
    return keys


#: An e-mail address as the bridge accepts one: ASCII, one @, a dotted domain, ≤ 254 chars.
#: Matched in full: "$" would also match before a final newline, which then ends the mail's
#: headers early (and overflows the 254-character column on PostgreSQL).
_EMAIL = re.compile(r"(?=.{3,254}\Z)[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
                    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")


def mail_address(value: str) -> str | None:
    """``value`` as the bridge mails it, None if it mails no such address (:func:`is_email`).
    A domain in Unicode ("müller.example", as Keycloak keeps it) goes out in its ASCII form
    ("xn--mller-kva.example"), which every mail server routes; the part before the "@" must
    be ASCII (mail servers without SMTPUTF8 refuse anything else)."""
    local, at, domain = value.rpartition("@")
    if at and not domain.isascii() and len(value) <= 254:
        try:
            value = f"{local}@{_ascii_domain(domain)}"
        except UnicodeError:  # idna's IDNAError is one
            return None
    return value if is_email(value) else None


def is_email(value: str) -> bool:
    """No RFC 2047 encoded word (``=?utf-8?q?…?=``) either: the mail parser decodes one even
    in a local part, so such an address would be mailed to another mailbox, shown as a list,
    or make every attempt fail. (Dots in a row, as old Japanese mobile addresses have, go out
    as given.)"""
    return bool(_EMAIL.fullmatch(value)) and "=?" not in value
