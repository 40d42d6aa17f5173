"""The one way this client reads a body from the bridge: a JSON object, or nothing."""

from __future__ import annotations

from typing import Any

import requests


def json_object(response: requests.Response) -> dict[str, Any] | None:
    """The body as a JSON object (RFC 8259 §4), or None if it is not JSON or not an object:
    every document and answer the hand-off reads is an object, so a caller only asks "None?"."""
    try:
        body = response.json()
    except ValueError:  # requests' JSONDecodeError, whichever json library it uses
        return None
    return body if isinstance(body, dict) else None
