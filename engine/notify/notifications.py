"""In-app notifications of one user: list (keyset on id), mark read, mark all read."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from engine import clock
from engine.errors import NotFound
from engine.notify import quota
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor
from engine.tasks.collab_models import Notification
from engine.tasks.queries import MAX_PAGE, Page

# Reading one's notifications is not a change of the plan's state: it is not audited.


def page(session: Session, actor: Actor, *, before_id: int | None = None, unread_only: bool = False,
         limit: int = 50) -> Page:
    """Return the actor's notifications, newest first; `next_cursor` is the id to continue before."""
    q = select(Notification).where(Notification.user_id == (actor.user_id or -1))
    if unread_only:
        q = q.where(Notification.read_at.is_(None))
    if before_id is not None:
        q = q.where(Notification.id < before_id)
    size = max(1, min(limit, MAX_PAGE))
    rows = list(session.scalars(q.order_by(Notification.id.desc()).limit(size + 1)))
    items = rows[:size]
    return Page(items=items, next_cursor=str(items[-1].id) if len(rows) > size else None)


def suppressed(session: Session, items: Sequence[Notification]) -> dict[int, int]:
    """Return, for each summary notice among these (quota.SUMMARY_KIND), how many of its person's notices its hour
    dropped, read from the counters now (none once they are pruned: the summary then shows no number)."""
    summaries = {n.outbox_id: n for n in items if n.kind == quota.SUMMARY_KIND and n.outbox_id is not None}
    if not summaries:
        return {}
    hours: dict[int, tuple[int, datetime]] = {}
    for outbox_id, key in session.execute(select(OutboxMessage.id, OutboxMessage.dedupe_key).where(
            OutboxMessage.id.in_(list(summaries)))):
        parts = (key or "").split(":")  # quota.summary_key, then the person and the channel
        try:
            hours[summaries[outbox_id].id] = (summaries[outbox_id].user_id,
                                              datetime.strptime(parts[2], "%Y%m%d%H").replace(tzinfo=UTC))
        except (IndexError, ValueError):
            continue
    counts = quota.suppressed(session, sorted(set(hours.values())))
    return {note_id: counts[wanted] for note_id, wanted in hours.items() if counts.get(wanted)}


def unread_count(session: Session, actor: Actor) -> int:
    """Count the actor's unread notifications."""
    return session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == (actor.user_id or -1), Notification.read_at.is_(None))) or 0


def mark_read(session: Session, *, notification_id: int, actor: Actor) -> Notification:
    """Mark one of the actor's notifications read (flushes); another user's is as good as missing.

    Raises: NotFound
    """
    note = session.get(Notification, notification_id)
    if note is None or note.user_id != actor.user_id:
        raise NotFound(f"通知不存在 (no such notification): {notification_id}", notification_id=notification_id)
    if note.read_at is None:
        note.read_at = clock.now()
        session.flush()
    return note


def mark_all_read(session: Session, *, actor: Actor) -> int:
    """Mark every unread notification of the actor read (flushes); return how many."""
    result = session.execute(update(Notification).where(Notification.user_id == (actor.user_id or -1),
                                                        Notification.read_at.is_(None))
                             .values(read_at=clock.now()).execution_options(synchronize_session=False))
    session.flush()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
