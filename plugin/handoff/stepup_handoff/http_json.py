"""The one way this client talks to the bridge: one request, bounded in time and in size,
whose answer is read as a JSON object or as nothing.

Every call is bounded as a whole (:mod:`.deadline`), its name look-up included, never
follows a redirect, and reads at most ``limit`` bytes of body *after* decoding: a gzip or
deflate answer is inflated a chunk at a time and stopped at the limit (RFC 9110 §8.4), any
other content coding is refused. A
failure raises the caller's error class with a message that names no request data, and never
chains the ``requests`` exception (its ``.request.body`` holds the client secret, the code
and the PKCE verifier).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import HTTPError as TransportError

from .deadline import Deadline, Overrun
from .errors import HandoffError

#: Bytes read from the socket at a time.
CHUNK = 8192
#: zlib ``wbits`` per content coding (RFC 9110 §8.4.1): gzip, or zlib-wrapped deflate.
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class _Refusal(NamedTuple):
    """Why an exchange gave no usable answer: an error code and a sentence, no request data."""

    error: str  # "unreachable" (no whole answer in time) or "invalid_response"
    reason: str


def exchange(
    session: requests.Session,
    method: str,
    url: str,
    *,
    failure: type[HandoffError],
    what: str,
    limit: int,
    timeout: float,
    **kwargs: Any,
) -> tuple[int, dict[str, Any] | None]:
    """Send one request; return the status and the body as a JSON object (None if it is not
    one). Unreachable, too slow (``timeout`` seconds from start to last byte), or an answer
    over ``limit`` bytes: ``failure``."""
    outcome = _exchange(session, method, url, limit=limit, timeout=timeout, **kwargs)
    if isinstance(outcome, _Refusal):  # raised here, outside any except block: nothing chained
        raise failure(f"{what}: {outcome.reason}", error=outcome.error)
    status, body = outcome
    return status, _json_object(body)


def _exchange(
    session: requests.Session, method: str, url: str, *, limit: int, timeout: float, **kwargs: Any
) -> tuple[int, bytes] | _Refusal:
    """The status and the decoded body, or why not. The exchange runs in a thread of its own
    (:meth:`Deadline.run`): a system resolver that hangs holds that thread, not the IdP's
    worker, which gives up at the deadline."""
    with Deadline(timeout) as deadline:
        try:
            outcome = deadline.run(
                lambda: _fetch(session, method, url, limit=limit, deadline=deadline, **kwargs)
            )
        except Overrun as overrun:  # timed out, or too many exchanges already left behind
            return _late(deadline) if deadline.expired else _Refusal("unreachable", str(overrun))
    if isinstance(outcome, _Refusal):
        return outcome
    if deadline.expired:  # a connection cut at the deadline may look like the body's end
        return _late(deadline)
    return outcome


def _fetch(
    session: requests.Session,
    method: str,
    url: str,
    *,
    limit: int,
    deadline: Deadline,
    **kwargs: Any,
) -> tuple[int, bytes] | _Refusal:
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
    timeout = deadline.seconds
    if urlsplit(url).scheme == "http":  # lowercased: "HTTP://" is plain http too
        # Plain http is allowed only to this machine (discovery.secure_url): an HTTP_PROXY from
        # the environment, which requests does not skip for 127.0.0.1, would carry the
        # secret, the code and the verifier to the proxy in clear. None drops it.
        kwargs["proxies"] = {"http": None, "all": None}
    try:
        response = session.request(
            method,
            url,
            headers=headers,
            timeout=(deadline.left(timeout), deadline.left(timeout)),
            allow_redirects=False,
            stream=True,
            **kwargs,
        )
    except requests.RequestException as exc:
        return _unreachable(exc, deadline)
    with response:
        try:
            body = _read(response, limit, deadline)
        except (TransportError, requests.RequestException, OSError) as exc:
            return _unreachable(exc, deadline)
    return body if isinstance(body, _Refusal) else (response.status_code, body)


def _late(deadline: Deadline) -> _Refusal:
    return _Refusal("unreachable", f"no whole answer within {deadline.seconds:g} s")


def _unreachable(exc: Exception, deadline: Deadline) -> _Refusal:
    if deadline.expired or isinstance(exc, requests.Timeout):
        return _late(deadline)
    return _Refusal("unreachable", f"request failed ({type(exc).__name__})")


def _read(response: requests.Response, limit: int, deadline: Deadline) -> bytes | _Refusal:
    """At most ``limit`` decoded bytes of the body, or why not."""
    coding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("identity", "", *_CODINGS):
        return _Refusal("invalid_response", "answer has an unsupported Content-Encoding")
    inflate = _inflater(_CODINGS.get(coding))
    body = bytearray()
    for chunk in response.raw.stream(CHUNK, decode_content=False):
        try:
            body += inflate(chunk, limit + 1 - len(body))
        except zlib.error:
            return _Refusal("invalid_response", f"answer is not valid {coding}")
        if len(body) > limit:
            return _Refusal("invalid_response", f"answer is larger than {limit} bytes")
        if deadline.expired:
            return _late(deadline)
    return bytes(body)


def _inflater(wbits: int | None) -> Callable[[bytes, int], bytes]:
    """``inflate(chunk, room)``: the chunk decoded, at most ``room`` bytes of it (what does
    not fit is never inflated: the caller stops there)."""
    if wbits is None:
        return lambda chunk, room: chunk[:room]
    decoder = zlib.decompressobj(wbits)
    return lambda chunk, room: decoder.decompress(chunk, room)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object (RFC 8259 §4), or None if it is not JSON or not an object:
    every document and answer the hand-off reads is an object, so a caller only asks "None?"."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond reason
        return None
    return value if isinstance(value, dict) else None
