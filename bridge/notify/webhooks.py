"""Webhooks in the Standard Webhooks format (https://www.standardwebhooks.com/).

Every POST carries ``webhook-id`` (the event's stable id: the same on every retry, so a
receiver de-duplicates by it), ``webhook-timestamp`` (seconds, of this attempt) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one such signature per
configured secret (space-separated), so receivers can move to a new secret one at a time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from stepup_handoff.deadline import Deadline, Overrun, bounded_session


class DeliveryError(Exception):
    """A receiver did not take the event; the message is safe to log (no secret, no address).
    ``unreachable``: no answer came (no connection, or none in time), rather than an answer
    that refused it; the sender then rests the receiver (``Sender``)."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def sign(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
                    .decode() for key in keys)


def body(event: dict[str, Any]) -> bytes:
    """The event as JSON: ``type``, ``timestamp`` and ``data`` (never an address or secret)."""
    data = {"id": event["id"], "event": event["event"], "subject": event["subject"],
            "client_id": event["client_id"], "at": event["at"], **(event["detail"] or {})}
    return json.dumps({
        "type": f"stepup.{event['event']}",
        "timestamp": datetime.fromtimestamp(event["at"], UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }, separators=(",", ":"), sort_keys=True).encode()


def post(url: str, keys: list[bytes], event: dict[str, Any], now: float, timeout: int) -> None:
    """POST one event; anything but a whole 2xx answer within ``timeout`` seconds, from the
    connection to the answer's last byte, is a failure."""
    import requests  # only a node with webhooks configured needs it: 5 MiB less per worker

    payload = body(event)
    timestamp = int(now)
    headers = {"content-type": "application/json", "webhook-id": event["id"],
               "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(keys, event["id"], timestamp, payload)}
    with Deadline(timeout) as deadline, bounded_session() as session:
        try:
            response = deadline.run(lambda: session.post(
                url, data=payload, headers=headers, timeout=timeout, allow_redirects=False))
        except (requests.RequestException, Overrun) as e:
            late = deadline.expired or isinstance(e, requests.Timeout)
            raise DeliveryError(f"{receiver(url)}: " + (f"no whole answer within {timeout} s"
                                                       if late else type(e).__name__),
                                unreachable=True) from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"{receiver(url)}: HTTP {response.status_code}")


def receiver(url: str) -> str:
    """Which receiver, for the log: its host and port (a URL's path or query may hold a
    token)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)

