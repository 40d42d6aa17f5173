"""A bound on a whole exchange with a receiver, not on each read.

Socket timeouts (smtplib's and requests') restart with every byte, so a receiver that answers
one byte at a time holds a sender as long as it likes: its claim on the event lapses, another
sender sends the event again, and the events behind it wait. A :class:`Deadline` shuts the
exchange's sockets down when its time is up; the blocked read then ends at once and the
delivery fails like any other (retried, then given up).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType


class Deadline:
    """``with Deadline(seconds) as d:`` — sockets handed to :meth:`watch` are shut down when
    ``seconds`` have passed and the block has not ended."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[Callable[[], socket.socket | None]] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def watch(self, current: Callable[[], socket.socket | None]) -> None:
        """Shut down whatever socket ``current`` returns at expiry: a connection replaces its
        socket when it starts TLS, so the socket is looked up then, not now."""
        with self._lock:
            self._sockets.append(current)
            late = self.expired
        if late:
            _shut(current())

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for current in sockets:
            _shut(current())

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket | None) -> None:
    """Shut down (not close: the reading thread still owns it) — the read returns at once. A
    socket already closed is left alone: its descriptor may belong to someone else by now."""
    if sock is None or sock.fileno() < 0:
        return
    with contextlib.suppress(OSError):  # already disconnected
        sock.shutdown(socket.SHUT_RDWR)
