"""A bound on an exchange with another server as a whole, not on each read.

``requests``' and smtplib's timeouts restart with every byte: a server (or anything between)
that answers one byte at a time holds the caller as long as it likes — an IdP's worker waiting
for the bridge, the bridge's sender waiting for a webhook receiver or a mail server, a bridge
worker fetching a client's keys. A :class:`Deadline` shuts the exchange's connections down when
its time is up; the blocked read then ends at once and the exchange fails like any unreachable
server. The session from :func:`bounded_session` makes this possible: its connections are
watched by the deadline of the thread using them, from the moment their socket exists (before
TLS) and again on every request (a kept-alive connection). The one wait no shutdown ends, the
system resolver's (``getaddrinfo`` has no timeout of its own), is bounded by :meth:`Deadline.run`.

The bridge (``stepup-bridge``) uses this module too: one implementation for both.
"""

from __future__ import annotations

import contextlib
import functools
import http.cookiejar
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import requests

_current = threading.local()
T = TypeVar("T")

#: How long past the deadline :meth:`Deadline.run` still waits for an exchange to end by
#: itself, so that one cut off at its sockets fails with its own error (on a busy machine too).
GRACE = 1.0
#: Exchanges left behind in a process and still waiting (for a resolver that never answers,
#: say) before :meth:`Deadline.run` starts no more: threads must not pile up for ever.
#: Exchanges in time do not count: a busy server runs as many at once as it has threads, up
#: to :data:`MAX_RUNNING`, beyond which none starts either (a thread per request could else
#: start any number while the first ones are still within their time).
LEFT_BEHIND = 16
MAX_RUNNING = 256
_running = threading.BoundedSemaphore(MAX_RUNNING)


class _Behind:
    """How many exchanges their callers gave up on are still running, process-wide."""

    lock = threading.Lock()
    count = 0


class Overrun(TimeoutError):
    """The exchange had not ended when its time was up; the message is safe to log."""


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

    def run(self, exchange: Callable[[], T]) -> T:
        """``exchange()`` in a thread of its own, under this deadline: its result or its error
        here, or :class:`Overrun` if it has not ended by the deadline (and :data:`GRACE`).
        What only the deadline's shutdown ends has ended by then; an exchange still waiting
        for the resolver is left behind, and the connection it opens afterwards is shut down
        at once (:meth:`watch`), so nothing is sent late. While :data:`LEFT_BEHIND` such
        exchanges wait, or :data:`MAX_RUNNING` run, an exchange fails at once, unstarted."""
        with _Behind.lock:
            if _Behind.count >= LEFT_BEHIND:
                raise Overrun(f"not started: {LEFT_BEHIND} earlier exchanges still wait")
        if not _running.acquire(blocking=False):
            raise Overrun(f"not started: {MAX_RUNNING} exchanges run already")
        done: Future[T] = Future()
        state = {"over": False, "left": False}  # ended; given up on by its caller

        def target() -> None:
            _current.deadline = self  # the bounded session's connections find it here
            try:
                done.set_result(exchange())
            except BaseException as error:  # handed to the caller, whatever it is
                done.set_exception(error)
            finally:
                with _Behind.lock:
                    state["over"] = True
                    _Behind.count -= state["left"]
                _running.release()

        try:
            threading.Thread(target=target, name="stepup-exchange", daemon=True).start()
        except BaseException:
            _running.release()
            raise
        if not wait([done], timeout=self.left(float("inf")) + GRACE).done:
            self._expire()
            with _Behind.lock:
                if not state["over"]:
                    state["left"] = True
                    _Behind.count += 1
            raise Overrun(f"not done within {self.seconds:g} s")
        return done.result()

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


@functools.cache
def _adapter_class() -> type:
    """An adapter whose connections (direct or through a proxy) the deadline can end. Built
    on first use: the bridge's workers load ``requests`` only if they need it (5 MiB each)."""
    from requests.adapters import HTTPAdapter

    class BoundedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            _watching(self.poolmanager)

        def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
            return _watching(super().proxy_manager_for(*args, **kwargs))

    return BoundedAdapter


#: A cookie policy that neither stores nor sends any cookie: one client serves every user,
#: and nothing one exchange was told may ride along on another (no session affinity either).
NO_COOKIES = http.cookiejar.DefaultCookiePolicy(allowed_domains=[])


def bounded_session(session: requests.Session | None = None) -> requests.Session:
    """``session`` (or a new one) with the bounded adapters mounted and no cookie kept. One
    of the caller's already mounted on a longer http(s) prefix (a host's URL) is refused
    (``ValueError``): requests picks the longest prefix, so it would serve the bridge's calls
    without the bound. Other schemes (``file://``, ``http+unix://``) never serve them."""
    import requests

    session = session if session is not None else requests.Session()
    if mounted := [prefix for prefix in session.adapters
                   if prefix.lower().startswith(("http://", "https://"))
                   and prefix.lower() not in ("http://", "https://")]:
        raise ValueError(f"session has adapters mounted on {', '.join(mounted)}: they would "
                         "serve calls to those URLs without the client's timeout; give the "
                         "client a session without them")
    for prefix in ("http://", "https://"):
        session.mount(prefix, _adapter_class()())
    session.cookies.clear()
    session.cookies.set_policy(NO_COOKIES)
    return session
