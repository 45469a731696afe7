"""`jzflow revoke-reset-tokens`: the API tokens an administrator's password reset would revoke today, left live by a
reset made before it did.

A reset (重置密码, staffing.reset_password) revokes every live token of the person: it may follow a compromise, and a
token taken with the old password must stop with it. No token is issued while the temporary password is in force,
and leaving it revokes any it held back (tokens.issue, core.change_password). Resets made before that revoked nothing
and the change that followed kept every token: those tokens are live still. The audit trail tells such a reset apart:
its `org.user.password_reset` event has no `tokens_revoked` (every reset since records how many it revoked, 0 too).

For each person whose latest such reset R is in the trail, revoked now: their live tokens made before R (what the
reset would have revoked), and — unless single sign-on keeps their password from opening a login (tokens.temporary:
then a temporary password was no way in and the token stands, as issue allows it today) — those made after R until
they changed the password themselves (their first `org.user.password` after R on their stream; not changed yet: until
now), which today could not have been made. A later reset made by today's code revoked them all already: nothing is
found twice, and a second run finds nothing. Each revocation is audited (`api_token.revoke`, with the reason and the
reset's event id) under the person's row lock, as a reset takes it. Nothing else is decided from the trail: a person
without such an event keeps their tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.audit.models import AuditEvent
from engine.org import tokens
from engine.org.actors import Actor
from engine.org.models import User
from engine.org.token_models import ApiToken

REASON = "password reset before resets revoked tokens"


@dataclass(frozen=True)
class Found:
    """A live token an old reset left, and why it goes: the reset's event and the end of the temporary password."""

    token_id: int
    prefix: str
    name: str
    username: str
    created_at: datetime
    reset_event: int  # the AuditEvent id of the reset
    reset_at: datetime
    until: datetime | None  # tokens made before this go: the reset, or the change that ended its temporary password
    # (None: not changed yet, every token)


def _old_resets(session: Session) -> dict[int, AuditEvent]:
    """The latest reset of each person made by code that revoked no token (no `tokens_revoked` in its event)."""
    latest: dict[int, AuditEvent] = {}
    for ev in session.scalars(select(AuditEvent).where(AuditEvent.action == "org.user.password_reset",
                                                       AuditEvent.object_type == "app_user")
                              .order_by(AuditEvent.stream, AuditEvent.seq)):
        if "tokens_revoked" in (ev.after or {}) or not ev.object_id.isdigit():
            continue
        latest[int(ev.object_id)] = ev  # by seq within the person's stream: the last one wins
    return latest


def _changed_after(session: Session, reset: AuditEvent) -> datetime | None:
    """When the person changed the password themselves after this reset (their first change), or None."""
    return session.scalar(select(AuditEvent.at).where(
        AuditEvent.stream == reset.stream, AuditEvent.action == "org.user.password", AuditEvent.seq > reset.seq)
        .order_by(AuditEvent.seq).limit(1))


def find(session: Session, *, lock: bool = False) -> list[Found]:
    """Return the live tokens old resets left, by person and token; `lock`: each person's row locked FOR UPDATE first
    (a reset, a change, an issue of theirs at the same moment waits, or is waited for and seen)."""
    found: list[Found] = []
    for user_id, reset in sorted(_old_resets(session).items()):
        query = select(User).where(User.id == user_id)
        user = session.scalar(query.with_for_update().execution_options(populate_existing=True) if lock else query)
        if user is None:
            continue
        reset_at = clock.as_utc(reset.at)
        until: datetime | None = reset_at
        if tokens.temporary(user.username, must_change=True):  # the temporary password opened a login
            changed = _changed_after(session, reset)
            until = clock.as_utc(changed) if changed is not None else None  # not changed yet: every token
        for token in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id,
                                                            ApiToken.revoked_at.is_(None)).order_by(ApiToken.id)):
            if until is None or clock.as_utc(token.created_at) < until:
                found.append(Found(token.id, token.prefix, token.name, user.username, clock.as_utc(token.created_at),
                                   reset.id, reset_at, until))
    return found


def revoke(session: Session, *, actor: Actor) -> list[Found]:
    """Revoke the tokens `find` returns (flushes; the caller commits), each audited once; return them."""
    found = find(session, lock=True)
    now = clock.now()
    for f in found:
        token = session.get(ApiToken, f.token_id, with_for_update=True, populate_existing=True)
        if token is None or token.revoked_at is not None:
            continue
        token.revoked_at = now
        session.flush()
        audit.record(session, actor, "api_token.revoke", stream=f"user:{token.user_id}", object_type="api_token",
                     object_id=token.id, after={"name": token.name, "prefix": token.prefix, "reason": REASON,
                                                "reset_event": f.reset_event})
    return found


__all__ = ["REASON", "Found", "find", "revoke"]
