"""The statements the store runs most, built once at import (compiled once per database)."""

from __future__ import annotations

import sqlalchemy as sa

from .schema import (
    audit_events,
    clients,
    codes,
    contacts,
    events,
    flows,
    ip_failures,
    pushed_requests,
    signing_keys,
    users,
)
from .sql import Statement

#: An event with what its notice calls the client's sign-ins (its name now; NULL for a client
#: with none or gone) and the account: the name of the user's enrollment the event belongs to,
#: none once reset. Whoever enrolls after a reset (say, after talking the help desk into it)
#: must not put their words on the older notices' "this wasn't me" page.
NAMED_EVENTS = (
    sa.select(events, clients.c.client_name, users.c.display_name.label("account"))
    .outerjoin(clients, clients.c.client_id == events.c.client_id)
    .outerjoin(users, sa.and_(users.c.subject == events.c.subject,
                              users.c.created_at <= events.c.at)))

# The statements of a step-up (TOTP or recovery code, with rotation) and of an enrollment,
# built once and compiled once per database and parameter names (``sql.py``); the others,
# rarer, are built per call and compiled for that call. An UPDATE's SET is the column names
# it is given (``ADVANCE_FLOW``'s changes). (Bind names must not repeat a
# column name.)
_b = sa.bindparam
FIND_CLIENT = Statement(sa.select(clients).where(clients.c.client_id == _b("b_client_id")))
# FOR SHARE: holders wait for a removal or a new registration, never for each other.
FIND_CLIENT_HELD = Statement(FIND_CLIENT.clause.with_for_update(read=True))
INSERT_PUSHED = Statement(sa.insert(pushed_requests))
CONSUME_PUSHED = Statement(sa.delete(pushed_requests)
                           .where(pushed_requests.c.uri_digest == _b("b_digest"))
                           .returning(pushed_requests.c.client_id, pushed_requests.c.params,
                                      pushed_requests.c.expires_at))
INSERT_FLOW = Statement(sa.insert(flows))
FIND_FLOW = Statement(sa.select(flows).where(flows.c.flow_id == _b("b_flow_id"),
                                             flows.c.expires_at > _b("b_now")))
ADVANCE_FLOW = Statement(sa.update(flows).where(flows.c.flow_id == _b("b_flow_id"),
                                                flows.c.stage == _b("b_stage")))
FLOW_COLUMNS = frozenset(flows.c.keys())
END_FLOW = Statement(sa.delete(flows).where(flows.c.flow_id == _b("b_flow_id"),
                                            flows.c.stage == _b("b_stage")))
FINISH_FLOW = Statement(
    sa.update(flows).where(flows.c.flow_id == _b("b_flow_id"), flows.c.stage == _b("b_stage"))
    .values(stage=_b("b_done"), expires_at=_b("b_now"), pending_secret=None, staged_code=None,
            params=_b("b_params", type_=flows.c.params.type)))
FIND_USER = Statement(sa.select(users).where(users.c.subject == _b("b_subject")))
FIND_USER_FOR_UPDATE = Statement(FIND_USER.clause.with_for_update())
INSERT_USER = Statement(sa.insert(users))
ACCEPT_STEP = Statement(
    sa.update(users)
    .where(users.c.subject == _b("b_subject"), users.c.totp_last_step < _b("b_step"))
    .values(totp_last_step=_b("b_step"), totp_drift=_b("b_drift")))
ROTATE_RECOVERY = Statement(sa.update(users)
                            .where(users.c.subject == _b("b_subject"),
                                   users.c.recovery_version == _b("b_version")))
CLEAR_FAILURES = Statement(sa.update(users)
                           .where(users.c.subject == _b("b_subject"), users.c.failures != 0)
                           .values(failures=0, last_failure_at=None))
LOCK_IP = Statement(sa.select(sa.func.pg_advisory_xact_lock(
    sa.func.hashtextextended(_b("ip", type_=sa.String), 0))))
INSERT_IP_FAILURE = Statement(sa.insert(ip_failures))
COUNT_IP_FAILURES = Statement(
    sa.select(sa.func.count()).select_from(ip_failures)
    .where(ip_failures.c.ip == _b("b_ip"), ip_failures.c.at > _b("b_since"),
           ip_failures.c.client_id.is_(None)))
COUNT_CLIENT_FAILURES = Statement(
    sa.select(sa.func.count()).select_from(ip_failures)
    .where(ip_failures.c.ip == _b("b_ip"), ip_failures.c.at > _b("b_since"),
           ip_failures.c.client_id == _b("b_client_id")))
INSERT_CODE = Statement(sa.insert(codes))
REDEEM_CODE = Statement(sa.update(codes).where(codes.c.code_digest == _b("b_digest"),
                                               codes.c.client_id == _b("b_client_id"),
                                               codes.c.expires_at > _b("b_now"))
                        .values(code_digest=_b("b_spent")).returning(*codes.c))
REDEEMED_CODE = Statement(sa.select(codes.c.subject, codes.c.client_id).where(
    codes.c.code_digest == _b("b_spent"), codes.c.expires_at > _b("b_now")))
SIGNING_KEYS = Statement(sa.select(signing_keys).order_by(signing_keys.c.activates_at,
                                                          signing_keys.c.created_at))
INSERT_AUDIT = Statement(sa.insert(audit_events))
INSERT_EVENT = Statement(sa.insert(events))
FIND_CONTACT = Statement(sa.select(contacts.c.email, contacts.c.locale)
                         .where(contacts.c.subject == _b("b_subject")))
UPDATE_CONTACT = Statement(sa.update(contacts).where(contacts.c.subject == _b("b_subject")))
UPDATE_SAME_CONTACT = Statement(sa.update(contacts).where(
    contacts.c.subject == _b("b_subject"),
    sa.func.lower(contacts.c.email) == sa.func.lower(_b("b_email"))))
INSERT_CONTACT = Statement(sa.insert(contacts))

#: Columns holding AES-GCM ciphertexts: column -> (table, key column).
SEALED = {
    "totp_secret": (users, "subject"),
    "sealed_jwk": (signing_keys, "kid"),
    "pending_secret": (flows, "flow_id"),
    "staged_code": (flows, "flow_id"),
}
