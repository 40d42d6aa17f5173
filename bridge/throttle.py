"""Throttling of guesses (NIST SP 800-63B §5.2.2).

Per user: one consecutive-failure counter shared by TOTP and the recovery code, kept in the
database (see ``Tx.record_failure``); after a few free tries each further failure doubles the
wait before the next attempt is even looked at, and the user is locked at the limit.
Per client IP: a sliding window of failures, so one address cannot spray many users; it is
shared by all workers and nodes (in the database, or in Redis when configured). An IPv6
client's window is its /64 (:func:`window_source`).
Per caller IP at the back channel: a second window, of failed client authentications at /par
and /token, so no address can guess a client's credentials (RFC 6749 §10.10).
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .store import Store, Tx

log = logging.getLogger("stepup")

#: Failures allowed before any delay; a typo or two should cost nothing.
FREE_FAILURES = 3
MAX_DELAY = 300


#: The IPv6 prefix one subscriber gets at least (RFC 6177, RFC 7421): each address in it is
#: theirs to use, so a window per address would give a guesser 2**64 fresh ones.
IPV6_PREFIX = 64


def window_source(ip: str) -> str:
    """What a per-IP window counts for a client address: an IPv4 address itself, an IPv6
    address its /64 ("2001:db8:1:2::/64"); anything else ("unknown") as it is."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 4:
        return ip
    return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))


def delay_after(failures: int) -> int:
    """Seconds to wait after ``failures`` consecutive failures: 0, 0, 0, 2, 4, 8, ... ≤ 300."""
    if failures <= FREE_FAILURES:
        return 0
    return min(2 ** (failures - FREE_FAILURES), MAX_DELAY)


class IpLimiter(Protocol):
    """The per-IP failure window. Both verbs run inside the caller's transaction, so a
    database-backed window commits (or rolls back) with the attempt it counts."""

    def blocked(self, tx: Tx, ip: str, now: float) -> bool: ...
    def hit(self, tx: Tx, ip: str, now: float) -> bool:
        """Count a failure; True when it is the one that closes the window."""
        ...
    def clear(self, tx: Tx, ip: str) -> int:
        """Forget the address's failures (``stepup ip unblock``): how many there were."""
        ...


class DatabaseIpLimiter:
    """The window in the bridge's database: shared by every worker of a node (gunicorn forks
    several) and by every node on the same database. Old rows go in housekeeping."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window

    def blocked(self, tx: Tx, ip: str, now: float) -> bool:
        source = window_source(ip)
        tx.lock_ip_window(source)  # held until this attempt's failure, if any, is counted
        return tx.count_ip_failures(source, now - self.window) >= self.limit

    def hit(self, tx: Tx, ip: str, now: float) -> bool:
        self.record(tx, ip, now)
        return tx.count_ip_failures(window_source(ip), now - self.window) == self.limit

    def record(self, tx: Tx, ip: str, now: float) -> None:
        """Count a failure without asking whether it closed the window (Redis answers that)."""
        tx.record_ip_failure(window_source(ip), now)

    def clear(self, tx: Tx, ip: str) -> int:
        return tx.clear_ip_failures(window_source(ip))


class RedisUnreachable(Exception):
    """Redis did not answer a change only it can make."""


class RedisIpLimiter:
    """The per-IP window in Redis, shared by every node (a sorted set of failure times per IP),
    for deployments that would rather keep its reads off the database (each failure is still
    recorded there too, for the fallback). The count and the add are separate round trips, so
    attempts from one address that arrive at the same moment may pass the limit by at most
    the number of attempts in flight at once (workers times nodes); the database window is exact.

    If Redis cannot be reached the bridge keeps serving: it falls back to the database window
    and says so in the log (at most once a minute).
    """

    def __init__(self, url: str, limit: int, window: float, fallback: DatabaseIpLimiter):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._errors = (redis.RedisError, OSError)
        self.limit, self.window, self.fallback = limit, window, fallback
        self._warned_at = float("-inf")

    def _key(self, ip: str) -> str:
        return f"stepup:ipfail:{window_source(ip)}"

    def blocked(self, tx: Tx, ip: str, now: float) -> bool:
        try:
            pipe = self._redis.pipeline()
            pipe.zremrangebyscore(self._key(ip), "-inf", now - self.window)
            pipe.zcard(self._key(ip))
            return pipe.execute()[1] >= self.limit
        except self._errors as e:
            self._degraded(e, now)
            return self.fallback.blocked(tx, ip, now)

    def hit(self, tx: Tx, ip: str, now: float) -> bool:
        try:
            pipe = self._redis.pipeline()
            pipe.zadd(self._key(ip), {f"{now}:{uuid.uuid4().hex}": now})  # one member per hit
            pipe.expire(self._key(ip), int(self.window) + 1)
            pipe.zcard(self._key(ip))
            closed = pipe.execute()[2] == self.limit
        except self._errors as e:
            self._degraded(e, now)
            return self.fallback.hit(tx, ip, now)
        self.fallback.record(tx, ip, now)
        return closed

    def clear(self, tx: Tx, ip: str) -> int:
        """Both windows: the one counted here and the database's (the fallback, which holds
        every failure too). Redis unreachable: an error, the database's left as it was."""
        try:
            pipe = self._redis.pipeline()
            pipe.zcard(self._key(ip))
            pipe.delete(self._key(ip))
            counted = pipe.execute()[0]
        except self._errors as e:
            raise RedisUnreachable(f"redis unreachable ({type(e).__name__}): nothing was "
                                   "cleared; try again once it answers") from None
        return max(counted, self.fallback.clear(tx, ip))

    def health(self) -> str:
        """For /readyz: "ok", or why not (the node still serves: it counts in the database)."""
        try:
            self._redis.ping()
        except self._errors as e:
            return f"unavailable ({type(e).__name__}): counting in the database"
        return "ok"

    def _degraded(self, error: Exception, now: float) -> None:
        if now - self._warned_at >= 60:
            self._warned_at = now
            log.warning("redis unavailable (%s): the per-IP limit is counted in the database "
                        "until it returns", type(error).__name__)


class ClientAuthWindow:
    """Failed client authentications per caller address and claimed client: a registered
    client's id, or '' for every unknown one. Apart from the code window, so users guessing
    codes behind an IdP's address never close its back channel, and apart per client, so one
    realm's wrong secret never closes another's. Only a tried credential counts (a secret or
    an assertion's signature checked against a client looked up): a request with none, or
    with an assertion refused unread, guesses nothing. At ``limit`` failures within
    ``window`` seconds the pair is refused before any credential is looked at, the right one
    too, so guesses past the limit learn nothing; it is let in again as the failures age out.

    Always in the database, Redis or not: :meth:`blocked` is one indexed count in the read
    that looks the client up. The count and the failure are not serialized: attempts at the
    same moment may pass the limit by the number in flight, as the Redis code window may."""

    def __init__(self, store: Store, limit: int, window: float):
        self.store, self.limit, self.window = store, limit, window

    def blocked(self, tx: Tx, ip: str, client_id: str, now: float) -> bool:
        return tx.count_ip_failures(window_source(ip), now - self.window, client_id
                                    ) >= self.limit

    def hit(self, ip: str, client_id: str, now: float) -> bool:
        """Count a failure; True when it closes the window. Not synced to disk: a failure lost
        to a power cut only gives one guess back."""
        source = window_source(ip)
        with self.store.autocommit(durable=False) as tx:
            tx.record_ip_failure(source, now, client_id)
            closed = tx.count_ip_failures(source, now - self.window, client_id) == self.limit
        if closed:  # once per closing: refused attempts are not counted
            log.warning("client authentication failed %d times from %s for client %r within "
                        "%d s: /par and /token refuse that address for that client until the "
                        "failures age out", self.limit, source, client_id, self.window)
        return closed
