"""How the client reads the bridge's answers: bounded in size after any content coding
(RFC 9110 §8.4), no redirect followed, no cookie kept, and no request data reachable from
the errors it raises."""

from __future__ import annotations

import gzip
import json

import pytest
import requests
from handoff_fakes import CLIENT_ID, CLIENT_SECRET, CODE, ISSUER, REDIRECT_URI, public_jwk
from local_servers import Canned

from stepup_handoff import DiscoveryError, HandoffClient, HandoffError, PushError, TokenError

DISCOVERY = "/.well-known/openid-configuration"


def padded(document: dict, size: int) -> dict:
    """``document`` with a member that brings its JSON to about ``size`` bytes."""
    return {**document, "padding": "x" * size}


class TestSizeLimits:
    """64 KiB for discovery, PAR and token answers; 256 KiB for the JWKS."""

    def test_oversized_discovery_refused(self, client, bridge):
        bridge.discovery = padded(bridge.discovery, 70 * 1024)

        with pytest.raises(DiscoveryError, match="larger than 65536") as caught:
            client.start("user-42", REDIRECT_URI)
        assert caught.value.error == "invalid_response"
        assert bridge.par_requests == []

    def test_oversized_par_answer_refused(self, client, bridge):
        bridge.par_reply = (201, padded({"request_uri": "urn:x", "expires_in": 60}, 70 * 1024))

        with pytest.raises(PushError, match="larger than") as caught:
            client.start("user-42", REDIRECT_URI)
        assert caught.value.error == "invalid_response"

    def test_oversized_error_answer_refused(self, client, bridge):
        bridge.par_reply = (400, padded({"error": "invalid_request"}, 70 * 1024))

        with pytest.raises(PushError) as caught:
            client.start("user-42", REDIRECT_URI)
        assert caught.value.error == "invalid_response"

    def test_oversized_token_answer_refused(self, client, bridge, handoff):
        pending, callback = handoff()
        bridge.token_reply = (200, padded({"id_token": "a.b.c"}, 70 * 1024))

        with pytest.raises(TokenError, match="larger than") as caught:
            client.finish(pending, callback)
        assert caught.value.error == "invalid_response"

    def test_jwks_up_to_256_kib_accepted(self, client, bridge, handoff, rsps):
        jwks = padded({"keys": [public_jwk(k) for k in bridge.published]}, 250 * 1024)
        rsps.replace("GET", f"{ISSUER}/jwks", json=jwks)

        assert client.finish(*handoff()).subject == "user-42"

    def test_oversized_jwks_refused(self, client, bridge, handoff, rsps):
        jwks = padded({"keys": [public_jwk(k) for k in bridge.published]}, 260 * 1024)
        rsps.replace("GET", f"{ISSUER}/jwks", json=jwks)

        with pytest.raises(DiscoveryError, match="larger than 262144"):
            client.finish(*handoff())

    def test_deeply_nested_answer_is_a_bad_answer(self, client, rsps):
        """Nesting within the size limit that would exhaust the JSON parser's recursion."""
        rsps.replace("GET", f"{ISSUER}{DISCOVERY}", body="[" * 60_000)

        with pytest.raises(DiscoveryError) as caught:
            client.start("user-42", REDIRECT_URI)
        assert caught.value.error == "invalid_response"


class TestContentCoding:
    """Over real HTTP: the size limit counts decoded bytes, so a small gzip answer that
    inflates to megabytes is stopped at the limit, not inflated whole."""

    def gzipped(self, local_bridge, document: bytes) -> None:
        local_bridge.canned[DISCOVERY] = Canned(
            body=gzip.compress(document),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    def test_gzip_bomb_stopped_at_the_limit(self, local_client, local_bridge):
        document = json.dumps(local_bridge.fake.discovery).encode()
        self.gzipped(local_bridge, document[:-1] + b" " * 20_000_000 + b"}")

        with pytest.raises(DiscoveryError, match="larger than") as caught:
            local_client.start("user-42", REDIRECT_URI)
        assert caught.value.error == "invalid_response"

    def test_small_gzip_answer_accepted(self, local_client, local_bridge):
        self.gzipped(local_bridge, json.dumps(local_bridge.fake.discovery).encode())

        assert local_client.start("user-42", REDIRECT_URI).authorize_url

    def test_other_coding_refused(self, local_client, local_bridge):
        local_bridge.canned[DISCOVERY] = Canned(body=b"xx", headers={"Content-Encoding": "br"})

        with pytest.raises(DiscoveryError, match="Content-Encoding"):
            local_client.start("user-42", REDIRECT_URI)

    def test_identity_is_asked_for(self, local_client, local_bridge):
        local_client.start("user-42", REDIRECT_URI)

        assert {h.get("Accept-Encoding") for _, _, h in local_bridge.requests} == {"identity"}


class TestRedirects:
    """Discovery and JWKS come from where the bridge says, never from where a redirect points."""

    @pytest.mark.parametrize("path", [DISCOVERY, "/jwks"])
    def test_not_followed(self, client, bridge, handoff, rsps, path):
        elsewhere = rsps.add("GET", "https://elsewhere.example/doc", json={})
        rsps.replace("GET", f"{ISSUER}{path}", status=302, headers={"Location": elsewhere.url})

        with pytest.raises(DiscoveryError, match="HTTP 302"):
            client.finish(*handoff()) if path == "/jwks" else client.start("user-42", REDIRECT_URI)
        assert elsewhere.call_count == 0


class TestNothingSecretChained:
    """A requests exception carries the request (``.request.body``: secret, code, verifier):
    the client's errors neither chain it nor keep it as their context."""

    def chain(self, error: BaseException) -> list[BaseException]:
        found, seen = [error], {id(error)}
        while (nxt := found[-1].__cause__ or found[-1].__context__) and id(nxt) not in seen:
            found.append(nxt)
            seen.add(id(nxt))
        return found

    def failing(self, rsps, method: str, url: str) -> None:
        def refuse(request):
            raise requests.ConnectionError("connection reset", request=request)

        rsps.remove(method, url)
        rsps.add_callback(method, url, refuse)

    def test_par_failure(self, bridge, rsps, clock):
        client = HandoffClient(
            ISSUER,
            CLIENT_ID,
            client_secret=CLIENT_SECRET,
            auth_method="client_secret_post",  # the secret in the request body
            clock=clock,
        )
        self.failing(rsps, "POST", f"{ISSUER}/par")

        with pytest.raises(PushError) as caught:
            client.start("user-42", REDIRECT_URI)
        assert caught.value.error == "unreachable"
        assert self.chain(caught.value) == [caught.value]
        assert CLIENT_SECRET not in str(caught.value)

    def test_token_failure(self, client, bridge, handoff, rsps):
        pending, callback = handoff()
        self.failing(rsps, "POST", f"{ISSUER}/token")

        with pytest.raises(TokenError) as caught:
            client.finish(pending, callback)
        assert self.chain(caught.value) == [caught.value]
        text = str(caught.value)
        assert CODE not in text and pending.code_verifier not in text

    def test_discovery_failure(self, client, rsps):
        self.failing(rsps, "GET", f"{ISSUER}{DISCOVERY}")

        with pytest.raises(HandoffError) as caught:
            client.start("user-42", REDIRECT_URI)
        assert self.chain(caught.value) == [caught.value]


class TestCookies:
    """One client serves every user: a cookie set on one answer never rides on another."""

    def test_not_kept(self, local_client, local_bridge):
        local_bridge.extra_headers[DISCOVERY] = {"Set-Cookie": "affinity=node-1; Path=/"}
        local_bridge.extra_headers["/par"] = {"Set-Cookie": "user=user-42; Path=/"}

        local_client.start("user-42", REDIRECT_URI)
        local_client.start("user-43", REDIRECT_URI)

        assert [h.get("Cookie") for _, _, h in local_bridge.requests] == [None] * 3

    def test_not_kept_in_a_session_given_by_the_caller(self, local_bridge, clock):
        session = requests.Session()
        client = HandoffClient(
            local_bridge.issuer,
            CLIENT_ID,
            client_secret=CLIENT_SECRET,
            session=session,
            clock=clock,
        )
        local_bridge.extra_headers["/par"] = {"Set-Cookie": "user=user-42; Path=/"}

        client.start("user-42", REDIRECT_URI)
        client.start("user-43", REDIRECT_URI)

        assert local_bridge.requests[-1][2].get("Cookie") is None
        assert len(session.cookies) == 0
