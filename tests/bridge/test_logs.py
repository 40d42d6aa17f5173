"""No secrets in the logs: a whole set of sign-ins, with every log record and the audit
table searched for codes, secrets, tokens and request URIs in every spelling."""

from __future__ import annotations

import base64
import logging
import re
import secrets

import pytest
import sqlalchemy as sa

from bridge.factors import recovery, totp
from bridge.notify.notme import NotMe
from bridge.store import schema
from tests.bridge.conftest import IDP_ID, IDP_SECRET, callback_params, returning, shown, wrong_code


def _log_everything(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ["", *list(logging.root.manager.loggerDict)]:
        caplog.set_level(logging.DEBUG, logger=name)


def _record_text(record: logging.LogRecord) -> str:
    parts = [str(record.msg), repr(record.args), repr(record.__dict__), record.getMessage()]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def test_no_secrets_in_logs(act, clock, caplog):
    _log_everything(caplog)
    logging.getLogger("tests.canary").debug("log capture works")

    secrets: list[str] = [IDP_SECRET]
    digits: list[str] = []  # TOTP codes: matched as whole numbers only

    def redeem(login, location):
        params = callback_params(location)
        secrets.append(params["code"])
        response = act.redeem(params["code"], login)
        assert response.status_code == 200
        secrets.append(response.get_json()["id_token"])
        secrets.append(response.get_json()["access_token"])

    pushed: list[str] = []
    original_push = act.push

    def push(*args, **kwargs):
        response, login = original_push(*args, **kwargs)
        if response.status_code == 201:
            pushed.append(response.get_json()["request_uri"])
        return response, login

    act.push = push

    # Enrollment.
    login, callback = act.enroll("mia")
    digits.append(totp.code_at(login.secret, clock()))
    secrets += [login.secret, login.recovery_code]
    redeem(login, callback)
    # TOTP, after a wrong code.
    clock.advance(30)
    t = returning(act, "mia", login.secret)
    bad = wrong_code(login.secret, clock())
    digits.append(bad)
    assert act.post(t, "totp", otp=bad).status_code == 400
    digits.append(act.code_now(t))
    done = act.post(t, "totp", otp=act.code_now(t))
    redeem(t, done.headers["Location"])
    # Recovery with rotation, after a wrong recovery code.
    r = act.start("mia")
    wrong_rc = recovery.generate()
    secrets.append(wrong_rc)
    assert act.post(r, "recovery", recovery_code=wrong_rc.lower()).status_code == 400
    assert act.post(r, "recovery", recovery_code=login.recovery_code.lower()).status_code == 303
    new_code = shown(r.last_page, "recovery-code")
    secrets.append(new_code)
    assert act.client.get(f"{r.flow_url}/recovery-code.txt").status_code == 200
    done = act.post(r, "saved", saved="yes")
    redeem(r, done.headers["Location"])
    # A failed enrollment attempt.
    e = act.start("nia")
    enrolling = shown(e.last_page, "totp-secret")
    secrets.append(enrolling)
    bad = wrong_code(enrolling, clock())
    digits.append(bad)
    assert act.post(e, "enroll", otp=bad).status_code == 400
    secrets += pushed

    forms = set()
    for s in secrets:
        canonical = recovery.normalize(s) if len(s) < 40 else None
        forms |= {s, s.lower()}
        if canonical:  # a recovery code in every format a user or a log might use
            forms |= {canonical, canonical.lower(), s.replace("-", " "),
                      s.replace("-", " ").lower()}
        if s.startswith("urn:"):
            forms.add(s.rsplit(":", 1)[1])
    assert len(pushed) == 4

    texts = [(record.name, _record_text(record)) for record in caplog.records]
    assert any("log capture works" in text for _, text in texts)
    assert any(name == "stepup.audit" for name, _ in texts)  # the audit log is captured too
    with act.bridge.store.engine.begin() as conn:
        rows = conn.execute(sa.select(schema.audit_events)).mappings().all()
    texts += [("audit_events table", repr(dict(row))) for row in rows]
    leaks = set()
    for name, text in texts:
        leaks |= {f"{name}: {text[:60]!r}" for secret in forms if secret in text}
        leaks |= {f"{name}: TOTP code in {text[:60]!r}" for code in digits
                  if re.search(rf"(?<!\d){code}(?!\d)", text)}
    assert not leaks, "secrets in the logs:\n" + "\n".join(sorted(leaks))

    logged = {row["event"] for row in rows}
    assert {"enrollment", "success", "failure", "recovery_code_used", "rotation"} <= logged



def _basic(credentials: str) -> dict:
    encoded = base64.b64encode(credentials.encode()).decode()
    return {"headers": {"Authorization": f"Basic {encoded}"}}


@pytest.mark.parametrize("endpoint", ["/par", "/token"])
@pytest.mark.parametrize("sent", [
    _basic(IDP_SECRET),  # authlib reads it all as the client id
    _basic(f"{IDP_SECRET}:"),
    _basic(f"{IDP_ID} {IDP_SECRET}"),
    _basic(f'{IDP_ID} via "{IDP_SECRET}'),
    {"data": {"client_id": IDP_SECRET, "client_secret": "x"}},
])
def test_a_secret_sent_in_place_of_the_client_id_is_not_logged(client, caplog, endpoint, sent):
    """authlib logs each client authentication with the client id as sent, at DEBUG."""
    _log_everything(caplog)
    data = {"grant_type": "authorization_code", **sent.get("data", {})}
    response = client.post(endpoint, data=data, headers=sent.get("headers", {}))
    assert response.status_code == 401
    texts = [_record_text(record) for record in caplog.records]
    assert any('Authenticate a client via "client_secret_basic" failed' in text
               for text in texts), texts  # the line is kept, without the id
    assert not [text for text in texts if IDP_SECRET in text]

class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(_record_text(record))


def test_gunicorns_own_error_lines_never_carry_a_query():
    """gunicorn quotes the request line it could not parse and the URI of a request that
    failed; ``stepup serve``'s logger keeps the kind of error and the path only."""
    import io
    import socket
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.http.errors import InvalidRequestLine
    from gunicorn.workers.sync import SyncWorker

    from bridge.server import JsonLogger

    cfg = Config()
    cfg.set("logger_class", JsonLogger)
    log = JsonLogger(cfg)
    kept = _Kept()
    log.error_log.addHandler(kept)
    worker = SyncWorker(0, 0, [], None, 30, cfg, log)
    failed = SimpleNamespace(method="GET", uri="/callback?code=SECRET-CODE-7", path="/callback",
                             query="code=SECRET-CODE-7", version=(1, 1), headers=[],
                             body=io.BytesIO(), scheme="http", proxy_protocol_info=None)
    for req, error in [(None, InvalidRequestLine("GET /callback?code=SECRET-CODE-7 HTTP/1.1")),
                       (failed, ValueError("boom"))]:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            try:
                raise error
            except Exception as raised:  # handle_error runs inside gunicorn's except block
                worker.handle_error(req, ours, ("127.0.0.1", 1), raised)
    assert any("Invalid request from ip=127.0.0.1: Invalid HTTP request line" in line
               for line in kept.lines)
    assert any("Error handling request GET /callback" in line for line in kept.lines)
    assert not any("SECRET-CODE-7" in line for line in kept.lines), kept.lines


def test_the_demo_servers_error_lines_never_carry_a_query_or_a_capability():
    """``stepup demo``'s development server quotes a request line it cannot parse in its error
    log; the query string (a request_uri here) and a not-me link's token are cut from it."""
    import socket
    import threading

    from werkzeug.serving import make_server

    from bridge.server import quiet_dev_server_log

    kept = _Kept()
    werkzeug_log = logging.getLogger("werkzeug")
    werkzeug_log.addHandler(kept)
    quiet_dev_server_log()
    server = make_server("127.0.0.1", 0, lambda environ, start_response: [])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for target in ("/authorize?request_uri=urn:ietf:params:oauth:request_uri:SECRET-7",
                       "/not-me/SECRET-7.1893456000.xyz"):
            with socket.create_connection(server.server_address, timeout=5) as s:
                s.sendall(f"GET {target} x HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert s.recv(100).startswith(b"HTTP/1.")  # 400 Bad request syntax
    finally:
        server.shutdown()
        server.server_close()
        werkzeug_log.removeHandler(kept)
    messages = [line for line in kept.lines if "Bad request syntax" in line]
    assert len(messages) == 2  # both kept, for whoever debugs the demo
    assert "/authorize" in messages[0] and "/not-me/<token>" in messages[1]
    assert not any("SECRET-7" in line for line in kept.lines), kept.lines


def test_a_failing_not_me_link_leaves_its_token_out_of_the_error_line(act, caplog, monkeypatch):
    """Flask logs an unhandled exception with the path; the link's token is a capability."""
    token = secrets.token_urlsafe(32)

    def broken(*_args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(NotMe, "find", broken)
    _log_everything(caplog)
    assert act.client.get(f"/not-me/{token}").status_code == 500
    [line] = [r for r in caplog.records if "Exception on" in r.getMessage()]
    assert line.getMessage() == "Exception on /not-me/<token> [GET]"
    assert not [r for r in caplog.records if token in _record_text(r)]


def _one_answer(answer: bytes) -> int:
    """A server on a free port that reads one request and sends ``answer`` as it is."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection, listener:
            connection.recv(65536)
            connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 204 No Content\r\n\r\n",
    # urllib3 warns "Failed to parse headers (url=…)", with the whole URL, at WARNING
    b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nno colon here\r\n\r\n"],
    ids=["answered", "malformed-header"])
def test_a_webhooks_path_and_query_stay_out_of_the_logs(make_app, caplog, answer):
    """urllib3 logs each request's target at DEBUG, and a URL whole when an answer's headers
    are malformed; a hook's path or query may be its token (found by review). The receiver's
    host and port still show which one it was."""
    from bridge.notify import webhooks

    make_app()  # the bridge's filters are in place once an app is built
    _log_everything(caplog)
    port = _one_answer(answer)
    webhooks.post(f"http://127.0.0.1:{port}/T0KEN-IN-PATH?token=T0KEN-IN-QUERY", [b"k" * 32],
                  {"id": "msg_1", "event": "reset", "subject": "ann", "client_id": None,
                   "at": 0, "detail": None}, 0, timeout=5)
    urllib3 = [r for r in caplog.records if r.name.startswith("urllib3")]
    assert any(f"127.0.0.1:{port}" in r.getMessage() for r in urllib3)
    assert any("HTTP/1.1" in r.getMessage() for r in urllib3)  # what is not a target stays
    assert not any("T0KEN" in _record_text(r) for r in caplog.records)
