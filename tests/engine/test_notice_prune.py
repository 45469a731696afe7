"""The notice cap's hourly counters (notice_count) do not pile up for good: beat's hourly purge-notice-counts deletes
those older than quota.KEEP (the ops gauge reads a day), in bounded batches, each its own transaction; a second run
finds nothing, and two workers at once delete each row once without waiting for each other (PostgreSQL: SKIP
LOCKED). The current hour's counters, still counting, are never touched. On SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, jobs
from engine.celery_app import celery
from engine.notify import quota
from engine.notify.models import NoticeCount

AGES = (0, 1, 23, 47, 48, 49, 72, 24 * 30)  # hours before the current hour's start


def _hour() -> datetime:
    return clock.now().replace(minute=0, second=0, microsecond=0)


def _seed(session: Session, users: int = 3) -> int:
    """Counters of `users` persons for each age; return how many are past KEEP."""
    for age in AGES:
        for u in range(users):
            session.add(NoticeCount(scope=f"user:{u}", hour=_hour() - timedelta(hours=age), sent=5, dropped=1))
        session.add(NoticeCount(scope=f"instance:{age}", hour=_hour() - timedelta(hours=age), sent=5, dropped=1))
    session.commit()
    return sum(users + 1 for age in AGES if age > quota.KEEP // timedelta(hours=1))


def _left(session: Session) -> list[int]:
    return sorted({int((_hour() - h) / timedelta(hours=1)) for h in session.scalars(select(NoticeCount.hour))})


def test_counters_past_keep_are_pruned_in_batches_and_again_finds_nothing(session: Session, frozen: Any) -> None:
    clock.advance(timedelta(minutes=59))
    stale = _seed(session)
    dropped = quota.dropped(session, since=clock.now() - timedelta(hours=24))
    assert quota.prune(session, now=clock.now(), batch=3) == 3  # bounded
    session.commit()
    assert quota.prune(session, now=clock.now(), batch=1000) == stale - 3
    session.commit()
    assert quota.prune(session, now=clock.now()) == 0  # idempotent
    assert _left(session) == [0, 1, 23, 47, 48]  # KEEP's hours kept whole
    assert quota.dropped(session, since=clock.now() - timedelta(hours=24)) == dropped  # the ops gauge reads the same


def test_the_job_prunes_batch_by_batch_and_beat_runs_it(session: Session, factory: sessionmaker[Session],
                                                        frozen: Any) -> None:
    stale = _seed(session, users=10)
    session.close()
    assert jobs.run_notice_prune(factory, batch=4, max_batches=2) == 8  # bounded: the next run goes on
    assert jobs.run_notice_prune(factory, batch=4) == stale - 8
    assert jobs.run_notice_prune(factory, batch=4) == 0
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(NoticeCount).where(
            NoticeCount.hour < _hour() - quota.KEEP)) == 0
    assert celery.conf.beat_schedule["purge-notice-counts"]["task"] == "engine.jobs.purge_notice_counts"
    assert callable(jobs.purge_notice_counts)


def test_a_pruned_hour_does_not_come_back_nor_touch_the_cap(session: Session, frozen: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "2")
    assert quota.admit(session, [(7, None), (7, None)]) == [True, True]
    session.commit()
    clock.advance(quota.KEEP + timedelta(hours=1))
    assert quota.prune(session, now=clock.now()) == 1
    assert quota.admit(session, [(7, None), (7, None), (7, None)]) == [True, True, False]  # a fresh hour's count
    session.commit()
    assert quota.prune(session, now=clock.now()) == 0  # the current hour is never pruned


def test_two_workers_prune_at_once_each_row_once_without_waiting(pg_factory: sessionmaker[Session],
                                                                 frozen: Any) -> None:
    with pg_factory() as s:
        stale = _seed(s, users=5)
    first, second = pg_factory(), pg_factory()
    try:
        first.execute(select(1))
        second.execute(select(1))
        taken = quota.prune(first, now=clock.now(), batch=10)  # holds its rows until it commits
        second.connection().exec_driver_sql("SET LOCAL lock_timeout = '2s'")  # waiting for them would fail here
        other = quota.prune(second, now=clock.now(), batch=1000)
        first.commit()
        second.commit()
    finally:
        first.close()
        second.close()
    assert taken == 10 and taken + other == stale
    with pg_factory() as s:
        assert quota.prune(s, now=clock.now()) == 0
