"""The step-up challenge, from a pushed request to an authorization code. No Flask in here.

One login, in order (each step is one method below):

1. :meth:`Challenge.begin` — the browser's ``request_uri`` takes the pushed request (once) and
   it becomes a *flow*: TOTP for a known user, enrollment for a new one (if the client allows
   it), or the locked page.
2. :meth:`Challenge.verify_totp` / :meth:`Challenge.verify_recovery` /
   :meth:`Challenge.verify_enrollment` — check the factor under the throttling rules.
3. A recovery code (or a new enrollment) only *stages* a new recovery code in the flow;
   :meth:`Challenge.confirm_saved` makes it the user's code and issues the authorization code
   in one transaction, once the user confirms they saved it (unless the IdP's ``max_age`` ran
   out meanwhile: the code is kept, and a factor is asked for again first).
4. Optionally, after a recovery-code login only, :meth:`Challenge.verify_reenrollment`
   replaces a lost authenticator first.
5. The result is always a redirect back to the IdP: ``code``+``state``+``iss`` or an error.

Every stage change is a compare-and-set on the flow's stage, so a double-posted form or two
tabs cannot run a step twice; every factor rule is enforced by the store's atomic verbs.
Each attempt is admitted and counted by :mod:`.attempts`; what the user is told is in
:mod:`.errors`; a flow's stages are :mod:`.stages`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NoReturn
from urllib.parse import urlencode

from stepup_handoff.assertion import LEEWAY

from ..factors import OTP, RECOVERY_CODE, recovery, totp
from ..helpdesk import why_locked
from ..keyring import ServerSecrets
from ..store import Code, Flow, Store, Tx, User, token_digest
from ..text import CLIENT_ID_LIMIT, REQUEST_URI_LIMIT, is_protocol_value
from ..throttle import IpLimiter
from .attempts import Attempts
from .errors import (
    ALREADY_COMPLETE,
    FACTOR_RESET,
    FLOW_ENDED,
    N_,
    STEP_DONE,
    AuthenticateAgain,
    ChallengeError,
    ClockDrift,
    EnrolledElsewhere,
    FlowGone,
    LinkExpired,
    MovedOn,
    WrongCode,
)
from .stages import DONE, ENROLL, ENROLL_SAVED, LOCKED, NOT_ENROLLED, REENROLL, ROTATE, TOTP

#: What a finished flow keeps of what the IdP pushed: its page's language, and the way back.
_KEPT_PARAMS = ("ui_locales", "redirect_uri", "state")
#: A sign-in lives at most this many times ``flow_ttl`` from its opening (ASVS 5.0 V7.3.2):
#: "More time" gives another ``flow_ttl`` up to there, and then the pages offer it no more.
#: Asked for at each warning, it so works at least ten times, as WCAG 2.2.1 asks.
LONGEST_FLOW = 11


def _kept(flow: Flow) -> dict:
    return {k: flow.params[k] for k in _KEPT_PARAMS if k in flow.params}


#: Seconds past ``max_age`` a sign-in may still end with the factor's ``auth_time``: reading a
#: code and ticking a box is not what ``max_age`` is about. The hand-off client allows 30 s of
#: clock leeway (its ``LEEWAY``); 10 of them are left for the way to the IdP and its token
#: request, so no assertion this lets through is refused there.
MAX_AGE_GRACE = LEEWAY - 10


@dataclass(frozen=True)
class Policy:
    issuer: str
    acr: str
    lockout_limit: int
    flow_ttl: int
    code_ttl: int
    totp_issuer: str
    #: Seconds either side of now in which a refused code is recognised as a wrong clock.
    totp_search_window: int
    #: Consecutive failures that make a ``failure_burst`` event (0: none).
    failure_burst: int


@dataclass(frozen=True)
class Enrollment:
    """What the enrollment page shows."""

    secret: str
    uri: str
    account: str


def _six_digits(code: str) -> str:
    """The typed code as its digits, or a :class:`WrongCode` asking for them: an empty or
    malformed code could never match, so it is no attempt and counts for nothing."""
    code = totp.normalize(code)
    if not totp.well_formed(code):
        raise WrongCode(N_("Enter the %(digits)s-digit code from your authenticator app."),
                        digits=totp.DIGITS)
    return code


class Challenge:
    def __init__(self, store: Store, server_secrets: ServerSecrets, policy: Policy,
                 limiter: IpLimiter, clock: Callable[[], float] = time.time):
        self.store, self.policy, self.clock = store, policy, clock
        self.pepper, self.vault = server_secrets.pepper, server_secrets.vault
        self.attempts = Attempts(policy, limiter, clock)

    # -- 1. begin ---------------------------------------------------------------------------
    def begin(self, client_id: str, request_uri: str, binding: str) -> Flow:
        """RFC 9126 §4: take the pushed request named by ``request_uri`` (once, and only for
        the client that pushed it) and open a flow for it, bound to this browser."""
        now = self.clock()
        flow_id = secrets.token_urlsafe(24)
        # Not synced to disk: a power cut may take back only this commit and what followed it
        # unsynced (Store.begin). Then the pushed request is open again until it expires (a
        # minute) and the flow is gone: the user starts again, and pushes it again; nothing
        # spent comes back.
        with self.store.begin(durable=False) as tx:
            client = (tx.find_client(client_id)
                      if is_protocol_value(client_id, CLIENT_ID_LIMIT) else None)
            params = (tx.consume_pushed(request_uri, client_id, now)
                      if client and is_protocol_value(request_uri, REQUEST_URI_LIMIT) else None)
            if client is None or params is None or params.get(
                    "registered_at", client.created_at) != client.created_at:
                raise LinkExpired(N_("It was already used or is too old. Go back to your "
                                     "sign-in page and start again."))
            subject = params["login_hint"]
            user = tx.find_user(subject)
            if user and user.locked_at is not None:
                stage = LOCKED
            elif user:
                stage = TOTP
            elif client.allow_enrollment and params.get("allow_enrollment", True):
                stage = ENROLL
            else:
                stage = NOT_ENROLLED
            flow = Flow(flow_id=flow_id, binding=token_digest(binding),
                        client_id=client.client_id, subject=subject,
                        params={**params, "opened_at": now}, stage=stage,
                        attempts=0, pending_secret=None, pending_step=None, staged_code=None,
                        replaces_version=None, factor=None, auth_time=None,
                        expires_at=now + self.policy.flow_ttl)
            tx.save_flow(flow)
        if stage == ENROLL:
            # The page shows the secret at once and it goes into the user's app: stored in a
            # synced commit, so a power cut cannot leave a dead entry there.
            pending = self.vault.seal("pending_secret", flow_id, totp.new_secret())
            with self.store.begin() as tx:
                tx.advance_flow(flow_id, ENROLL, pending_secret=pending)
            flow = replace(flow, pending_secret=pending)
        return flow

    def find(self, flow_id: str, binding: str) -> Flow:
        with self.store.autocommit() as tx:
            flow = tx.find_flow(flow_id, self.clock())
        # DONE: ended as it was finished; another node's clock may be behind this one's.
        if flow is None or flow.stage == DONE or not secrets.compare_digest(
                flow.binding, token_digest(binding)):
            raise FlowGone(FLOW_ENDED)
        return flow

    def find_ended(self, flow_id: str, binding: str) -> Flow | None:
        """This browser's sign-in that ran out or was finished (DONE), while it is kept: for
        what its page says of it only."""
        with self.store.autocommit() as tx:
            flow = tx.find_ended_flow(flow_id, self.clock())
        if flow is None or not secrets.compare_digest(flow.binding, token_digest(binding)):
            return None
        return flow

    # -- 2. verify a factor ---------------------------------------------------------------
    # Each check is one transaction holding the user's row (SELECT … FOR UPDATE): the lock and
    # delay test, the comparison and the counting cannot be interleaved by parallel guesses.
    # The lockout invariant: a refusal is *returned* inside the transaction and *raised* only
    # after the ``with`` block, so the failure it records (count, lock, IP window, audit)
    # commits; raising inside would roll the count back and give a guesser unlimited tries.
    def verify_totp(self, flow: Flow, code: str, ip: str, new_recovery_code: bool = False
                    ) -> str | None:
        """TOTP for a known user; on success returns the redirect back to the IdP — or, when
        the user asked for a new recovery code, stages one (None: show it) without the old
        code having been used: regeneration needs no MFA reset, only a fresh TOTP check."""
        self._precheck(flow, TOTP)  # first: a form from a step done says so, not "6 digits"
        code = _six_digits(code)
        with self.store.begin() as tx:
            user, now, refusal = self.attempts.admit(tx, flow, ip)
            if refusal is None:
                secret = self._totp_secret(user)
                step = totp.match_step(secret, code, now, user.totp_drift)
                # A step whose code a clock hint revealed is never accepted (docs/security.md).
                if step is not None and step != user.totp_hinted_step and tx.accept_totp_step(
                        user.subject, step, drift=totp.drift_after(step, now)):
                    if user.failures:  # the row is locked: the count is current
                        tx.clear_failures(user.subject)
                    self._remember_contact(tx, flow, now, ip)
                    tx.audit("success", now, subject=user.subject, client_id=flow.client_id,
                             ip=ip, factor=OTP)
                    if new_recovery_code:
                        if not self._stage_new_code(tx, flow, TOTP, ROTATE, user.recovery_version,
                                                    factor=OTP, auth_time=now):
                            raise MovedOn(ALREADY_COMPLETE)
                        return None
                    if not tx.finish_flow(flow.flow_id, TOTP, DONE, now, _kept(flow)):
                        raise MovedOn(ALREADY_COMPLETE)
                    return self._issue(tx, flow, [OTP], now)
                replay = step is not None
                if replay and self._moved_on(tx, flow, now):
                    # The same form posted twice (a double click): the other post spent
                    # the step on this very flow. Not a guess, so nothing is counted.
                    raise MovedOn(ALREADY_COMPLETE)
                wrong = WrongCode(
                    N_("That code has already been used. Wait for your app to show a new one.")
                    if replay else
                    N_("That code didn't work. Check your authenticator app and try again."))
                if not replay and (off := self._off_clock(secret, code, now)) is not None:
                    # A step that may still come is burned before its code is confirmed.
                    live_from = totp.oldest_acceptable_step(now)
                    if off.step < live_from or tx.hint_totp_step(user.subject, off.step,
                                                                 live_from):
                        wrong = off
                # A wrong clock is audited as one (the device's offset, in seconds): the help
                # desk tells an app to fix from someone guessing.
                drift = {"clock_offset": wrong.offset} if isinstance(wrong, ClockDrift) else {}
                refusal = self.attempts.fail(tx, flow, ip, now, wrong,
                                             "replay" if replay else "failure", factor=OTP,
                                             **drift)
        raise refusal

    def verify_recovery(self, flow: Flow, text: str, ip: str) -> None:
        """A correct recovery code stages a replacement; nothing changes for the user yet."""
        self._precheck(flow, TOTP)
        canonical = recovery.normalize(text)
        if canonical is None:
            raise WrongCode(N_("Enter your recovery code: 25 letters and digits, like "
                               "ABCDE-FGHJK-MNPQR-STVWX-YZ234."))
        with self.store.begin() as tx:
            user, now, refusal = self.attempts.admit(tx, flow, ip)
            if refusal is None:
                if secrets.compare_digest(recovery.keyed_digest(self.pepper, canonical),
                                          user.recovery_digest):
                    if not self._stage_new_code(tx, flow, TOTP, ROTATE, user.recovery_version,
                                                factor=RECOVERY_CODE, auth_time=now):
                        raise MovedOn(ALREADY_COMPLETE)
                    if user.failures:  # the row is locked: the count is current
                        tx.clear_failures(user.subject)
                    self._remember_contact(tx, flow, now, ip)
                    tx.audit("recovery_code_used", now, subject=user.subject,
                             client_id=flow.client_id, ip=ip)
                    return
                refusal = self.attempts.fail(
                    tx, flow, ip, now,
                    WrongCode(N_("That recovery code didn't work. Check it and try again. "
                                 "Each code works once: if you saved a newer one since, use "
                                 "that one.")),
                    "failure", factor=RECOVERY_CODE)
        raise refusal

    def verify_enrollment(self, flow: Flow, code: str, ip: str) -> None:
        """The first code from a newly scanned authenticator; its time step is then spent."""
        step = self._check_new_authenticator(flow, ENROLL, code, ip)
        with self.store.begin() as tx:
            if not self._stage_new_code(tx, flow, ENROLL, ENROLL_SAVED, 0, factor=OTP,
                                        auth_time=self.clock(), pending_step=step):
                raise MovedOn(ALREADY_COMPLETE)

    # -- 3. the user saved the new recovery code -------------------------------------------
    def offers_reenrollment(self, flow: Flow) -> bool:
        """Only a recovery-code login may go on to replace the authenticator: after a TOTP
        check the user plainly still has it."""
        return flow.stage == ROTATE and flow.factor == RECOVERY_CODE

    def confirm_saved(self, flow: Flow, ip: str, saved: bool, reenroll: bool = False
                      ) -> str | None:
        """Commit the staged recovery code and issue the code, in one transaction, once the
        user confirms they ``saved`` it (nothing changes without that).

        Returns the redirect to the IdP, or None when the user goes on to set up a new
        authenticator first (``reenroll``, honoured where :meth:`offers_reenrollment`).
        Raises :class:`AuthenticateAgain`, the code committed, when the IdP's ``max_age`` ran
        out since the factor was checked.
        """
        if flow.stage not in (ENROLL_SAVED, ROTATE):
            raise MovedOn(STEP_DONE)
        if not saved:
            raise ChallengeError(N_("Tick the box to confirm you have saved this recovery code. "
                                    "You cannot continue without it."))
        reenroll = reenroll and self.offers_reenrollment(flow)
        now = self.clock()
        if flow.stage == ENROLL_SAVED:
            try:
                with self.store.begin() as tx:
                    target = self._commit_enrollment(tx, flow, ip, now)
            except EnrolledElsewhere:
                with self.store.begin() as tx:  # the loser's flow ends too: no dead end
                    tx.end_flow(flow.flow_id, ENROLL_SAVED)
                raise
            if target is None:  # enrolled: now a code from the new authenticator
                raise AuthenticateAgain()
            return target
        with self.store.begin() as tx:
            # The user's row first (the order every writer keeps), then this flow read again
            # under it: a second post of this very page (a double click, a retry) waits here
            # for the first and finds its flow finished, not a rotation by another sign-in;
            # a help-desk reset that came first is said as one.
            if tx.find_user(flow.subject, for_update=True) is None:
                raise FlowGone(FACTOR_RESET)
            current = tx.find_flow(flow.flow_id, now)
            if flow.stage != ROTATE or current is None or current.stage != ROTATE:
                raise MovedOn(ALREADY_COMPLETE)
            flow = current
            new_digest = recovery.keyed_digest(self.pepper, self.staged_code(flow))
            rotated = tx.rotate_recovery(flow.subject, flow.replaces_version or 0, new_digest)
            if rotated:
                tx.audit("rotation", now, subject=flow.subject, client_id=flow.client_id, ip=ip)
                if reenroll:
                    pending = self.vault.seal("pending_secret", flow.flow_id, totp.new_secret())
                    if not tx.advance_flow(flow.flow_id, ROTATE, stage=REENROLL,
                                           staged_code=None, pending_secret=pending):
                        raise MovedOn(ALREADY_COMPLETE)
                    return None
                if not self._leave(tx, flow, ROTATE, now):
                    return self._issue(tx, flow, [flow.factor], now)
        if rotated:  # committed: the new code counts; a code is asked for once more
            raise AuthenticateAgain()
        self._lose_rotation(flow, ip, now)

    def _lose_rotation(self, flow: Flow, ip: str, now: float) -> NoReturn:
        """Another flow rotated this user's code first: this staged code must never work."""
        with self.store.begin() as tx:
            if tx.end_flow(flow.flow_id, ROTATE):  # once, whichever request saw it first
                tx.audit("rotation_lost", now, subject=flow.subject, client_id=flow.client_id,
                         ip=ip)
        raise FlowGone(N_("Your recovery code was just replaced in another sign-in, so this "
                          "one cannot finish, and the new code this page showed will never "
                          "work: do not keep it. The code from the other sign-in is your "
                          "recovery code now."))

    def keep_current_code(self, flow: Flow) -> str:
        """The user asked for a new recovery code after a TOTP check, then chose to keep the
        one they have: the staged code is dropped (it never worked) and the sign-in ends as
        the TOTP check alone would have. Not after a recovery-code sign-in: that code is
        spent, and only saving its replacement goes on."""
        # The shown code was dropped: if asked again, it is no way in.
        return self._finish_as_checked(flow, ROTATE, OTP, code_saved=False)

    def skip_reenrollment(self, flow: Flow) -> str:
        """After a recovery-code sign-in and its saved replacement, the user chose not to set
        up a new authenticator now: the sign-in ends on the recovery code, as if they had not
        asked (their authenticator stays as it was; the saved code is theirs)."""
        return self._finish_as_checked(flow, REENROLL, RECOVERY_CODE, code_saved=True)

    def _finish_as_checked(self, flow: Flow, stage: str, factor: str, *,
                           code_saved: bool) -> str:
        """End the sign-in on the factor checked already, leaving an optional step out."""
        now = self.clock()
        with self.store.begin() as tx:
            # Read inside the transaction: the flow must still be at that step, after that
            # factor (not one that went back to the code page and on with another).
            flow = tx.find_flow(flow.flow_id, now)
            if flow is None or flow.stage != stage or flow.factor != factor:
                raise MovedOn(STEP_DONE)
            if not self._leave(tx, flow, stage, now):
                return self._issue(tx, flow, [factor], now)
        raise AuthenticateAgain(code_saved=code_saved)

    # -- 4. replace a lost authenticator ----------------------------------------------------
    def verify_reenrollment(self, flow: Flow, code: str, ip: str) -> str:
        step = self._check_new_authenticator(flow, REENROLL, code, ip)
        now = self.clock()
        with self.store.begin() as tx:
            # The user's row first, then the flow: the order every writer keeps (no deadlock
            # with a help-desk reset or a lock).
            if tx.find_user(flow.subject, for_update=True) is None:
                raise FlowGone(FACTOR_RESET)
            again = self._leave(tx, flow, REENROLL, now)
            sealed = self.vault.seal("totp_secret", flow.subject, self._open_pending(flow))
            tx.replace_totp(flow.subject, sealed, step)
            tx.audit("reenrollment", now, subject=flow.subject, client_id=flow.client_id, ip=ip)
            if not again:
                # The factor that opened this flow, then the authenticator just set up (RFC 8176).
                return self._issue(tx, flow, [flow.factor, OTP], now)
        raise AuthenticateAgain()

    # -- 5. leave ---------------------------------------------------------------------------
    def cancel(self, flow: Flow, ip: str) -> str:
        """The user cancelled (or acknowledged a lock): ``error=access_denied`` to the IdP."""
        now = self.clock()
        with self.store.begin() as tx:
            if not tx.end_flow(flow.flow_id, flow.stage):
                raise MovedOn(ALREADY_COMPLETE)
            tx.audit("cancel", now, subject=flow.subject, client_id=flow.client_id, ip=ip,
                     stage=flow.stage)
        description = {LOCKED: "The user is locked out.",
                       NOT_ENROLLED: "The user has no second factor."}.get(
            flow.stage, "The user cancelled.")
        return self._redirect(flow, error="access_denied", error_description=description)

    def way_back(self, flow: Flow) -> str:
        """The IdP's answer for a sign-in that ended without an assertion (too many wrong
        setup codes, or another sign-in finished first): ``error=access_denied``, which
        brings the user back to their sign-in page. A link for the user to follow, not a
        step: it changes nothing here, and the flow is gone."""
        return self._redirect(flow, error="access_denied",
                              error_description="The sign-in ended without a second factor.")

    # -- what the pages show ----------------------------------------------------------------
    def setup_still_open(self, flow: Flow, ip: str) -> None:
        """A new secret or code is shown (or downloaded) only while it can still work: a new
        user's setup until another sign-in finished one (EnrolledElsewhere), a replacement
        recovery code until another sign-in replaced the code it replaces (the rotation is
        lost). Then this flow ends here, saying why, rather than asking the user to scan a code
        or keep one that never works. Other stages need no look."""
        if flow.stage not in (ENROLL, ENROLL_SAVED, ROTATE):
            return
        with self.store.autocommit() as tx:  # a read; the write only when it has to end
            user = tx.find_user(flow.subject)
        if flow.stage == ROTATE:
            if user is not None and user.recovery_version != flow.replaces_version:
                self._lose_rotation(flow, ip, self.clock())
            return
        if user is None:
            return
        with self.store.begin() as tx:
            self._end_if_enrolled_elsewhere(tx, flow)
        raise EnrolledElsewhere()

    def enrollment(self, flow: Flow) -> Enrollment:
        secret = self._open_pending(flow)
        account = flow.params.get("preferred_username") or flow.subject
        uri = totp.provisioning_uri(secret, self.policy.totp_issuer, account)
        return Enrollment(secret=secret, uri=uri, account=account)

    def extend(self, flow: Flow) -> None:
        """More time, as the user asked before the flow ran out (WCAG 2.2.1): another
        ``flow_ttl`` from now, up to the flow's longest life; nothing once it has that. Not
        synced to disk: an extension lost to a power cut only means the user starts again."""
        now = self.clock()
        until = min(now + self.policy.flow_ttl, self._longest_end(flow, now))
        if until <= flow.expires_at:
            return
        # A flow a node of an earlier release opened is given its opening time now, once:
        # its longest life then counts from here rather than from each click.
        stamped = None if "opened_at" in flow.params else {**flow.params, "opened_at": now}
        with self.store.autocommit(durable=False) as tx:
            extended = tx.extend_flow(flow.flow_id, flow.stage, now, until, stamped)
        if not extended:
            raise FlowGone(FLOW_ENDED)

    def more_time_left(self, flow: Flow) -> bool:
        """Whether "More time" can still push the flow's end back."""
        return flow.expires_at < self._longest_end(flow, self.clock())

    def _longest_end(self, flow: Flow, now: float) -> float:
        # A flow a node of an earlier release opened has no opening time until its first
        # extension (extend): counted from now.
        opened = flow.params.get("opened_at", now)
        return opened + LONGEST_FLOW * self.policy.flow_ttl

    def seconds_left(self, flow: Flow) -> int:
        return max(0, int(flow.expires_at - self.clock()))

    def lock_reason(self, flow: Flow) -> str | None:
        """Why the user is locked, for the locked page: ``"failures"`` (too many wrong codes)
        or ``"not_me"`` (the "this wasn't me" link), from the audit event that locked them;
        None if the user is no longer locked (unlocked or reset since) or it is not recorded."""
        with self.store.autocommit() as tx:
            user = tx.find_user(flow.subject)
            if user is None or user.locked_at is None:
                return None
            return why_locked(tx, flow.subject).reason

    def staged_code(self, flow: Flow) -> str:
        if not flow.staged_code:
            raise FlowGone(N_("There is no new recovery code in this sign-in."))
        return self.vault.open("staged_code", flow.flow_id, flow.staged_code)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _precheck(flow: Flow, stage: str) -> None:
        """Refuse before any database work: a step already done."""
        if flow.stage != stage:
            raise MovedOn(STEP_DONE)

    @staticmethod
    def _moved_on(tx: Tx, flow: Flow, now: float) -> bool:
        """Whether another request finished this flow's step since it was read."""
        current = tx.find_flow(flow.flow_id, now)
        return current is None or current.stage != flow.stage

    def _check_new_authenticator(self, flow: Flow, stage: str, code: str, ip: str) -> int:
        """Verify the first code of a newly scanned secret (enrollment or re-enrollment)."""
        self._precheck(flow, stage)
        code = _six_digits(code)
        now = self.clock()
        secret = self._open_pending(flow)
        step = totp.match_step(secret, code, now)
        with self.store.begin() as tx:
            if refusal := self.attempts.blocked(tx, ip, now):
                raise refusal
            # Right code or wrong, a setup another sign-in finished first can never finish:
            # it ends, and nothing is counted (not a guess).
            elsewhere = stage == ENROLL and self._end_if_enrolled_elsewhere(tx, flow)
            if step is not None and not elsewhere:
                return step
            if not elsewhere:
                # A new entry in the same app under the same name: its old code is the likely
                # slip. Said as such (still counted: the page cannot tell it from a guess).
                old = stage == REENROLL and self._from_replaced_app(tx, flow, code, now)
                self.attempts.count_ip_failure(tx, flow, ip, now)
                attempts = tx.count_flow_attempt(flow.flow_id)
                tx.audit("failure", now, subject=flow.subject, client_id=flow.client_id, ip=ip,
                         factor="enrollment", attempts=attempts)
                if attempts >= self.policy.lockout_limit:
                    tx.end_flow(flow.flow_id, stage)
        if elsewhere:
            raise EnrolledElsewhere()
        if attempts >= self.policy.lockout_limit:
            # The next setup shows a new key: an entry added for this one would never work.
            raise FlowGone(N_("Too many wrong codes. Delete the entry you added to your "
                              "authenticator app for this setup, then start again from your "
                              "sign-in page: you will get a new key."))
        if old:
            wrong = WrongCode(N_("That code is from the authenticator you are replacing. Enter "
                                 "the code from the new entry you just added."))
        elif stage == REENROLL:
            # Not "delete the entry you scanned before": the old authenticator's entry, under
            # the same name, still works until this setup ends.
            wrong = self._off_clock(secret, code, now) or WrongCode(N_(
                "That code didn't match. Enter the code your app shows now for the entry you "
                "just added (usually the last one in its list), and check that your device's "
                "clock is right. Keep your old entry until this setup is finished."))
        else:
            wrong = self._off_clock(secret, code, now) or WrongCode(N_(
                "That code didn't match. Check that your app's clock is right and enter the "
                "code it shows now. If you scanned a QR code on an earlier visit, delete that "
                "entry in your app and scan this one."))
        raise self.attempts.counted_down(wrong, attempts, ends_setup=True)

    def _from_replaced_app(self, tx: Tx, flow: Flow, code: str, now: float) -> bool:
        """Whether ``code`` is one the user's current authenticator shows now (±1 step)."""
        user = tx.find_user(flow.subject)
        return user is not None and totp.match_step(self._totp_secret(user), code, now) is not None

    def _off_clock(self, secret: str, code: str, now: float) -> ClockDrift | None:
        """A code that matches a step minutes away: the device's clock is wrong (RFC 6238 §6)."""
        step = totp.off_clock_step(secret, code, now, self.policy.totp_search_window)
        if step is None:
            return None
        return ClockDrift((step - int(now // totp.PERIOD)) * totp.PERIOD, step)

    @staticmethod
    def _end_if_enrolled_elsewhere(tx: Tx, flow: Flow) -> bool:
        """End this flow if another sign-in set its new user up; whether it did."""
        if tx.find_user(flow.subject) is None:
            return False
        tx.end_flow(flow.flow_id, flow.stage)
        return True

    def _stage_new_code(self, tx: Tx, flow: Flow, from_stage: str, to_stage: str,
                        version: int, **changes) -> bool:
        sealed = self.vault.seal("staged_code", flow.flow_id, recovery.generate())
        return tx.advance_flow(flow.flow_id, from_stage, stage=to_stage, staged_code=sealed,
                               replaces_version=version, **changes)

    def _commit_enrollment(self, tx: Tx, flow: Flow, ip: str, now: float) -> str | None:
        """The new user, and the redirect with their code (None: a code is asked for again)."""
        again = self._leave(tx, flow, ENROLL_SAVED, now)
        user = User(subject=flow.subject, display_name=flow.params.get("preferred_username"),
                    totp_secret=self.vault.seal("totp_secret", flow.subject,
                                                self._open_pending(flow)),
                    totp_last_step=flow.pending_step or 0,
                    recovery_digest=recovery.keyed_digest(self.pepper, self.staged_code(flow)),
                    recovery_version=1, failures=0, last_failure_at=None, locked_at=None,
                    created_at=now)
        if not tx.add_user(user):
            raise EnrolledElsewhere()
        self._remember_contact(tx, flow, now, ip)
        tx.audit("enrollment", now, subject=flow.subject, client_id=flow.client_id, ip=ip)
        return None if again else self._issue(tx, flow, [OTP], now)

    @staticmethod
    def _leave(tx: Tx, flow: Flow, stage: str, now: float) -> bool:
        """Finish the flow to issue its code (False), unless the IdP's ``max_age`` has run out
        since the factor was checked: the code's ``auth_time`` would be too old for the IdP,
        so the flow goes back to the code page instead (True; :class:`AuthenticateAgain`)."""
        max_age = flow.params.get("max_age")
        again = (max_age is not None and flow.auth_time is not None
                 and now - flow.auth_time > max_age + MAX_AGE_GRACE)
        if again:
            left = tx.advance_flow(flow.flow_id, stage, stage=TOTP, pending_secret=None,
                                   pending_step=None, staged_code=None, replaces_version=None,
                                   factor=None, auth_time=None)
        else:
            left = tx.finish_flow(flow.flow_id, stage, DONE, now, _kept(flow))
        if not left:
            raise MovedOn(ALREADY_COMPLETE)
        return again

    @staticmethod
    def _remember_contact(tx: Tx, flow: Flow, now: float, ip: str) -> None:
        """Keep the address (and language) the IdP pushed, once this sign-in passed a factor,
        before the event it passed with is written. Not before: any registered client may push
        any user, and a sign-in that only guesses must not send that user's notices (of the
        lockout it causes, say) to an address of its choosing. Another address than the kept
        one is told to the kept one (``contact_changed``): whoever passed a factor and can
        change what the IdP pushes must not take the user's notices away unseen."""
        if email := flow.params.get("email"):
            previous = tx.set_contact(flow.subject, email, flow.params.get("ui_locales"), now)
            if previous is not None:
                tx.audit("contact_changed", now, subject=flow.subject, client_id=flow.client_id,
                         ip=ip, recipient=previous)

    def _issue(self, tx: Tx, flow: Flow, amr: list[str], now: float) -> str:
        """Save a single-use authorization code and build the redirect (RFC 9207 ``iss``)."""
        code = secrets.token_urlsafe(32)
        tx.save_code(Code(
            code_digest=token_digest(code), client_id=flow.client_id, subject=flow.subject,
            redirect_uri=flow.params["redirect_uri"], scope=flow.params["scope"],
            nonce=flow.params["nonce"], code_challenge=flow.params["code_challenge"],
            auth_time=flow.auth_time or now, acr=self.policy.acr, amr=amr,
            expires_at=now + self.policy.code_ttl))
        return self._redirect(flow, code=code)

    def _redirect(self, flow: Flow, **response: str) -> str:
        params = dict(response)
        if flow.params.get("state") is not None:
            params["state"] = flow.params["state"]
        params["iss"] = self.policy.issuer
        # The registered query is kept as it was sent (RFC 6749 §3.1.2), ours appended;
        # PAR refused a redirect_uri that already carries one of ours, or a fragment. A
        # string join, not urlsplit and urlunsplit: every sign-in's page and code build one.
        uri = flow.params["redirect_uri"]
        separator = "" if uri.endswith(("?", "&")) else "&" if "?" in uri else "?"
        return f"{uri}{separator}{urlencode(params)}"

    def _totp_secret(self, user: User) -> str:
        return self.vault.open("totp_secret", user.subject, user.totp_secret)

    def _open_pending(self, flow: Flow) -> str:
        if not flow.pending_secret:
            raise MovedOn(STEP_DONE)
        return self.vault.open("pending_secret", flow.flow_id, flow.pending_secret)
