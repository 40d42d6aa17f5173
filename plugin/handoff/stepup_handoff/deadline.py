"""A bound on each exchange with the bridge as a whole, not on each read.

``requests``' timeouts restart with every byte: a bridge (or anything between) that answers
one byte at a time holds the IdP's worker as long as it likes. A :class:`Deadline` shuts the
exchange's connection down when its time is up; the blocked read then ends at once and the
exchange fails like any unreachable bridge. The session from :func:`bounded_session` makes
this possible: its connections are watched by the deadline of the thread using them, from the
moment their socket exists (before TLS) and again on every request (a kept-alive connection).

Not bounded: the system resolver (``getaddrinfo`` has no timeout of its own).
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import socket
import threading
import time
from types import TracebackType
from typing import Any

import requests
from requests.adapters import HTTPAdapter

_current = threading.local()


class Deadline:
    """``with Deadline(seconds) as d:`` — connections used by this thread inside the block are
    shut down when ``seconds`` have passed and the block has not ended."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._ends = time.monotonic() + seconds
        self._copies: list[socket.socket] = []
        self._closed = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._outer: Deadline | None = None

    def left(self, cap: float) -> float:
        """Seconds left (a little above zero once past), at most ``cap``."""
        return min(max(self._ends - time.monotonic(), 0.001), cap)

    def watch(self, sock: socket.socket) -> None:
        """Keep a duplicate of the connection's descriptor: shutting it down ends the
        connection whatever wraps it (TLS), and the descriptor stays ours until the end."""
        try:
            copy = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except (OSError, ValueError, AttributeError):  # closed, or no socket: nothing to watch
            return
        with self._lock:
            if self.expired:
                _shut(copy)
            if self._closed:
                copy.close()
                return
            self._copies.append(copy)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for copy in self._copies:
                _shut(copy)

    def __enter__(self) -> Deadline:
        self._outer = getattr(_current, "deadline", None)
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        _current.deadline = self._outer
        with self._lock:
            self._closed = True
            for copy in self._copies:
                copy.close()
            self._copies.clear()


def _shut(copy: socket.socket) -> None:
    """Shut the TCP connection down (never TLS's own shutdown): the reader sees its end."""
    with contextlib.suppress(OSError):  # already disconnected
        copy.shutdown(socket.SHUT_RDWR)


def _watched(base: type) -> type:
    """urllib3's connection class ``base``, its sockets watched by the thread's deadline.
    urllib3 opens a connection's socket in ``_new_conn`` and reads each answer in
    ``getresponse``, both on the thread that sends the request."""

    class Watched(base):  # type: ignore[valid-type, misc]
        def _new_conn(self) -> Any:
            deadline: Deadline | None = getattr(_current, "deadline", None)
            if deadline is not None and isinstance(self.timeout, int | float):
                self.timeout = deadline.left(self.timeout)  # connect within the time left
            sock = super()._new_conn()
            if deadline is not None:
                deadline.watch(sock)
                self.stepup_watched_by = deadline
            return sock

        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            deadline: Deadline | None = getattr(_current, "deadline", None)
            sock = getattr(self, "sock", None)
            watched = getattr(self, "stepup_watched_by", None)
            if deadline is not None and sock is not None and watched is not deadline:
                deadline.watch(sock)  # a kept-alive connection, opened in an earlier call
                self.stepup_watched_by = deadline
            return super().getresponse(*args, **kwargs)

    return Watched


def _watching(manager: Any) -> Any:
    if not getattr(manager, "stepup_watched", False):  # proxy managers are cached
        manager.pool_classes_by_scheme = {
            scheme: type(pool.__name__, (pool,), {"ConnectionCls": _watched(pool.ConnectionCls)})
            for scheme, pool in manager.pool_classes_by_scheme.items()
        }
        manager.stepup_watched = True
    return manager


class _BoundedAdapter(HTTPAdapter):
    """An adapter whose connections (direct or through a proxy) the deadline can end."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watching(self.poolmanager)

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        return _watching(super().proxy_manager_for(*args, **kwargs))


#: A cookie policy that neither stores nor sends any cookie: one client serves every user,
#: and nothing one exchange was told may ride along on another (no session affinity either).
NO_COOKIES = http.cookiejar.DefaultCookiePolicy(allowed_domains=[])


def bounded_session(session: requests.Session | None = None) -> requests.Session:
    """``session`` (or a new one) with the bounded adapters mounted and no cookie kept."""
    session = session if session is not None else requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, _BoundedAdapter())
    session.cookies.clear()
    session.cookies.set_policy(NO_COOKIES)
    return session
