"""How a sign-in's attempts are judged and counted: the user's lock and growing delay, the
per-address window, the count-down before the lock (DESIGN.md "Rules the bridge keeps").
Every factor check of the challenge goes through here. No Flask."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..store import Flow, Tx, User
from ..throttle import IpLimiter, delay_after
from .errors import (
    FACTOR_RESET,
    LOCKED_AFTER_FAILURES,
    LOCKED_MESSAGE,
    N_,
    WAIT_MESSAGE,
    ChallengeError,
    FlowGone,
    Locked,
    TooSoon,
    WrongCode,
)
from .stages import DONE, LOCKED

if TYPE_CHECKING:
    from . import Policy

#: From how many remaining tries a wrong code's message warns of the coming lock (WCAG 3.3.4:
#: the user can still switch to the recovery code, or stop and ask the help desk).
TRIES_WARNING = 3


class Attempts:
    """The attempt rules of one :class:`~bridge.challenge.Challenge`, which hands over its
    policy, per-address limiter and clock (the only copies of them it reads)."""

    def __init__(self, policy: Policy, limiter: IpLimiter, clock: Callable[[], float]):
        self.policy, self.limiter, self.clock = policy, limiter, clock

    def blocked(self, tx: Tx, ip: str, now: float) -> TooSoon | None:
        """The refusal when the caller's address is over its window of wrong codes."""
        if self.limiter.blocked(tx, ip, now):
            return TooSoon(N_("Too many failed attempts from your network. Try again later."))
        return None

    def count_ip_failure(self, tx: Tx, flow: Flow, ip: str, now: float) -> None:
        """Count a wrong code against the caller's address. The one that closes its window is
        audited (``ip_window_closed``, with the client whose sign-in it was): codes sprayed
        over many users from one address reach the operator as a lockout of one user does."""
        if self.limiter.hit(tx, ip, now):
            tx.audit("ip_window_closed", now, client_id=flow.client_id, ip=ip)

    def admit(self, tx: Tx, flow: Flow, ip: str
              ) -> tuple[User, float, ChallengeError | None]:
        """Lock the user's row, then read the clock: an attempt that waited for the lock
        behind another one's failure is judged (and counted) at the time it got the row, not
        before that failure. Say why it may not even be looked at (lock, IP window, delay)."""
        user = tx.find_user(flow.subject, for_update=True)
        now = self.clock()
        if user is None:  # reset by the help desk mid-flow
            raise FlowGone(FACTOR_RESET)
        if user.locked_at is not None:
            # Locked from another tab or node: this flow shows the locked page from now on,
            # and its "Return to sign-in" tells the IdP the user is locked out.
            tx.advance_flow(flow.flow_id, flow.stage, stage=LOCKED)
            return user, now, Locked(LOCKED_MESSAGE)
        if refusal := self.blocked(tx, ip, now):
            return user, now, refusal
        # Never more than the delay: another node's clock may run ahead of this one's.
        delay = delay_after(user.failures)
        wait = min(delay, delay - (now - (user.last_failure_at or 0)))
        if wait > 0:
            return user, now, TooSoon(WAIT_MESSAGE, count=math.ceil(wait))
        return user, now, None

    def fail(self, tx: Tx, flow: Flow, ip: str, now: float, wrong: WrongCode, event: str,
             **detail: str | int) -> ChallengeError:
        """Count a failed attempt (user and IP); lock at the limit and say so. A lock ends
        every open sign-in of the user and voids their unredeemed codes. Short of the limit
        the refusal is ``wrong``, telling the user how many tries remain when few do."""
        self.count_ip_failure(tx, flow, ip, now)
        failures = tx.record_failure(flow.subject, now, self.policy.lockout_limit)
        tx.audit(event, now, subject=flow.subject, client_id=flow.client_id, ip=ip,
                 failures=failures, **detail)
        if failures == self.policy.failure_burst < self.policy.lockout_limit:
            tx.audit("failure_burst", now, subject=flow.subject, client_id=flow.client_id,
                     ip=ip, failures=failures)
        if failures < self.policy.lockout_limit:
            wrong.wait = delay_after(failures)
            return self.counted_down(wrong, failures)
        tx.lock_sign_ins(flow.subject, LOCKED, DONE)
        tx.audit("lockout", now, subject=flow.subject, client_id=flow.client_id, ip=ip)
        return Locked(LOCKED_AFTER_FAILURES)

    def counted_down(self, wrong: WrongCode, used: int, *, ends_setup: bool = False
                     ) -> WrongCode:
        """``wrong``, telling how many tries remain once few do (of ``lockout_limit``)."""
        if (left := self.policy.lockout_limit - used) <= TRIES_WARNING:
            wrong.tries_left, wrong.ends_setup = left, ends_setup
        return wrong
