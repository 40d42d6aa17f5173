"""A document fetched from the bridge (discovery, JWKS) and kept for a while.

No lock is held across the network, so one slow answer never stalls the logins that do not
need it: while a refresh is in flight, callers keep the value they have; only callers with
nothing usable wait for the one fetch in flight, and no longer than ``wait`` seconds. A failed
fetch is remembered :data:`RETRY_AFTER` seconds (callers get its error at once instead of each
sending a request to a bridge that is down), and the last good value is still served
:data:`GRACE` seconds past its age while refreshes fail. A fetch in flight longer than ``wait``
(stuck in the system resolver, which no timeout bounds) is abandoned: the next caller starts a
new one, and the abandoned one's result is dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import DiscoveryError, HandoffError

T = TypeVar("T")

#: Seconds a failed fetch is remembered before the next caller tries again.
RETRY_AFTER = 15.0
#: Seconds past ``max_age`` the last good value is still used while refreshes fail.
GRACE = 3600.0


class Cached(Generic[T]):
    """``fetch()``'s result, kept ``max_age`` seconds by ``clock``; one fetch at a time."""

    def __init__(
        self,
        fetch: Callable[[], T],
        *,
        what: str,
        clock: Callable[[], float],
        max_age: float,
        wait: float,
        retry_after: float = RETRY_AFTER,
        grace: float = GRACE,
    ) -> None:
        self._fetch = fetch
        self._what = what
        self._clock = clock
        self._max_age = max_age
        self._wait = wait
        self._retry_after = retry_after
        self._grace = grace
        self._lock = threading.Lock()  # guards the fields below; never held while fetching
        self._value: T | None = None
        self._at = 0.0
        self._failure: HandoffError | None = None
        self._failed_at = 0.0
        self._flight: threading.Event | None = None
        self._flight_at = 0.0

    def get(self, *, refresh: bool = False) -> tuple[T, bool]:
        """The value and whether this call fetched it. ``refresh``: fetch anew even if the
        value is fresh (or join the fetch already in flight)."""
        with self._lock:
            now = self._clock()
            if not refresh and self._usable(now, self._max_age):
                return self._value, False  # type: ignore[return-value]
            flight = self._flight
            if flight is not None and now - self._flight_at > self._wait:
                flight = None  # abandoned; its result will be dropped
            if flight is None:
                if now - self._failed_at < self._retry_after and self._failure is not None:
                    return self._fallback(now), False
                flight = self._flight = threading.Event()
                self._flight_at = now
                mine = True
            elif not refresh and self._usable(now, self._max_age + self._grace):
                return self._value, False  # type: ignore[return-value]  # being refreshed
            else:
                mine = False
        if not mine:
            flight.wait(self._wait)
            with self._lock:
                if self._flight is flight:  # still not done
                    if self._usable(self._clock(), self._max_age + self._grace):
                        return self._value, False  # type: ignore[return-value]
                    raise DiscoveryError(f"{self._what} still being fetched", error="unreachable")
                return self._fallback(self._clock()), False
        return self._run(flight)

    def _run(self, flight: threading.Event) -> tuple[T, bool]:
        """Fetch outside the lock, then swap the result (or the failure) in."""
        value: T | None = None
        failure: HandoffError | None = None
        try:
            value = self._fetch()
        except HandoffError as exc:
            failure = exc
        finally:
            with self._lock:
                now = self._clock()
                if self._flight is flight:  # not abandoned meanwhile
                    if value is not None:
                        self._value, self._at, self._failure = value, now, None
                    elif failure is not None:
                        self._failure, self._failed_at = failure, now
                    self._flight = None
                flight.set()
        if value is not None:
            return value, True
        with self._lock:
            return self._fallback(now), False

    def _usable(self, now: float, age: float) -> bool:
        return self._value is not None and now - self._at < age

    def _fallback(self, now: float) -> T:
        """After a failed fetch: the last good value within its grace, else the failure
        (a copy: one exception object is never raised in two threads)."""
        if self._usable(now, self._max_age + self._grace):
            return self._value  # type: ignore[return-value]
        failure = self._failure
        if failure is None:  # a concurrent fetch succeeded and its value is already stale
            raise DiscoveryError(f"{self._what} could not be fetched", error="unreachable")
        raise type(failure)(failure.description, error=failure.error)
