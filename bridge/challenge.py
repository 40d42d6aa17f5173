"""The step-up challenge, from a pushed request to an authorization code. No Flask in here.

One login, in order (each step is one method below):

1. :meth:`Challenge.begin` — a consumed pushed request becomes a *flow*: TOTP for a known user,
   enrollment for a new one (if the client allows it), or the locked page.
2. :meth:`Challenge.verify_totp` / :meth:`Challenge.verify_recovery` /
   :meth:`Challenge.verify_enrollment` — check the factor under the throttling rules.
3. A recovery code (or a new enrollment) only *stages* a new recovery code in the flow;
   :meth:`Challenge.confirm_saved` makes it the user's code and issues the authorization code
   in one transaction, once the user confirms they saved it.
4. Optionally :meth:`Challenge.verify_reenrollment` replaces a lost authenticator first.
5. The result is always a redirect back to the IdP: ``code``+``state``+``iss`` or an error.

Every stage change is a compare-and-set on the flow's stage, so a double-posted form or two
tabs cannot run a step twice; every factor rule is enforced by the store's atomic verbs.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .factors import recovery, totp
from .keyring import ServerSecrets
from .oidc.assertion import AMR_RECOVERY, AMR_TOTP
from .store import Client, Code, Flow, Store, Tx, User, digest
from .throttle import IpLimiter, delay_after

# Flow stages.
ENROLL = "enroll"  # new user: scan the QR code, enter the first code
ENROLL_SAVED = "enroll_saved"  # new user: save the first recovery code
TOTP = "totp"  # known user: TOTP, or the recovery code instead
ROTATE = "rotate"  # recovery code accepted: save the replacement
REENROLL = "reenroll"  # after a recovery login: set up a new authenticator
LOCKED = "locked"
NOT_ENROLLED = "not_enrolled"  # unknown user, client does not allow enrollment


LOCKED_MESSAGE = ("Second-factor sign-in is locked for your account. Contact your help desk "
                  "to unlock it.")


class ChallengeError(Exception):
    """Something the user must be told; ``message`` is safe to show (generic by design)."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class WrongCode(ChallengeError):
    status = 400


class TooSoon(ChallengeError):
    status = 429


class FlowGone(ChallengeError):
    """Unknown, expired, finished, or another browser's flow."""

    status = 404


class EnrolledElsewhere(FlowGone):
    """Another flow enrolled this user first; this flow's factor and code must never work."""


class Locked(ChallengeError):
    status = 403


@dataclass(frozen=True)
class Policy:
    issuer: str
    acr: str
    lockout_limit: int
    flow_ttl: int
    code_ttl: int
    totp_issuer: str


@dataclass(frozen=True)
class Enrollment:
    """What the enrollment page shows."""

    secret: str
    uri: str
    account: str


class Challenge:
    def __init__(self, store: Store, keys: ServerSecrets, policy: Policy, limiter: IpLimiter,
                 clock: Callable[[], float] = time.time):
        self.store, self.keys, self.policy = store, keys, policy
        self.limiter, self.clock = limiter, clock

    # -- 1. begin ---------------------------------------------------------------------------
    def begin(self, client: Client, params: dict, binding: str) -> Flow:
        """Open a flow for a pushed request that ``/authorize`` has just consumed."""
        now = self.clock()
        subject = params["login_hint"]
        flow_id = secrets.token_urlsafe(24)
        with self.store.begin() as tx:
            user = tx.find_user(subject)
            pending = None
            if user and user.locked_at is not None:
                stage = LOCKED
            elif user:
                stage = TOTP
            elif client.allow_enrollment and params.get("allow_enrollment", True):
                stage = ENROLL
                pending = self._seal_pending(flow_id, totp.new_secret())
            else:
                stage = NOT_ENROLLED
            flow = Flow(flow_id=flow_id, binding=digest(binding), client_id=client.client_id,
                        subject=subject, params=params, stage=stage, attempts=0,
                        pending_secret=pending, pending_step=None, staged_code=None,
                        staged_version=None, factor=None, auth_time=None,
                        expires_at=now + self.policy.flow_ttl)
            tx.save_flow(flow)
        return flow

    def find(self, flow_id: str, binding: str) -> Flow:
        with self.store.autocommit() as tx:
            flow = tx.find_flow(flow_id, self.clock())
        if flow is None or not secrets.compare_digest(flow.binding, digest(binding)):
            raise FlowGone("This sign-in has expired or is already complete. "
                           "Go back to your sign-in page and start again.")
        return flow

    # -- 2. verify a factor ---------------------------------------------------------------
    # Each check is one transaction holding the user's row (SELECT … FOR UPDATE): the lock and
    # delay test, the comparison and the counting cannot be interleaved by parallel guesses.
    def verify_totp(self, flow: Flow, code: str, ip: str, new_recovery_code: bool = False
                    ) -> str | None:
        """TOTP for a known user; on success returns the redirect back to the IdP — or, when
        the user asked for a new recovery code, stages one (None: show it) without the old
        code having been used: regeneration needs no MFA reset, only a fresh TOTP check."""
        code = "".join(code.split())
        if not (len(code) == totp.DIGITS and code.isdigit()):
            raise WrongCode(f"Enter the {totp.DIGITS}-digit code from your authenticator app.")
        now = self._precheck(flow, TOTP, ip)
        with self.store.begin() as tx:
            user, refusal = self._admit(tx, flow, now)
            if refusal is None:
                step = totp.match_step(self._totp_secret(user), code, now)
                if step is not None and tx.accept_totp_step(user.subject, step):
                    if user.failures:  # the row is locked: the count is current
                        tx.clear_failures(user.subject)
                    tx.audit("success", now, subject=user.subject, client_id=flow.client_id,
                             ip=ip, factor=AMR_TOTP)
                    if new_recovery_code:
                        if not self._stage_new_code(tx, flow, TOTP, ROTATE, user.recovery_version,
                                                    factor=AMR_TOTP, auth_time=now):
                            raise FlowGone("This sign-in is already complete.")
                        return None
                    if not tx.end_flow(flow.flow_id, TOTP):
                        raise FlowGone("This sign-in is already complete.")
                    return self._issue(tx, flow, [AMR_TOTP], now)
                replay = step is not None
                refusal = self._fail(tx, flow, ip, now, "replay" if replay else "failure",
                                     factor=AMR_TOTP) or WrongCode(
                    "That code has already been used. Wait for your app to show a new one."
                    if replay else
                    "That code didn't work. Check your authenticator app and try again.")
        raise refusal

    def verify_recovery(self, flow: Flow, text: str, ip: str) -> None:
        """A correct recovery code stages a replacement; nothing changes for the user yet."""
        canonical = recovery.normalize(text)
        if canonical is None:
            raise WrongCode("Enter your recovery code: 25 letters and digits, like "
                            "ABCDE-FGHJK-MNPQR-STVWX-YZ234.")
        now = self._precheck(flow, TOTP, ip)
        with self.store.begin() as tx:
            user, refusal = self._admit(tx, flow, now)
            if refusal is None:
                if secrets.compare_digest(recovery.digest(self.keys.pepper, canonical),
                                          user.recovery_digest):
                    if not self._stage_new_code(tx, flow, TOTP, ROTATE, user.recovery_version,
                                                factor=AMR_RECOVERY, auth_time=now):
                        raise FlowGone("This sign-in is already complete.")
                    if user.failures:  # the row is locked: the count is current
                        tx.clear_failures(user.subject)
                    tx.audit("recovery_code_used", now, subject=user.subject,
                             client_id=flow.client_id, ip=ip)
                    return
                refusal = self._fail(tx, flow, ip, now, "failure", factor=AMR_RECOVERY) or \
                    WrongCode("That recovery code didn't work. Check it and try again.")
        raise refusal

    def verify_enrollment(self, flow: Flow, code: str, ip: str) -> None:
        """The first code from a newly scanned authenticator; its time step is then spent."""
        step = self._check_new_authenticator(flow, ENROLL, code, ip)
        with self.store.begin() as tx:
            if not self._stage_new_code(tx, flow, ENROLL, ENROLL_SAVED, 0, factor=AMR_TOTP,
                                        auth_time=self.clock(), pending_step=step):
                raise FlowGone("This sign-in is already complete.")

    # -- 3. the user saved the new recovery code -------------------------------------------
    def confirm_saved(self, flow: Flow, ip: str, reenroll: bool = False) -> str | None:
        """Commit the staged recovery code and issue the code, in one transaction.

        Returns the redirect to the IdP, or None when the user goes on to set up a new
        authenticator first (``reenroll``; after a recovery login only).
        """
        now = self.clock()
        if flow.stage == ENROLL_SAVED:
            try:
                with self.store.begin() as tx:
                    return self._commit_enrollment(tx, flow, ip, now)
            except EnrolledElsewhere:
                with self.store.begin() as tx:  # the loser's flow ends too: no dead end
                    tx.end_flow(flow.flow_id, ENROLL_SAVED)
                raise
        with self.store.begin() as tx:
            if flow.stage != ROTATE or not tx.find_flow(flow.flow_id, now):
                raise FlowGone("This sign-in is already complete.")
            new_digest = recovery.digest(self.keys.pepper, self.staged_code(flow))
            rotated = tx.rotate_recovery(flow.subject, flow.staged_version or 0, new_digest)
            if rotated:
                tx.audit("rotation", now, subject=flow.subject, client_id=flow.client_id, ip=ip)
                if reenroll:
                    pending = self._seal_pending(flow.flow_id, totp.new_secret())
                    if tx.advance_flow(flow.flow_id, ROTATE, stage=REENROLL, staged_code=None,
                                       pending_secret=pending):
                        return None
                elif tx.end_flow(flow.flow_id, ROTATE):
                    return self._issue(tx, flow, [flow.factor or AMR_RECOVERY], now)
                raise FlowGone("This sign-in is already complete.")
        # Another flow rotated this user's code first: this staged code must never work.
        with self.store.begin() as tx:
            tx.end_flow(flow.flow_id, ROTATE)
            tx.audit("rotation_lost", now, subject=flow.subject, client_id=flow.client_id, ip=ip)
        raise FlowGone("Your recovery code was just used in another sign-in, so this one "
                       "cannot finish. Go back to your sign-in page and start again.")

    # -- 4. replace a lost authenticator ----------------------------------------------------
    def verify_reenrollment(self, flow: Flow, code: str, ip: str) -> str:
        step = self._check_new_authenticator(flow, REENROLL, code, ip)
        now = self.clock()
        with self.store.begin() as tx:
            if not tx.end_flow(flow.flow_id, REENROLL):
                raise FlowGone("This sign-in is already complete.")
            secret = self._open_pending(flow)
            if not tx.replace_totp(flow.subject, self._seal_totp(flow.subject, secret), step):
                raise FlowGone("Your second factor was reset. Go back to your sign-in page "
                               "and start again.")
            tx.audit("reenrollment", now, subject=flow.subject, client_id=flow.client_id, ip=ip)
            return self._issue(tx, flow, [AMR_RECOVERY, AMR_TOTP], now)

    # -- 5. leave ---------------------------------------------------------------------------
    def cancel(self, flow: Flow, ip: str) -> str:
        """The user cancelled (or acknowledged a lock): ``error=access_denied`` to the IdP."""
        now = self.clock()
        with self.store.begin() as tx:
            if not tx.end_flow(flow.flow_id, flow.stage):
                raise FlowGone("This sign-in is already complete.")
            tx.audit("cancel", now, subject=flow.subject, client_id=flow.client_id, ip=ip,
                     stage=flow.stage)
        description = {LOCKED: "The user is locked out.",
                       NOT_ENROLLED: "The user has no second factor."}.get(
            flow.stage, "The user cancelled.")
        return self._redirect(flow, error="access_denied", error_description=description)

    # -- what the pages show ----------------------------------------------------------------
    def enrollment(self, flow: Flow) -> Enrollment:
        secret = self._open_pending(flow)
        account = flow.params.get("preferred_username") or flow.subject
        uri = totp.provisioning_uri(secret, self.policy.totp_issuer, account)
        return Enrollment(secret=secret, uri=uri, account=account)

    def staged_code(self, flow: Flow) -> str:
        if not flow.staged_code:
            raise FlowGone("There is no new recovery code in this sign-in.")
        return self.keys.box.open(flow.staged_code, f"staged:{flow.flow_id}")

    # -- helpers ------------------------------------------------------------------------------
    def _precheck(self, flow: Flow, stage: str, ip: str) -> float:
        """Refuse before any database work: a step already done, or a blocked client IP."""
        now = self.clock()
        if flow.stage != stage:
            raise FlowGone("This step of the sign-in is already done.")
        if self.limiter.blocked(ip, now):
            raise TooSoon("Too many failed attempts from your network. Try again later.")
        return now

    def _admit(self, tx: Tx, flow: Flow, now: float) -> tuple[User, ChallengeError | None]:
        """Lock the user's row; say why an attempt may not even be looked at (lock, delay)."""
        user = self._check_user(tx.find_user(flow.subject, for_update=True), locked_ok=True)
        if user.locked_at is not None:
            # Locked from another tab or node: this flow shows the locked page from now on,
            # and its "Return to sign-in" tells the IdP the user is locked out.
            tx.advance_flow(flow.flow_id, flow.stage, stage=LOCKED)
            return user, Locked(LOCKED_MESSAGE)
        wait = delay_after(user.failures) - (now - (user.last_failure_at or 0))
        if wait > 0:
            return user, TooSoon(
                f"Too many wrong codes. Wait {math.ceil(wait)} seconds, then try again.")
        return user, None

    def _fail(self, tx: Tx, flow: Flow, ip: str, now: float, event: str,
              **detail: str) -> Locked | None:
        """Count a failed attempt (user and IP); lock at the limit and say so."""
        self.limiter.hit(ip, now)
        failures = tx.record_failure(flow.subject, now, self.policy.lockout_limit)
        tx.audit(event, now, subject=flow.subject, client_id=flow.client_id, ip=ip,
                 failures=failures, **detail)
        if failures < self.policy.lockout_limit:
            return None
        tx.advance_flow(flow.flow_id, flow.stage, stage=LOCKED)
        tx.audit("lockout", now, subject=flow.subject, client_id=flow.client_id, ip=ip)
        return Locked(f"Too many wrong codes. {LOCKED_MESSAGE}")

    def _check_new_authenticator(self, flow: Flow, stage: str, code: str, ip: str) -> int:
        """Verify the first code of a newly scanned secret (enrollment or re-enrollment)."""
        code = "".join(code.split())
        now = self._precheck(flow, stage, ip)
        step = totp.match_step(self._open_pending(flow), code, now)
        if step is not None:
            return step
        self.limiter.hit(ip, now)
        with self.store.begin() as tx:
            attempts = tx.count_flow_attempt(flow.flow_id)
            tx.audit("failure", now, subject=flow.subject, client_id=flow.client_id, ip=ip,
                     factor="enrollment", attempts=attempts)
            if attempts >= self.policy.lockout_limit:
                tx.end_flow(flow.flow_id, stage)
        if attempts >= self.policy.lockout_limit:
            raise FlowGone("Too many wrong codes. Go back to your sign-in page and start again.")
        raise WrongCode("That code didn't match. Check that your app's clock is right and "
                        "enter the code it shows now.")

    def _stage_new_code(self, tx: Tx, flow: Flow, from_stage: str, to_stage: str,
                        version: int, **changes) -> bool:
        sealed = self.keys.box.seal(recovery.generate(), f"staged:{flow.flow_id}")
        return tx.advance_flow(flow.flow_id, from_stage, stage=to_stage, staged_code=sealed,
                               staged_version=version, **changes)

    def _commit_enrollment(self, tx: Tx, flow: Flow, ip: str, now: float) -> str:
        if not tx.end_flow(flow.flow_id, ENROLL_SAVED):
            raise FlowGone("This sign-in is already complete.")
        user = User(subject=flow.subject, display_name=flow.params.get("preferred_username"),
                    totp_secret=self._seal_totp(flow.subject, self._open_pending(flow)),
                    totp_last_step=flow.pending_step or 0,
                    recovery_digest=recovery.digest(self.keys.pepper, self.staged_code(flow)),
                    recovery_version=1, failures=0, last_failure_at=None, locked_at=None,
                    created_at=now)
        if not tx.add_user(user):
            raise EnrolledElsewhere("This account finished setting up in another sign-in. "
                                    "Go back to your sign-in page and start again.")
        tx.audit("enrollment", now, subject=flow.subject, client_id=flow.client_id, ip=ip)
        return self._issue(tx, flow, [AMR_TOTP], now)

    def _issue(self, tx: Tx, flow: Flow, amr: list[str], now: float) -> str:
        """Save a single-use authorization code and build the redirect (RFC 9207 ``iss``)."""
        code = secrets.token_urlsafe(32)
        tx.save_code(Code(
            code_digest=digest(code), client_id=flow.client_id, subject=flow.subject,
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
        parts = urlsplit(flow.params["redirect_uri"])
        query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
        return urlunsplit(parts._replace(query=query))

    @staticmethod
    def _check_user(user: User | None, locked_ok: bool = False) -> User:
        if user is None:  # reset by the help desk mid-flow
            raise FlowGone("Your second factor was reset. Go back to your sign-in page and "
                           "start again.")
        if user.locked_at is not None and not locked_ok:
            raise Locked(LOCKED_MESSAGE)
        return user

    def _totp_secret(self, user: User) -> str:
        return self.keys.box.open(user.totp_secret, f"totp:{user.subject}")

    def _seal_totp(self, subject: str, secret: str) -> str:
        return self.keys.box.seal(secret, f"totp:{subject}")

    def _seal_pending(self, flow_id: str, secret: str) -> str:
        return self.keys.box.seal(secret, f"pending:{flow_id}")

    def _open_pending(self, flow: Flow) -> str:
        if not flow.pending_secret:
            raise FlowGone("This step of the sign-in is already done.")
        return self.keys.box.open(flow.pending_secret, f"pending:{flow.flow_id}")
