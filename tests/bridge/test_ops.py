"""Health, readiness, metrics, request ids, JSON logs, and the answer while the database is
away."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY

from bridge.logs import JsonFormatter
from bridge.oidc.clients import new_client
from bridge.store import Store
from tests.bridge.conftest import IDP_ID, at_stage
from tests.bridge.test_admin_api import ADMIN_ID, ADMIN_SECRET, bearer


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "signing_keys": "ok"}


def test_challenges_lockouts_and_protocol_errors_are_counted(act, clock, caplog):
    ok_before = sample("stepup_challenges_total", factor="otp", outcome="success")
    fail_before = sample("stepup_challenges_total", factor="otp", outcome="failure")
    enrollments = sample("stepup_enrollments_total", kind="enrollment")
    login, _ = act.enroll("metrics-user")
    clock.advance(30)
    again = act.start("metrics-user")
    again.secret = login.secret
    act.post(again, "totp", otp="000000" if act.code_now(again) != "000000" else "111111")
    act.post(again, "totp", otp=act.code_now(again))
    assert sample("stepup_challenges_total", factor="otp", outcome="success") == ok_before + 1
    assert sample("stepup_challenges_total", factor="otp", outcome="failure") == fail_before + 1
    assert sample("stepup_enrollments_total", kind="enrollment") == enrollments + 1

    errors = sample("stepup_protocol_errors_total", endpoint="/par", error="invalid_client")
    refused = sample("stepup_responses_total", endpoint="/par", status="4xx")
    with caplog.at_level(logging.WARNING, "stepup"):
        act.push("metrics-user", auth=("idp", "wrong-secret-0000000"))
        act.push("metrics-user", auth=("nobody\x1b[31m", "wrong-secret-0000000"))
    assert sample("stepup_protocol_errors_total", endpoint="/par",
                  error="invalid_client") == errors + 2
    # The alert's answer is in the log: which client, from where; never the secret, nor the
    # text of an id no client has.
    assert ("client authentication refused at /par from 127.0.0.1 for client 'idp'"
            in caplog.messages)
    assert ("client authentication refused at /par from 127.0.0.1 for an unknown client"
            in caplog.messages)
    failed = [m for m in caplog.messages if m.startswith("client authentication refused")]
    assert len(failed) == 2 and not any("wrong-secret" in m or "nobody" in m for m in failed)
    # A refusal werkzeug's routing makes at a back-channel path is counted too.
    wrong_method = sample("stepup_protocol_errors_total", endpoint="unmatched",
                          error="invalid_request")
    assert act.client.get("/token").status_code == 405
    assert sample("stepup_protocol_errors_total", endpoint="unmatched",
                  error="invalid_request") == wrong_method + 1
    # Answers by endpoint and status class: the error rate of each.
    assert sample("stepup_responses_total", endpoint="/par", status="4xx") == refused + 2
    scraped = act.client.get("/metrics")
    assert "stepup_request_seconds_bucket" in scraped.get_data(as_text=True)
    # Prometheus' own content type, once (werkzeug appended a second charset to a mimetype).
    assert scraped.headers["Content-Type"] == CONTENT_TYPE_LATEST


def test_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers[
        "X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id; <script>"})
    assert made.headers["X-Request-ID"] != "bad id; <script>"
    assert len(made.headers["X-Request-ID"]) == 32
    # A whole match, not up to a newline (werkzeug refuses to send one; a server may pass it).
    trailing = client.get("/healthz", environ_overrides={"HTTP_X_REQUEST_ID": "abc\n"})
    assert trailing.status_code == 200 and len(trailing.headers["X-Request-ID"]) == 32


def test_a_post_refused_for_its_csrf_token_still_gets_a_request_id(act):
    """The request id is made before Flask-WTF's check, so a refused post can be traced."""
    login = at_stage(act, "totp")
    response = act.client.post(f"{login.flow_url}/totp", data={"otp": "123456"},
                               headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 400
    assert response.headers.getlist("X-Request-ID") == ["trace-me"]
    made = act.client.post(f"{login.flow_url}/totp", data={"otp": "123456"})
    assert len(made.headers["X-Request-ID"]) == 32


def test_json_log_lines_carry_the_request_id_and_audit_fields(app):
    formatter = JsonFormatter()
    with app.test_request_context("/"):
        from flask import g

        g.request_id = "req-1"
        record = logging.LogRecord("stepup.audit", logging.INFO, __file__, 1, "%s", ("success",),
                                   None)
        record.audit = {"event": "success", "subject": "u", "factor": "otp"}
        line = json.loads(formatter.format(record))
    assert line["request_id"] == "req-1"
    assert line["message"] == "success"
    assert line["audit"]["factor"] == "otp"
    assert line["level"] == "info"


def test_a_database_outage_is_try_again_in_each_callers_own_terms(act, monkeypatch, caplog):
    """JSON for the back channel and the help-desk API, a page in the browser's language; the
    log says what the driver said (never the statement or its parameters)."""
    with act.bridge.store.begin() as tx:
        tx.add_client(new_client(act.bridge.secrets.pepper, ADMIN_ID, secret=ADMIN_SECRET,
                                 jwks_uri=None, redirect_uris=[], redirect_uri_prefixes=[],
                                 admin=True))
    headers = bearer(act)

    def gone(*_args, **_kwargs):
        raise sa.exc.OperationalError("SELECT secret_digest FROM clients", {"b_id": "SECRET-7"},
                                      Exception("connection refused\nDETAIL: more"))

    monkeypatch.setattr(Store, "begin", gone)
    monkeypatch.setattr(Store, "autocommit", gone)
    with caplog.at_level(logging.ERROR, "stepup"):
        for response in (act.push("ola")[0],
                         act.client.get("/admin/api/users/ola", headers=headers)):
            assert response.status_code == 503
            assert response.get_json()["error"] == "temporarily_unavailable"
            assert response.headers["Retry-After"] == "5"
    outage = [m for m in caplog.messages if m.startswith("database unavailable")]
    assert outage == ["database unavailable: OperationalError: connection refused"] * 2
    page = act.client.get(f"/authorize?client_id={IDP_ID}&request_uri=urn:x",
                          headers={"Accept-Language": "de"})
    assert page.status_code == 503
    assert "Bitte versuchen Sie es gleich noch einmal" in page.get_data(as_text=True)


def test_the_cli_does_not_load_prometheus_before_serve_names_its_folder():
    """prometheus_client picks single- or multi-process counters when it is imported: loaded
    before `stepup serve` sets PROMETHEUS_MULTIPROC_DIR, every worker's /metrics was empty."""
    probe = "import sys, bridge.cli; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_every_known_series_is_there_from_the_start_at_zero(tmp_path):
    """An alert on increase() misses a series whose first sample is already 1: the first
    replay, the first abandoned notice after a start would go unseen. A fresh process (this
    one's registry has seen other tests) builds the app and is scraped at once."""
    probe = ("import pathlib, sys\n"
             "from prometheus_client import generate_latest\n"
             "from bridge import create_app\n"
             "create_app({'data_dir': pathlib.Path(sys.argv[1]), 'issuer': 'http://127.0.0.1:9',"
             " 'smtp_url': 'smtp://127.0.0.1:1', 'webhook_urls': 'http://127.0.0.1:1/h',"
             " 'webhook_secret': 'whsec_' + 'A' * 32}, environ={})\n"
             "sys.stdout.write(generate_latest().decode())\n")
    scraped = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True,
                             text=True, check=True).stdout
    wanted = [f'stepup_challenges_total{{factor="{f}",outcome="{o}"}} 0.0'
              for f in ("otp", "rc") for o in ("success", "failure", "replay")]
    wanted += ['stepup_challenges_total{factor="enrollment",outcome="failure"} 0.0']
    wanted += [f'stepup_enrollments_total{{kind="{k}"}} 0.0' for k in ("enrollment",
                                                                       "reenrollment")]
    wanted += [f'stepup_notifications_total{{channel="{c}",outcome="{o}"}} 0.0'
               for c in ("email", "webhook") for o in ("delivered", "failed", "abandoned")]
    wanted += [f'stepup_responses_total{{endpoint="{e}",status="{c}"}} 0.0'
               for e in ("/par", "/token", "/authorize", "unmatched") for c in ("4xx", "5xx")]
    lines = scraped.splitlines()
    assert [line for line in wanted if line not in lines] == []
