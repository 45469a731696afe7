"""The cap on notices: per process instance and per person, per hour, whatever a process owner's BPMN does.

A BPMN's loops, multi-instance activities and timers decide how often the engine tells someone something (a task
cancelled by a timer, an escalation, a problem told to the process owners): a hostile or careless model could fill
the outbox and people's inboxes, mailboxes and group robots with thousands. Each notice about a process instance
(one person, whatever its channels) is counted in `notice_count` for its instance and its person in the hour it is
queued; past JZFLOW_NOTICE_CAP_INSTANCE_HOUR or JZFLOW_NOTICE_CAP_RECIPIENT_HOUR (engine.config) it is not queued
but counted as dropped (ops: the jzflow_notices_dropped gauge), and the process owners are told once (per instance;
per person and day). A notice about no instance (a plan item's ladder, a person's 督办) is no model's doing: not
capped. A notice already queued (same dedupe key) is no new notice: the caller asks only for fresh ones.

The counters are locked in the order of their scope (instance:… before user:…, then by text) after the caller's own
locks (instance, task): two units of work counting the same scopes wait for each other, never the other way round.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine import clock, config
from engine.audit import jsonable
from engine.db import is_postgres
from engine.notify import outbox
from engine.notify.models import NoticeCount, OutboxMessage

Wanted = tuple[int, int | None]  # (person, instance the notice is about)


def _hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def _counters(session: Session, scopes: list[str], hour: datetime) -> dict[str, NoticeCount]:
    insert: Any = postgresql.insert if is_postgres(session) else sqlite.insert
    session.execute(insert(NoticeCount).values([{"scope": s, "hour": hour, "sent": 0, "dropped": 0} for s in scopes])
                    .on_conflict_do_nothing())
    q = select(NoticeCount).where(NoticeCount.scope.in_(scopes), NoticeCount.hour == hour).order_by(NoticeCount.scope)
    if is_postgres(session):
        q = q.with_for_update()
    return {c.scope: c for c in session.scalars(q.execution_options(populate_existing=True))}


def admit(session: Session, wanted: Sequence[Wanted]) -> list[bool]:
    """Count these fresh notices against the caps; return which may be queued (flushes).

    The first one an instance or a person has dropped in the hour is told to the process owners (once).
    """
    if not any(i is not None for _, i in wanted):
        return [True] * len(wanted)
    settings = config.load()
    caps = {"instance": settings.notice_cap_instance_hour, "user": settings.notice_cap_recipient_hour}
    hour = _hour(clock.now())
    scopes = {f"user:{u}" for u, i in wanted if i is not None} | {f"instance:{i}" for _, i in wanted if i is not None}
    counters = _counters(session, sorted(scopes), hour)
    admitted: list[bool] = []
    full: dict[str, NoticeCount] = {}
    for user_id, instance_id in wanted:
        if instance_id is None:  # not caused by a process (a plan item's ladder, a person's 督办): not capped
            admitted.append(True)
            continue
        person = counters[f"user:{user_id}"]
        mine = [person, counters[f"instance:{instance_id}"]]
        over = [c for c in mine if c.sent >= caps[c.scope.split(":", 1)[0]]]
        if over:  # the person's counter counts every drop (ops add those up); an instance's, the drops it caused
            full.update((c.scope, c) for c in over)
            for c in {id(c): c for c in [person, *over]}.values():
                c.dropped += 1
        else:
            for c in mine:
                c.sent += 1
        admitted.append(not over)
    session.flush()
    for c in full.values():
        _tell_owners(session, c, hour)  # once: the note's dedupe key
    return admitted


def _tell_owners(session: Session, counter: NoticeCount, hour: datetime) -> None:
    # Imported here: owner_notes is reached from engine.deploy, which engine.notify's import reaches (a cycle).
    from engine.runtime.owner_notes import owners
    kind, ident = counter.scope.split(":", 1)
    if kind == "instance":
        title = f"流程实例 {ident} 一小时内的通知已达上限，其余不再发送"
        body = (f"流程实例 {ident} 一小时内已发出 {counter.sent} 条通知（上限 {config.load().notice_cap_instance_hour}），"
                "此后本小时内的通知不再发送。请检查流程中的循环、多实例或频繁触发的定时器 "
                f"(instance {ident} reached its notice cap for the hour; further notices are dropped)")
        link: str | None = f"/instances/{ident}"
        key = f"notice_cap:{counter.scope}"
    else:
        title = f"用户 {ident} 一小时内收到的通知已达上限，其余不再发送"
        body = (f"用户 {ident} 一小时内已收到 {counter.sent} 条通知（上限 {config.load().notice_cap_recipient_hour}），"
                "此后本小时内给他的通知不再发送。请检查流程中的循环、多实例或频繁触发的定时器 "
                f"(user {ident} reached the notice cap for the hour; further notices to them are dropped)")
        link = None
        key = f"notice_cap:{counter.scope}:{hour:%Y-%m-%d}"
    for user_id in owners(session):  # past the cap themselves (an owner told of a flood): still told of this one
        outbox.enqueue(session, "in_app", {"user_id": user_id, "kind": "notice_cap", "title": title, "body": body,
                                           "link": link}, dedupe_key=f"{key}:{user_id}")


def enqueue(session: Session, payload: dict[str, Any], *, instance_id: int | None,
            dedupe_key: str | None = None) -> bool:
    """Queue one in-app notice to payload['user_id'] within the caps (flushes); False when it was not queued.

    Raises: IntegrityError when another unit of work queued the same key since it was looked for (as outbox.enqueue
    does: a caller that may meet one in a race holds a savepoint).
    """
    if dedupe_key is not None and session.scalar(
            select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)) is not None:
        return False
    if not admit(session, [(int(payload["user_id"]), instance_id)])[0]:
        return False
    session.add(OutboxMessage(kind="in_app", payload=jsonable(payload), dedupe_key=dedupe_key))
    session.flush()  # the unique key: a twin queued meanwhile fails here, not silently
    return True


def dropped(session: Session, *, since: datetime) -> int:
    """Count the notices dropped past a cap since then (each once: from the counters of the persons)."""
    return int(session.scalar(select(func.coalesce(func.sum(NoticeCount.dropped), 0)).where(
        NoticeCount.hour >= _hour(since), NoticeCount.scope.like("user:%"))) or 0)


__all__ = ["admit", "dropped", "enqueue"]
