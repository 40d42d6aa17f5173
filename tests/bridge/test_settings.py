"""``STEPUP_*`` settings: defaults, TOML file < environment < overrides, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import create_app
from bridge.settings import (
    DEFAULT_ACR,
    MAX_LOCKOUT_LIMIT,
    ConfigError,
    Settings,
    load_settings,
    settings_warnings,
)


def test_defaults():
    settings = load_settings(environ={})
    assert settings == Settings(data_dir=settings.data_dir)
    assert settings.lockout_limit == 10
    assert settings.acr == DEFAULT_ACR
    assert settings.issuer == "http://127.0.0.1:5000"
    assert settings.database_url == ""
    assert settings.database == f"sqlite:///{settings.data_dir / 'stepup.db'}"
    assert settings.data_dir == Path("instance").resolve()
    assert settings.code_ttl <= 60 and settings.request_uri_ttl <= 60
    assert settings.id_token_ttl <= 300
    assert not settings.behind_tls
    assert MAX_LOCKOUT_LIMIT == 100


def test_environment_names(tmp_path):
    settings = load_settings(environ={
        "STEPUP_ISSUER": "https://bridge.example",
        "STEPUP_DATA_DIR": str(tmp_path),
        "STEPUP_DATABASE_URL": "postgresql+psycopg://db/stepup",
        "STEPUP_LOCKOUT_LIMIT": " 7 ",
        "STEPUP_ACR": "urn:example:mfa",
    })
    assert settings.issuer == "https://bridge.example"
    assert settings.behind_tls
    assert settings.data_dir == tmp_path.resolve()
    assert settings.database == "postgresql+psycopg://db/stepup"
    assert settings.lockout_limit == 7
    assert settings.acr == "urn:example:mfa"


def _config(tmp_path, text: str) -> dict[str, str]:
    path = tmp_path / "stepup.toml"
    path.write_text(text)
    return {"STEPUP_CONFIG": str(path)}


def test_config_file_sets_values(tmp_path):
    environ = _config(tmp_path, 'issuer = "https://file.example"\nlockout_limit = 5\n'
                                'acr = "urn:file"\n')
    settings = load_settings(environ=environ)
    assert (settings.issuer, settings.lockout_limit, settings.acr) == (
        "https://file.example", 5, "urn:file")


def test_environment_beats_config_file(tmp_path):
    environ = _config(tmp_path, 'issuer = "https://file.example"\nlockout_limit = 5\n'
                                'acr = "urn:file"\n')
    environ |= {"STEPUP_LOCKOUT_LIMIT": "8", "STEPUP_ISSUER": "https://env.example"}
    settings = load_settings(environ=environ)
    assert settings.lockout_limit == 8
    assert settings.issuer == "https://env.example"
    assert settings.acr == "urn:file"  # not set in the environment: the file's value stays


def test_overrides_beat_environment(tmp_path):
    environ = _config(tmp_path, "lockout_limit = 5\n") | {"STEPUP_LOCKOUT_LIMIT": "8"}
    assert load_settings(environ=environ, overrides={"lockout_limit": 3}).lockout_limit == 3


def test_create_app_reads_the_environment_it_is_given(tmp_path):
    app = create_app({"data_dir": tmp_path}, environ={"STEPUP_LOCKOUT_LIMIT": "4",
                                                      "STEPUP_ISSUER": "https://b.example"})
    bridge = app.extensions["stepup"]
    assert bridge.settings.lockout_limit == 4
    assert bridge.challenge.policy.lockout_limit == 4
    assert bridge.challenge.policy.issuer == "https://b.example"


@pytest.mark.parametrize("limit", [1, 10, MAX_LOCKOUT_LIMIT])
def test_lockout_limit_in_range(limit):
    assert load_settings(environ={"STEPUP_LOCKOUT_LIMIT": str(limit)}).lockout_limit == limit


BAD_ENVIRONMENTS = [
    ({"STEPUP_LOCKOUT_LIMIT": "101"}, "STEPUP_LOCKOUT_LIMIT"),
    ({"STEPUP_LOCKOUT_LIMIT": "1000"}, "STEPUP_LOCKOUT_LIMIT"),
    ({"STEPUP_LOCKOUT_LIMIT": "0"}, "STEPUP_LOCKOUT_LIMIT"),
    ({"STEPUP_LOCKOUT_LIMIT": "-1"}, "STEPUP_LOCKOUT_LIMIT"),
    ({"STEPUP_LOCKOUT_LIMIT": "ten"}, "STEPUP_LOCKOUT_LIMIT"),
    ({"STEPUP_LOCKOUT_LIMIT": "5.5"}, "STEPUP_LOCKOUT_LIMIT"),
    ({"STEPUP_LOCKOUT_LIMIT": ""}, "STEPUP_LOCKOUT_LIMIT"),
    ({"STEPUP_LOCKOUT_LIMIT": "10\nSTEPUP_X=1"}, "STEPUP_LOCKOUT_LIMIT"),
    ({"STEPUP_IP_LIMIT": "0"}, "STEPUP_IP_LIMIT"),
    ({"STEPUP_CODE_TTL": "600"}, "STEPUP_CODE_TTL"),
    ({"STEPUP_ID_TOKEN_TTL": "3600"}, "STEPUP_ID_TOKEN_TTL"),
    ({"STEPUP_ISSUER": "ftp://bridge.example"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "bridge.example"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://bridge.example/"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://bridge.example?x=1"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://bridge.example#x"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "http://127.0.0.1:6356#"}, "STEPUP_ISSUER"),  # an empty fragment
    ({"STEPUP_ISSUER": "https://bridge.example?"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://u:p@bridge.example"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://bridge.example:99999"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://bridge.example:0"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://-bad-.example"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://bad..example"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://[::1"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://bridge.example.."}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://bridge.example:"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://bridge.example\nhttps://evil.example"}, "STEPUP_ISSUER"),
    ({"STEPUP_ACR": "   "}, "STEPUP_ACR"),
    # acr_values separates acrs with spaces; an error_description may not quote " or \
    ({"STEPUP_ACR": "urn:a b"}, "STEPUP_ACR"),
    ({"STEPUP_ACR": 'urn:x"y'}, "STEPUP_ACR"),
    ({"STEPUP_ACR": "urn:x\\y"}, "STEPUP_ACR"),
    ({"STEPUP_ACR": "urn:\u00e9"}, "STEPUP_ACR"),
    ({"STEPUP_ACR": "u" * 256}, "STEPUP_ACR"),
    ({"STEPUP_TOTP_ISSUER": ""}, "STEPUP_TOTP_ISSUER"),
    ({"STEPUP_TOTP_ISSUER": "I" * 41}, "STEPUP_TOTP_ISSUER"),
    ({"STEPUP_TOTP_ISSUER": "Acme\x07IT"}, "STEPUP_TOTP_ISSUER"),
    # Found by review: accepted, a traceback, or urlsplit's words without the setting's name.
    ({"STEPUP_ISSUER": "http://1.2.3.4.5"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://999.999.999.999"}, "STEPUP_ISSUER"),
    ({"STEPUP_HELP_URL": "https://[help.example/"}, "STEPUP_HELP_URL"),
    ({"STEPUP_HELP_URL": "https://help.example:99999/"}, "STEPUP_HELP_URL"),
    ({"STEPUP_SMTP_URL": "smtps://[mail.example"}, "STEPUP_SMTP_URL"),
    ({"STEPUP_WEBHOOK_URLS": "https://[hooks.example/x"}, "STEPUP_WEBHOOK_URLS"),
    ({"STEPUP_WEBHOOK_URLS": "https://hooks.example:99999/x"}, "STEPUP_WEBHOOK_URLS"),
    ({"STEPUP_WEBHOOK_URLS": "https://hooks.example:abc/x"}, "STEPUP_WEBHOOK_URLS"),
    ({"STEPUP_REDIS_URL": "redis://[redis.example"}, "STEPUP_REDIS_URL"),
    ({"STEPUP_REDIS_URL": "redis://redis.example:99999/0"}, "STEPUP_REDIS_URL"),
    ({"STEPUP_REDIS_URL": "redis:///0"}, "STEPUP_REDIS_URL"),
    ({"STEPUP_ISSUER": "https://0x7f.1"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://1.2.3.0x4"}, "STEPUP_ISSUER"),
    ({"STEPUP_ISSUER": "https://bridge.example.123"}, "STEPUP_ISSUER"),
    ({"STEPUP_REDIS_URL": "redis://redis.example:0/0"}, "STEPUP_REDIS_URL"),
    ({"STEPUP_SMTP_URL": "smtps://mail.example:0"}, "STEPUP_SMTP_URL"),
    ({"STEPUP_HELP_URL": "https://help.example:0/"}, "STEPUP_HELP_URL"),
    ({"STEPUP_WEBHOOK_URLS": "https://hooks.example:0/x"}, "STEPUP_WEBHOOK_URLS"),
    ({"STEPUP_DATA_DIR": "~no-such-user-of-stepup/data"}, "STEPUP_DATA_DIR"),
    ({"STEPUP_DATA_DIR": " "}, "STEPUP_DATA_DIR"),
]


@pytest.mark.parametrize(("environ", "name"), BAD_ENVIRONMENTS)
def test_bad_value_is_a_one_line_config_error(environ, name):
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    message = str(caught.value)
    assert name in message
    assert "\n" not in message and "\r" not in message
    assert message.strip()


@pytest.mark.parametrize("url", [
    "redis://:s3cr/etpw@redis.example:6379/0", "redis://:s3cr#etpw@redis.example:6379/0",
    "redis://:s3cr?etpw@redis.example:6379/0", "redis://:1234/etpw@redis.example/0"])
def test_a_redis_url_with_an_unencoded_password_is_refused_without_it(url):
    """A "/", "#", "?" or "@" in the password ends the host part early: redis-py's error
    quoted the start of the password as a port (found by review)."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"STEPUP_REDIS_URL": url})
    message = str(caught.value)
    assert "STEPUP_REDIS_URL" in message and "percent-encode" in message
    assert "s3cr" not in message and "etpw" not in message and "1234" not in message


@pytest.mark.parametrize(("name", "url"), [
    ("STEPUP_SMTP_URL", "smtps://mailer:1234/etpw@mail.example"),
    ("STEPUP_SMTP_URL", "smtp+starttls://mailer:4321#etpw@mail.example:587"),
    ("STEPUP_WEBHOOK_URLS", "https://hook:1234/etpw@hooks.example/x"),
])
def test_a_password_cut_into_host_and_port_is_refused(name, url):
    """A password starting with digits before an unencoded "/" or "#": the user read as the
    host, the digits as the port, and the host:port logged with each delivery (found by
    review). Refused, naming the setting and not the value."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={name: url, "STEPUP_WEBHOOK_SECRET": "whsec_" + "A" * 44})
    assert name in str(caught.value) and "etpw" not in str(caught.value)


@pytest.mark.parametrize("issuer", [
    "https://ops:s3cretpw@bridge.example", "https://ops:s3cretpw@bridge.example:70000",
    "ftp://ops:s3cretpw@bridge.example", "https://ops:12/s3cretpw@bridge.example"])
def test_an_issuer_with_user_information_is_refused_without_it(issuer):
    """The issuer was quoted whole, password and all, in the very error that refuses user
    information (found by review)."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"STEPUP_ISSUER": issuer})
    assert "STEPUP_ISSUER" in str(caught.value) and "s3cretpw" not in str(caught.value)


def test_a_redis_url_redis_cannot_use_is_refused_without_it(tmp_path):
    from bridge.app import build_bridge

    settings = load_settings(environ={"STEPUP_DATA_DIR": str(tmp_path),
                                      "STEPUP_REDIS_URL": "redis://:s3cret@redis.example/0"
                                                          "?socket_timeout=soon"})
    with pytest.raises(ConfigError) as caught:
        build_bridge(settings)
    assert "STEPUP_REDIS_URL" in str(caught.value) and "s3cret" not in str(caught.value)


@pytest.mark.parametrize("issuer", [
    "http://127.0.0.1:5000", "https://[::1]:8443", "https://mfa.example.com/stepup",
    "https://stepup_bridge:8080", "https://straße.example", "https://xn--strae-oqa.example",
    "https://mfa.example.com.", "https://10.0.0.7"])
def test_issuers_of_every_usual_shape_are_taken(issuer):
    assert load_settings(environ={"STEPUP_ISSUER": issuer}).issuer == issuer


@pytest.mark.parametrize(("text", "name"), [
    ("lockout_limit = 101\n", "STEPUP_LOCKOUT_LIMIT"),
    ("lockout_limit = 5.5\n", "STEPUP_LOCKOUT_LIMIT"),
    ("lockout_limit = true\n", "STEPUP_LOCKOUT_LIMIT"),
    ('lockout_limit = "many"\n', "STEPUP_LOCKOUT_LIMIT"),
    ('issuer = "https://bridge.example/"\n', "STEPUP_ISSUER"),
    ("lockout_limit = [1, 2]\n", "STEPUP_LOCKOUT_LIMIT"),
    ("data_dir = 5\n", "STEPUP_DATA_DIR"),
    ('data_dir = ["a"]\n', "STEPUP_DATA_DIR"),
    ('lockout_limt = 5\n', "lockout_limt"),
    ("[server]\nport = 1\n", "server"),
    ("lockout_limit = \n", "STEPUP_CONFIG"),
    ("this is not toml\n\nat all = = =\n", "STEPUP_CONFIG"),
])
def test_bad_config_file_is_a_one_line_config_error(tmp_path, text, name):
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=_config(tmp_path, text))
    message = str(caught.value)
    assert name in message
    assert "\n" not in message


def test_a_config_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "stepup.toml"
    path.write_bytes(b'issuer = "https://caf\xe9.example"\n')  # Latin-1
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"STEPUP_CONFIG": str(path)})
    assert str(caught.value) == f"STEPUP_CONFIG: {path} is not UTF-8 text (TOML files are)"


def test_missing_config_file_is_a_one_line_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"STEPUP_CONFIG": str(tmp_path / "missing.toml")})
    assert "STEPUP_CONFIG" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_environment_value_beats_a_good_file_value(tmp_path):
    environ = _config(tmp_path, "lockout_limit = 5\n") | {"STEPUP_LOCKOUT_LIMIT": "101"}
    with pytest.raises(ConfigError, match="STEPUP_LOCKOUT_LIMIT"):
        load_settings(environ=environ)


def test_create_app_refuses_a_lockout_limit_over_100(tmp_path):
    with pytest.raises(ConfigError, match="STEPUP_LOCKOUT_LIMIT"):
        create_app({"data_dir": tmp_path}, environ={"STEPUP_LOCKOUT_LIMIT": "101"})
    with pytest.raises(ConfigError, match="STEPUP_LOCKOUT_LIMIT"):
        create_app({"data_dir": tmp_path, "lockout_limit": 101}, environ={})


# -- server secrets -------------------------------------------------------------------------
def b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("name", ["STEPUP_SECRET_KEY", "STEPUP_PEPPER"])
@pytest.mark.parametrize("value", [b64(b"x"), b64(b"k" * 31), "not base64!", ""])
def test_a_weak_or_unreadable_secret_stops_start_up_with_one_line(name, value, tmp_path):
    environ = {name: value, "STEPUP_DATA_DIR": str(tmp_path)}  # empty: refused, not unset
    with pytest.raises(ConfigError) as error:
        load_settings(environ)
    message = str(error.value)
    assert name in message and "\n" not in message
    assert not value or value not in message  # never the secret itself


@pytest.mark.parametrize("value", [f"k1:{b64(b'k' * 16)}", "k1", f":{b64(b'k' * 32)}",
                                   f"k1:{b64(b'k' * 32)},k1:{b64(b'j' * 32)}"])
def test_bad_encryption_keys_stop_start_up_with_one_line(value):
    with pytest.raises(ConfigError, match="STEPUP_ENCRYPTION_KEYS"):
        load_settings({"STEPUP_ENCRYPTION_KEYS": value})


@pytest.mark.parametrize("key", [b64(b"k" * 32), b64(b"k" * 32).rstrip("=").replace("+", "-")])
def test_a_key_written_before_its_id_is_not_quoted(key):
    """"base64key:id" takes the key for the id; the error named it (found by review)."""
    with pytest.raises(ConfigError, match="STEPUP_ENCRYPTION_KEYS") as caught:
        load_settings({"STEPUP_ENCRYPTION_KEYS": f"{key}:k2"})
    assert key not in str(caught.value) and key[:20] not in str(caught.value)
    # A long id that is one still starts, and is not quoted when its key is wrong either.
    kid = "k" * 41
    assert load_settings({"STEPUP_ENCRYPTION_KEYS": f"{kid}:{key}"}).encryption_keys
    with pytest.raises(ConfigError, match="id of 41 characters") as caught:
        load_settings({"STEPUP_ENCRYPTION_KEYS": f"{kid}:{b64(b'x' * 8)}"})
    assert kid not in str(caught.value)


def test_the_config_file_can_set_the_secrets(tmp_path):
    pepper, secret_key = b"p" * 32, b"s" * 48
    config = tmp_path / "stepup.toml"
    config.write_text(f'pepper = "{b64(pepper)}"\nsecret_key = "{b64(secret_key)}"\n'
                      f'encryption_keys = "k9:{b64(b"e" * 32)}"\n')
    app = create_app({"data_dir": tmp_path}, environ={"STEPUP_CONFIG": str(config)})
    secrets = app.extensions["stepup"].secrets
    assert (secrets.pepper, secrets.secret_key) == (pepper, secret_key)
    assert secrets.vault.box.active == "k9"
    app.extensions["stepup"].store.engine.dispose()


def test_settings_never_print_the_secrets():
    settings = load_settings({"STEPUP_PEPPER": b64(b"q" * 32)})
    assert b64(b"q" * 32) not in repr(settings)


@pytest.mark.parametrize("url", ["https://help.example.com/mfa", "mailto:it-help@example.com"])
def test_a_help_url_is_an_https_page_or_a_mailto_address(url):
    assert load_settings(environ={"STEPUP_HELP_URL": url}).help_url == url


@pytest.mark.parametrize("url", ["http://help.example.com", "javascript:alert(1)",
                                 "help.example.com", "mailto:nobody", "https://",
                                 "https://x.example/a b"])
def test_a_help_url_that_is_neither_is_refused(url):
    with pytest.raises(ConfigError, match="STEPUP_HELP_URL"):
        load_settings(environ={"STEPUP_HELP_URL": url})


def test_a_misspelt_variable_is_named_with_the_setting_it_looks_like(tmp_path, caplog):
    """A typo would leave the lockout limit at its default without a word."""
    app = create_app({}, environ={"STEPUP_DATA_DIR": str(tmp_path), "STEPUP_LOCKOUTLIMIT": "5",
                                  "STEPUP_TEST_DATABASES": "sqlite", "STEPUP_XYZZY": "1"})
    assert app.extensions["stepup"].settings.lockout_limit == 10
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == ["STEPUP_LOCKOUTLIMIT is not a setting and is ignored (did you mean "
                    "STEPUP_LOCKOUT_LIMIT?)", "STEPUP_XYZZY is not a setting and is ignored"]


@pytest.mark.parametrize(("body", "held"), [
    ('pepper = "x"\n', "pepper"),
    ('database_url = "postgresql+psycopg://bridge:hunter2@db/stepup"\n', "database_url"),
    ('smtp_url = "smtp+starttls://relay:pw@mail.example:587"\nwebhook_secret = "whsec_x"\n',
     "webhook_secret, smtp_url"),
    # libpq's own spelling (found by review: not named)
    ('database_url = "postgresql+psycopg://stepup@db/stepup?password=hunter2"\n',
     "database_url"),
])
def test_a_config_file_every_user_may_read_is_named_when_it_holds_a_secret(tmp_path, body, held):
    """ssh refuses a key file others can read; a service started by systemd says so instead."""
    path = tmp_path / "stepup.toml"
    path.write_text(body)
    path.chmod(0o644)
    said = settings_warnings({"STEPUP_CONFIG": str(path)})
    assert said == [f"STEPUP_CONFIG {path} holds {held} and every user of this machine may "
                    f"read it: chmod o-r {path} (or keep the secrets in the environment)"]
    assert "hunter2" not in said[0] and "pw@" not in said[0]
    path.chmod(0o640)
    assert settings_warnings({"STEPUP_CONFIG": str(path)}) == []


@pytest.mark.parametrize("body", ['issuer = "https://bridge.example"\n',
                                  'database_url = "postgresql+psycopg://db/stepup"\n',
                                  'database_url = "http://[::1"\n', "not toml ["])
def test_a_config_file_without_secrets_may_be_read_by_all(tmp_path, body):
    path = tmp_path / "stepup.toml"
    path.write_text(body)
    path.chmod(0o644)
    assert settings_warnings({"STEPUP_CONFIG": str(path)}) == []
    assert settings_warnings({"STEPUP_CONFIG": str(tmp_path / "missing.toml")}) == []


def test_a_config_file_every_user_may_change_is_named(tmp_path):
    path = tmp_path / "stepup.toml"
    path.write_text('issuer = "https://bridge.example"\n')
    path.chmod(0o666)
    assert settings_warnings({"STEPUP_CONFIG": str(path)}) == [
        f"STEPUP_CONFIG {path} may be changed by every user of this machine: chmod o-w {path}"]


@pytest.mark.parametrize(("host", "local"), [
    ("localhost", True), ("127.0.0.1", True), ("[::1]", True),
    # A dual-stack listener's IPv4 peer: judged by its IPv4 address on every Python (3.11's
    # is_loopback said no, 3.13's yes).
    ("[::ffff:127.0.0.1]", True), ("[::ffff:10.0.0.1]", False),
    ("10.0.0.1", False), ("hooks.example", False)])
def test_plain_http_only_to_this_host(host, local):
    environ = {"STEPUP_WEBHOOK_URLS": f"http://{host}:9000/in", "STEPUP_WEBHOOK_SECRET": "whsec_"
               + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
    if local:
        assert load_settings(environ=environ).webhook_url_list == [f"http://{host}:9000/in"]
    else:
        with pytest.raises(ConfigError, match="http only on localhost"):
            load_settings(environ=environ)
