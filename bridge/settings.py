"""Every ``STEPUP_*`` setting, its default and its check, in one place.

Settings come from (lowest to highest precedence): the defaults below, a TOML file named by
``STEPUP_CONFIG`` (keys are the variable names without the prefix, lower case), the
environment. A bad value raises :class:`ConfigError` with a one-line reason, and start-up stops.
"""

from __future__ import annotations

import base64
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

#: ``acr`` of every assertion unless ``STEPUP_ACR`` says otherwise (OpenID PAPE multi-factor).
DEFAULT_ACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
#: NIST SP 800-63B §5.2.2: no more than 100 consecutive failed attempts.
MAX_LOCKOUT_LIMIT = 100


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
    #: Seconds either side of now in which a refused TOTP code is recognised as coming from a
    #: device with a wrong clock, so the page can say so (0: never). Such codes never work.
    totp_search_window: int = 600
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
}
_STRINGS = ("issuer", "database_url", "acr", "totp_issuer", "redis_url", "secret_key", "pepper",
            "encryption_keys")
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
    values: dict[str, object] = {}
    for name, value in raw.items():
        if name in _INTS:
            values[name] = _int(name, value, *_INTS[name])
        elif name == "data_dir":
            values[name] = Path(str(value)).expanduser().resolve()
        else:
            values[name] = str(value).strip()
    settings = Settings(**values)  # type: ignore[arg-type]
    _check_issuer(settings.issuer)
    _check_database_url(settings.database_url)
    if not settings.acr:
        raise ConfigError("STEPUP_ACR must not be empty")
    for name in ("secret_key", "pepper"):
        if value := getattr(settings, name):
            decode_key(value, f"STEPUP_{name.upper()}")
    if settings.encryption_keys:
        parse_encryption_keys(settings.encryption_keys)
    return settings


def decode_key(value: str, name: str, size: int | None = None) -> bytes:
    """A base64 (standard or URL-safe) secret of at least ``MIN_SECRET_BYTES`` (or exactly
    ``size``) bytes; the error names the setting, never the value."""
    text = value.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise ConfigError(f"{name} is not valid base64") from None
    if size is not None and len(key) != size:
        raise ConfigError(f"{name} must be {size} bytes of base64, got {len(key)}")
    if size is None and len(key) < MIN_SECRET_BYTES:
        raise ConfigError(f"{name} is too weak: at least {MIN_SECRET_BYTES} random bytes of "
                          f"base64 (openssl rand -base64 32), got {len(key)}")
    return key


def parse_encryption_keys(value: str) -> dict[str, bytes]:
    """``id:base64key[,id:base64key…]`` → {id: key}, in order (the first is active)."""
    keys: dict[str, bytes] = {}
    for item in value.split(","):
        kid, sep, key = item.strip().partition(":")
        if not sep or not kid or kid in keys:
            raise ConfigError("STEPUP_ENCRYPTION_KEYS must be id:base64key[,id:base64key...] "
                              "with distinct ids")
        keys[kid] = decode_key(key, f"STEPUP_ENCRYPTION_KEYS key {kid!r}", size=32)
    return keys


def _read_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"STEPUP_CONFIG: cannot read {path}: {e.strerror}") from e
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
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise ConfigError("STEPUP_DATABASE_URL is not a database URL "
                          "(e.g. postgresql+psycopg://user@host/db)") from None
    if backend not in ("postgresql", "sqlite"):
        raise ConfigError(f"STEPUP_DATABASE_URL: {backend} is not supported "
                          "(PostgreSQL or SQLite)")


def _check_issuer(issuer: str) -> None:
    # OpenID Connect Discovery §3: https, no query or fragment (http allowed for local use).
    if any(c.isspace() or not c.isprintable() for c in issuer):
        raise ConfigError("STEPUP_ISSUER must not contain spaces or control characters")
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigError(f"STEPUP_ISSUER must be an http(s) URL, got {issuer!r}")
    if parts.query or parts.fragment or issuer.endswith("/"):
        raise ConfigError("STEPUP_ISSUER must have no query, fragment or trailing slash")
