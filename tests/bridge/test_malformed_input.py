"""Malformed bytes at the protocol endpoints: credentials that are not UTF-8 or hold a NUL are
invalid_client; a NUL in the /authorize query is a 400 page; control characters in the
redirect_uri are invalid_request; a method or path no view has is OAuth JSON at every
back-channel path, and a page in the browser's."""

from __future__ import annotations

import base64

import pytest

from tests.bridge.conftest import IDP_SECRET


@pytest.mark.parametrize("endpoint", ["/par", "/token"])
def test_credentials_that_are_not_utf8_are_invalid_client(client, endpoint):
    header = "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()
    response = client.post(endpoint, data={"grant_type": "authorization_code"},
                           headers={"Authorization": header})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize("endpoint", ["/par", "/token"])
def test_a_nul_in_the_client_id_is_invalid_client(client, endpoint):
    response = client.post(endpoint, data={"client_id": "a\x00b", "client_secret": IDP_SECRET,
                                           "grant_type": "authorization_code"})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_a_nul_in_the_authorize_query_is_a_400_page(client):
    response = client.get("/authorize?client_id=a%00b&request_uri=urn%00x")
    assert response.status_code == 400
    assert b"expired" in response.data


def test_control_characters_in_the_redirect_uri_are_refused(act):
    response, _ = act.push(redirect_uri="https://kc.example/realms/acme/login-actions/"
                                        "authenticate?client_data=a%00b\x00")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize(("method", "path", "status", "allow"), [
    ("TRACE", "/token", 405, "OPTIONS, POST"),
    ("PROPFIND", "/par", 405, "OPTIONS, POST"),
    ("GET", "/par", 405, "OPTIONS, POST"),
    ("DELETE", "/token", 405, "OPTIONS, POST"),
    ("POST", "/jwks", 405, "GET, HEAD, OPTIONS"),
    ("POST", "/.well-known/openid-configuration", 405, "GET, HEAD, OPTIONS"),
    ("GET", "/token/", 404, None),
    ("POST", "/par/x", 404, None),
    ("GET", "/.well-known/oauth-authorization-server", 404, None),
])
def test_every_refusal_at_a_back_channel_path_is_oauth_json(client, method, path, status, allow):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.content_type == "application/json"
    assert response.get_json()["error"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers.get("Allow") == allow


@pytest.mark.parametrize("path", ["/par", "/token"])
def test_options_names_the_methods_and_nothing_else(client, path):
    response = client.options(path)
    assert response.status_code == 204 and response.headers["Allow"] == "OPTIONS, POST"
    assert response.data == b"" and "Content-Type" not in response.headers  # no body to type


def test_an_unknown_page_is_still_a_page(client):
    response = client.get("/tokens")
    assert response.status_code == 404
    assert response.content_type.startswith("text/html")


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 200),
    ("GET", "/static/style.css", 200),
    ("GET", "/authorize", 400),
    ("GET", "/flow/unknown", 404),
    ("GET", "/tokens", 404),
    ("POST", "/par", 400),
    ("POST", "/token", 400),
])
def test_raw_bytes_in_the_query_are_read_as_percent_encoded(client, method, path, status):
    """A query string with bytes a request line must percent-encode, one of them not UTF-8
    (WSGI hands them over as latin-1 characters): werkzeug's parser failed on it in every
    page's language choice, then in the error page (a 500). It reads as the encoded bytes."""
    response = client.open(path, method=method,
                            environ_overrides={"QUERY_STRING": "v=\xff&lang=d\xc3\xa9"})
    assert response.status_code == status
    if path in ("/par", "/token"):
        assert response.get_json()["error"] == "invalid_request"  # no query at the back channel
    elif path != "/static/style.css":
        assert response.content_type.startswith("text/html")
        assert b'lang="en"' in response.data
