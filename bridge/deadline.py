"""A bound on a whole exchange with another server, not on each read: a notification's
receiver or mail server, a client's JWKS endpoint.

Socket timeouts (smtplib's and requests') restart with every byte, so a server that answers
one byte at a time holds the caller as long as it likes: a sender's claim on an event lapses
(another sender sends it again, and the events behind it wait), a worker fetching keys serves
no one else. A :class:`Deadline` shuts the exchange's connections down when its time is up;
the blocked read then ends at once and the exchange fails like any other (a delivery is
retried, then given up). The one wait no shutdown ends, the system resolver's
(``getaddrinfo`` has no timeout of its own), is bounded by running the exchange in a thread of
its own (:meth:`Deadline.run`) and not waiting for it past the deadline.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

#: How long past the deadline :meth:`Deadline.run` still waits for an exchange to end by
#: itself, so that one cut off at its sockets fails with its own error (on a busy machine too).
GRACE = 1.0
#: Exchanges left behind in a process and still waiting (for a resolver that never answers,
#: say) before :meth:`Deadline.run` starts no more: threads must not pile up for ever.
LEFT_BEHIND = 16
_running = threading.BoundedSemaphore(LEFT_BEHIND)


class Overrun(TimeoutError):
    """The exchange had not ended when its time was up; the message is safe to log."""


class Deadline:
    """``with Deadline(seconds) as d:`` — connections handed to :meth:`watch` are shut down
    when ``seconds`` have passed and the block has not ended."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._closed = False
        self._ends = time.monotonic() + seconds
        self._copies: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def left(self, cap: float) -> float:
        """Seconds left (a little above zero once past), at most ``cap``: a connection attempt
        gets no more than what remains."""
        return min(max(self._ends - time.monotonic(), 0.001), cap)

    def watch(self, sock: socket.socket) -> None:
        """Watch a new connection's socket, before any TLS: a duplicate is kept, so shutting it
        down ends the connection whoever wraps or replaces the original (STARTTLS, TLS), and
        the duplicate's descriptor cannot be anyone else's until the block ends."""
        copy = sock.dup()
        with self._lock:
            if self.expired:  # too late, maybe an exchange left behind by run(): no sending
                _shut(copy)
            if self._closed:  # the block has ended: nothing left to watch
                copy.close()
                return
            self._copies.append(copy)

    def run(self, exchange: Callable[[], T]) -> T:
        """``exchange()`` in a thread of its own: its result or its error here, or
        :class:`Overrun` if it has not ended by the deadline (and :data:`GRACE`). What only
        the deadline's shutdown ends has ended by then; an exchange still waiting for the
        resolver is left behind, and the connection it opens afterwards is shut down at once
        (:meth:`watch`), so nothing is sent late. At most :data:`LEFT_BEHIND` wait at once;
        beyond them an exchange fails at once, unstarted."""
        if not _running.acquire(blocking=False):
            raise Overrun(f"not started: {LEFT_BEHIND} earlier exchanges still wait")
        done: Future[T] = Future()

        def target() -> None:
            try:
                done.set_result(exchange())
            except BaseException as error:  # handed to the caller, whatever it is
                done.set_exception(error)
            finally:
                _running.release()

        threading.Thread(target=target, name="stepup-exchange", daemon=True).start()
        if not wait([done], timeout=self.left(float("inf")) + GRACE).done:
            self._expire()
            raise Overrun(f"not done within {self.seconds:g} s")
        return done.result()

    def session(self) -> Any:
        """A requests session whose connections (direct, through an HTTP proxy or a SOCKS one)
        are watched from the moment their socket exists, and connect within the time left.
        urllib3 makes each connection from its pool class's ``ConnectionCls``,
        whose ``_new_conn`` opens the socket, before any TLS."""
        import requests  # only for webhooks and private_key_jwt clients: not in every worker
        from requests.adapters import HTTPAdapter

        outer = self

        def watched(base: type) -> type:
            class Watched(base):  # type: ignore[valid-type, misc]
                def _new_conn(self) -> Any:
                    if isinstance(self.timeout, int | float):
                        self.timeout = outer.left(self.timeout)
                    sock = super()._new_conn()
                    outer.watch(sock)
                    return sock
            return Watched

        def watching(manager: Any) -> Any:
            if not getattr(manager, "stepup_watched", False):  # proxy managers are cached
                manager.pool_classes_by_scheme = {
                    scheme: type(pool.__name__, (pool,),
                                 {"ConnectionCls": watched(pool.ConnectionCls)})
                    for scheme, pool in manager.pool_classes_by_scheme.items()}
                manager.stepup_watched = True
            return manager

        class Adapter(HTTPAdapter):
            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                super().init_poolmanager(*args, **kwargs)
                watching(self.poolmanager)

            def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
                return watching(super().proxy_manager_for(*args, **kwargs))

        session = requests.Session()
        for prefix in ("http://", "https://"):
            session.mount(prefix, Adapter())
        return session

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for copy in self._copies:
                _shut(copy)

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._timer.cancel()
        with self._lock:  # not while _expire shuts them down
            self._closed = True
            for copy in self._copies:
                copy.close()
            self._copies.clear()


def _shut(copy: socket.socket) -> None:
    """Shut the connection down (a plain socket's shutdown, never TLS's, which would first
    drop the TLS layer under a thread that is still writing). The reading side sees the end
    of the stream at once."""
    with contextlib.suppress(OSError):  # already disconnected
        copy.shutdown(socket.SHUT_RDWR)
