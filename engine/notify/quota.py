"""The cap on notices: per person and per process instance, per hour, whoever or whatever causes them.

A BPMN's loops, multi-instance activities and timers decide how often the engine tells someone something (a task
cancelled by a timer, an escalation, a problem told to the process owners), and people decide how often they 转办,
委派, 加签, 催办 or 抄送: a hostile or careless model, or a user hammering 催办 across many tasks, could fill the outbox
and people's inboxes, mailboxes and group robots with thousands. Every notice (one person, whatever its channels) goes
through engine.notify.core.send_many, which counts it here in `notice_count` for its person, and for its instance
when it is about one, in the hour it is queued; past JZFLOW_NOTICE_CAP_RECIPIENT_HOUR or
JZFLOW_NOTICE_CAP_INSTANCE_HOUR (engine.config) it is not queued but counted as dropped (ops: the
jzflow_notices_dropped gauge), and the process owners are told once (per instance; per person and day). A notice
about no instance (a plan item's ladder, a person's 督办, an administrator's notice) counts against its person only.
A notice already queued (same dedupe key) is no new notice: the caller asks only for fresh ones. The owners' own
note of a full counter is not counted (it is told once per counter by its key, and must reach an owner flooded
themselves).

A person whose notice is first dropped in an hour (their cap or their instance's) is told so once, by one summary
notice (SUMMARY_KIND: "本小时另有通知因超出上限未单独发送", linking to their 待办) on their own channels, not counted
either. Once: only the unit of work that finds the person's counter with no drop yet sends it, and it holds that
counter's lock (PostgreSQL: FOR UPDATE) until it commits, so another one sees its drop; the key (person and hour) backs
that up. How many were dropped is not written into it: it is the person counter's `dropped`, read when the summary
is shown (`suppressed`), so a drop writes nothing but the counter it already writes. The drops a unit of work made
are left in session.info (DROPS) for engine.ops.metrics to count once it commits (jzflow_notice_drops): those of a
savepoint rolled back are not counted, those of one released only when the transaction around it commits.

The counters are locked in the order of their scope (instance:… before user:…, then by text) after the caller's own
locks (instance, task): two units of work counting the same scopes wait for each other, never the other way round.
A unit of work that queues no notice touches no counter. Counters older than KEEP (the ops gauge reads a day) are
deleted by beat's hourly `purge-notice-counts` (`prune`: bounded batches, SKIP LOCKED on PostgreSQL).
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine import clock, config
from engine.db import is_postgres
from engine.notify.models import NoticeCount

Wanted = tuple[int, int | None]  # (person, instance the notice is about)
SUMMARY_KIND = "notice_suppressed"  # the summary notice a person gets when their notices are first dropped in an hour
DROPS = "jzflow.notice_drops"  # session.info: {cap: drops} of this unit of work, counted by engine.ops.metrics on commit
KEEP = timedelta(hours=48)  # counters kept: the ops gauge reads the last 24 hours
CHUNK = 400  # scopes per statement (SQLite's bound parameters)


def _hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def _counters(session: Session, scopes: list[str], hour: datetime) -> dict[str, NoticeCount]:
    insert: Any = postgresql.insert if is_postgres(session) else sqlite.insert
    found: dict[str, NoticeCount] = {}
    for i in range(0, len(scopes), CHUNK):  # sorted, chunk after chunk: the lock order holds
        chunk = scopes[i:i + CHUNK]
        session.execute(insert(NoticeCount).values([{"scope": s, "hour": hour, "sent": 0, "dropped": 0}
                                                    for s in chunk]).on_conflict_do_nothing())
        q = select(NoticeCount).where(NoticeCount.scope.in_(chunk), NoticeCount.hour == hour).order_by(NoticeCount.scope)
        if is_postgres(session):
            q = q.with_for_update()
        found.update((c.scope, c) for c in session.scalars(q.execution_options(populate_existing=True)))
    return found


def admit(session: Session, wanted: Sequence[Wanted]) -> list[bool]:
    """Count these fresh notices against the caps; return which may be queued (flushes; nothing wanted: no statement).

    Each counts for its person, and for its instance when it is about one. The first one an instance or a person has
    dropped in the hour is told to the process owners (once), and the person whose first drop of the hour it is gets
    their summary notice (once).
    """
    if not wanted:
        return []
    settings = config.load()
    caps = {"instance": settings.notice_cap_instance_hour, "user": settings.notice_cap_recipient_hour}
    hour = _hour(clock.now())
    scopes = {f"user:{u}" for u, _ in wanted} | {f"instance:{i}" for _, i in wanted if i is not None}
    counters = _counters(session, sorted(scopes), hour)
    unharmed = {s for s, c in counters.items() if s.startswith("user:") and not c.dropped}  # no drop yet this hour
    drops: dict[str, int] = {}
    admitted: list[bool] = []
    full: dict[str, NoticeCount] = {}
    for user_id, instance_id in wanted:
        person = counters[f"user:{user_id}"]
        mine = [person] if instance_id is None else [person, counters[f"instance:{instance_id}"]]
        over = [c for c in mine if c.sent >= caps[c.scope.split(":", 1)[0]]]
        if over:  # the person's counter counts every drop (ops add those up); an instance's, the drops it caused
            full.update((c.scope, c) for c in over)
            for c in {id(c): c for c in [person, *over]}.values():
                c.dropped += 1
            cap = "recipient" if person in over else "instance"
            drops[cap] = drops.get(cap, 0) + 1
        else:
            for c in mine:
                c.sent += 1
        admitted.append(not over)
    session.flush()
    if drops:
        told = session.info.setdefault(DROPS, {})
        for cap, n in drops.items():
            told[cap] = told.get(cap, 0) + n
    for c in full.values():
        _tell_owners(session, c, hour)  # once: the note's dedupe key
    flooded = sorted(int(s.split(":", 1)[1]) for s in unharmed if counters[s].dropped)
    if flooded:
        _tell_person(session, flooded, hour)
    return admitted


def summary_key(user_id: int, hour: datetime) -> str:
    """The key of a person's summary notice for an hour (its outbox rows' dedupe keys start with it)."""
    return f"{SUMMARY_KIND}:{user_id}:{hour:%Y%m%d%H}"


def _tell_person(session: Session, user_ids: Sequence[int], hour: datetime) -> None:
    from engine.notify import core  # core imports this module
    start = hour.astimezone(clock.SHANGHAI)
    window = {"date": start.date().isoformat(), "start": f"{start:%H:00}",
              "end": f"{start + timedelta(hours=1):%H:00}", "cap": config.load().notice_cap_recipient_hour}
    # On the person's own channels (kind SUMMARY_KIND, else their "*"): they learn of it where they learn of the rest.
    core.send_many(session, [core.worded(user_id, SUMMARY_KIND, "notice_suppressed", window, link="/inbox",
                                         key=summary_key(user_id, hour)) for user_id in user_ids], capped=False)


def suppressed(session: Session, wanted: Sequence[tuple[int, datetime]]) -> dict[tuple[int, datetime], int]:
    """Return how many notices each (person, hour) had dropped, as their counters say (none: pruned, or no drop)."""
    found: dict[tuple[int, datetime], int] = {}
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i:i + CHUNK]
        for scope, hour, count in session.execute(select(NoticeCount.scope, NoticeCount.hour, NoticeCount.dropped).where(
                tuple_(NoticeCount.scope, NoticeCount.hour).in_([(f"user:{u}", h) for u, h in chunk]))):
            found[(int(scope.split(":", 1)[1]), clock.as_utc(hour))] = int(count)
    return found


def _tell_owners(session: Session, counter: NoticeCount, hour: datetime) -> None:
    # Imported here: owner_notes is reached from engine.deploy, which engine.notify's import reaches (a cycle); and
    # engine.notify.core imports this module.
    from engine.notify import core
    from engine.runtime.owner_notes import owners
    kind, ident = counter.scope.split(":", 1)
    if kind == "instance":
        text, args = "notice_cap_instance", {"instance": ident, "sent": counter.sent,
                                             "cap": config.load().notice_cap_instance_hour}
        link: str | None = f"/instances/{ident}"
        key = f"notice_cap:{counter.scope}"
    else:
        text, args = "notice_cap_user", {"user": ident, "sent": counter.sent,
                                         "cap": config.load().notice_cap_recipient_hour}
        link = None
        key = f"notice_cap:{counter.scope}:{hour:%Y-%m-%d}"
    # Past the cap themselves (an owner told of a flood): still told of this one, the one notice not counted.
    core.send_many(session, [core.worded(user_id, "notice_cap", text, args, link=link, key=key)
                             for user_id in owners(session)], channels_=core.IN_APP, capped=False)


def dropped(session: Session, *, since: datetime) -> int:
    """Count the notices dropped past a cap since then (each once: from the counters of the persons)."""
    return int(session.scalar(select(func.coalesce(func.sum(NoticeCount.dropped), 0)).where(
        NoticeCount.hour >= _hour(since), NoticeCount.scope.like("user:%"))) or 0)


def prune(session: Session, *, now: datetime, batch: int = 1000) -> int:
    """Delete at most `batch` counters of hours ended more than KEEP before `now`; return how many (the caller commits
    each batch). Idempotent; two workers at once take different rows (PostgreSQL: SKIP LOCKED), and none a counter
    still counting (the current hour's)."""
    stale = select(NoticeCount.scope, NoticeCount.hour).where(NoticeCount.hour < _hour(now - KEEP)).limit(batch)
    if is_postgres(session):
        stale = stale.with_for_update(skip_locked=True)
    result = session.execute(delete(NoticeCount).where(tuple_(NoticeCount.scope, NoticeCount.hour).in_(stale))
                             .execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


__all__ = ["DROPS", "KEEP", "SUMMARY_KIND", "admit", "dropped", "prune", "summary_key", "suppressed"]
