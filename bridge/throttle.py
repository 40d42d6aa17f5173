"""Throttling of guesses (NIST SP 800-63B §5.2.2).

Per user: one consecutive-failure counter shared by TOTP and the recovery code, kept in the
database (see ``Tx.record_failure``); after a few free tries each further failure doubles the
wait before the next attempt is even looked at, and the user is locked at the limit.
Per client IP: a sliding window of failures, so one address cannot spray many users.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict, deque
from typing import Protocol

log = logging.getLogger("stepup")

#: Failures allowed before any delay; a typo or two should cost nothing.
FREE_FAILURES = 3
MAX_DELAY = 300


def delay_after(failures: int) -> int:
    """Seconds to wait after ``failures`` consecutive failures: 0, 0, 0, 2, 4, 8, ... ≤ 300."""
    if failures <= FREE_FAILURES:
        return 0
    return min(2 ** (failures - FREE_FAILURES), MAX_DELAY)


class IpLimiter(Protocol):
    def blocked(self, ip: str, now: float) -> bool: ...
    def hit(self, ip: str, now: float) -> None: ...


class MemoryIpLimiter:
    """In-process sliding window; enough for one node (several nodes share a Redis one)."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _trim(self, ip: str, now: float) -> deque[float]:
        hits = self._hits[ip]
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits:
            del self._hits[ip]
        return hits

    def blocked(self, ip: str, now: float) -> bool:
        with self._lock:
            return len(self._trim(ip, now)) >= self.limit

    def hit(self, ip: str, now: float) -> None:
        with self._lock:
            self._trim(ip, now)
            self._hits[ip].append(now)


class RedisIpLimiter:
    """The per-IP window in Redis, shared by every node (a sorted set of failure times per IP).

    If Redis cannot be reached the bridge keeps serving: this node falls back to its own
    in-process window and says so in the log (at most once a minute).
    """

    def __init__(self, url: str, limit: int, window: float, fallback: MemoryIpLimiter):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._errors = (redis.RedisError, OSError)
        self.limit, self.window, self.fallback = limit, window, fallback
        self._warned_at = float("-inf")

    def _key(self, ip: str) -> str:
        return f"stepup:ipfail:{ip}"

    def blocked(self, ip: str, now: float) -> bool:
        try:
            pipe = self._redis.pipeline()
            pipe.zremrangebyscore(self._key(ip), "-inf", now - self.window)
            pipe.zcard(self._key(ip))
            return pipe.execute()[1] >= self.limit
        except self._errors as e:
            self._degraded(e, now)
            return self.fallback.blocked(ip, now)

    def hit(self, ip: str, now: float) -> None:
        try:
            pipe = self._redis.pipeline()
            pipe.zadd(self._key(ip), {f"{now}:{uuid.uuid4().hex}": now})  # one member per hit
            pipe.expire(self._key(ip), int(self.window) + 1)
            pipe.execute()
        except self._errors as e:
            self._degraded(e, now)
        self.fallback.hit(ip, now)

    def _degraded(self, error: Exception, now: float) -> None:
        if now - self._warned_at >= 60:
            self._warned_at = now
            log.warning("redis unavailable (%s): per-IP limits are per node until it returns",
                        type(error).__name__)
