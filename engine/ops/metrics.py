"""Prometheus metrics: what the processes count, and what the database and the broker hold at scrape time.

Counters (starts, completions, incidents, timer fires, every committed audit action, notices dropped past a cap)
count committed work only: they are taken from the audit events (and drops) a transaction recorded, once it has
committed. With
PROMETHEUS_MULTIPROC_DIR set (gunicorn, Celery prefork), every process writes its values to files there
and a scrape adds them up; the gauges (queues, overdue tasks, timer lag, outbox) are read from the
database and the broker when scraped, so every web host answers the same.

Label values are bounded: routes are URL rules (never raw paths), actions are the code's own vocabulary,
units are the org units' codes, queues are the configured Celery queues.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock
from engine.audit import core as audit_core
from engine.audit.models import AuditEvent
from engine.deadlines.models import DeadlineWatch
from engine.notify import outbox, quota
from engine.notify.models import OutboxMessage
from engine.ops import queues
from engine.org.models import OrgUnit
from engine.runtime.models import ProcessInstance

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ACTIONS = "jzflow.metrics_actions"

AUDIT_EVENTS = Counter("jzflow_audit_events", "Committed audit events, by action", ["action"])
STARTS = Counter("jzflow_instance_starts", "Process instances started (committed)")
COMPLETIONS = Counter("jzflow_task_completions", "User tasks completed (committed)")
INCIDENTS = Counter("jzflow_incidents", "Instances stopped with an incident (committed)")
TIMER_FIRES = Counter("jzflow_timer_fires", "BPMN timers fired (committed)")
NOTICE_DROPS = Counter("jzflow_notice_drops", "Notices dropped past an hourly cap (committed), by the cap that was "
                       "full: the person's (recipient) or else their instance's", ["cap"])
_COUNTED = {"instance.start": STARTS, "task.complete": COMPLETIONS, "instance.incident": INCIDENTS,
            "timer.fire": TIMER_FIRES}
REQUEST_SECONDS = Histogram("jzflow_http_request_duration_seconds", "Web request latency, by URL rule",
                            ["route", "method", "status"],
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
JOB_SECONDS = Histogram("jzflow_job_duration_seconds", "Celery job run time, by job and outcome",
                        ["job", "outcome"], buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0))


# --- counting committed audit actions --------------------------------------------------------------------

def _inserted(session: Session, events: list[AuditEvent]) -> None:
    session.info.setdefault(_ACTIONS, []).extend(ev.action for ev in events)


audit_core.APPENDED.append(_inserted)


# What a unit of work collected (its audit actions, its notice drops) is counted once it commits, and only what its
# database changes kept: a savepoint rolled back takes what was collected inside it, and only that; one released hands
# it to the transaction around it, which may still roll back. When a savepoint begins, what its parent collected so far
# is set aside (_SAVED, by the savepoint), and session.info holds what the savepoint collects; when it ends, the parent's
# is put back, with the savepoint's added unless it rolled back (after_rollback emptied it first), as engine.runtime.hot
# publishes its workflows. Before, a released savepoint counted everything so far (the transaction could still roll
# back), and a savepoint rolled back threw away what the whole transaction had collected.
_SAVED = "jzflow.metrics_saved"


def _collected(session: Session) -> tuple[list[str], dict[str, int]]:
    return session.info.pop(_ACTIONS, []), session.info.pop(quota.DROPS, {})


@event.listens_for(Session, "after_transaction_create")
def _savepoint_begins(session: Session, transaction: Any) -> None:
    if transaction.nested:
        session.info.setdefault(_SAVED, {})[transaction] = _collected(session)


@event.listens_for(Session, "after_transaction_end")
def _transaction_ends(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost: committed (counted already), rolled back or closed
        _collected(session)
        session.info.pop(_SAVED, None)
        return
    saved = session.info.get(_SAVED, {}).pop(transaction, None) if transaction.nested else None
    if saved is None:
        return
    actions, drops = saved
    inner_actions, inner_drops = _collected(session)  # empty if it rolled back
    actions += inner_actions
    for cap, n in inner_drops.items():
        drops[cap] = drops.get(cap, 0) + n
    if actions:
        session.info[_ACTIONS] = actions
    if drops:
        session.info[quota.DROPS] = drops


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the transaction around it may still roll back
    actions, drops = _collected(session)
    for action in actions:
        count_action(action)
    for cap, n in drops.items():
        NOTICE_DROPS.labels(cap=cap).inc(n)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    _collected(session)  # what the transaction, or the savepoint, collected since it began


def count_action(action: str) -> None:
    """Count one committed audit action (and the named counter it feeds, if any)."""
    AUDIT_EVENTS.labels(action=action[:60]).inc()
    counter = _COUNTED.get(action)
    if counter is not None:
        counter.inc()


# --- the state of the system, read at scrape time ----------------------------------------------------------

def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - clock.as_utc(then)).total_seconds()) if then is not None else 0.0


class StateCollector(Collector):
    """Gauges read from the database and the broker when Prometheus scrapes."""

    def __init__(self, factory: sessionmaker[Session], broker_url: str, queue_names: Iterable[str]) -> None:
        self.factory = factory
        self.broker_url = broker_url
        self.queue_names = tuple(queue_names)

    def collect(self) -> Iterator[Metric]:
        now = clock.now()
        with self.factory() as session:
            yield from self._database(session, now)
            session.rollback()
        yield from self._queues(now)

    def _database(self, session: Session, now: datetime) -> Iterator[Metric]:
        overdue = GaugeMetricFamily("jzflow_overdue", "Open work past its deadline, by responsible org unit and kind",
                                    labels=["unit", "kind"])
        rows = session.execute(
            select(OrgUnit.code, DeadlineWatch.object_type, func.count())
            .select_from(DeadlineWatch).outerjoin(OrgUnit, OrgUnit.id == DeadlineWatch.unit_id)
            .where(DeadlineWatch.active.is_(True), DeadlineWatch.due_at < now)
            .group_by(OrgUnit.code, DeadlineWatch.object_type))
        for unit, kind, count in rows:
            overdue.add_metric([str(unit or "none"), str(kind)], float(count))
        yield overdue

        oldest_due = session.scalar(select(func.min(ProcessInstance.next_timer_at))
                                    .where(ProcessInstance.status == "running", ProcessInstance.next_timer_at <= now))
        yield GaugeMetricFamily("jzflow_timer_lag_seconds", "Now minus the oldest due, unfired BPMN timer (0: none due)",
                                value=_age(now, oldest_due))
        due_timers = session.scalar(select(func.count()).select_from(ProcessInstance)
                                    .where(ProcessInstance.status == "running", ProcessInstance.next_timer_at <= now))
        yield GaugeMetricFamily("jzflow_timers_due", "Instances whose timer is due and not yet fired",
                                value=float(due_timers or 0))

        pending = (OutboxMessage.delivered_at.is_(None), OutboxMessage.attempts < outbox.MAX_ATTEMPTS)
        backlog, oldest = session.execute(select(func.count(), func.min(OutboxMessage.created_at))
                                          .where(*pending)).one()
        yield GaugeMetricFamily("jzflow_outbox_backlog", "Side effects (notifications, e-mail, webhooks) not yet "
                                "delivered", value=float(backlog or 0))
        yield GaugeMetricFamily("jzflow_outbox_oldest_seconds", "Age of the oldest undelivered side effect",
                                value=_age(now, oldest))
        dead = session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.delivered_at.is_(None), OutboxMessage.attempts >= outbox.MAX_ATTEMPTS))
        yield GaugeMetricFamily("jzflow_outbox_failed", "Side effects given up after every retry",
                                value=float(dead or 0))
        yield GaugeMetricFamily("jzflow_notices_dropped", "Notices not sent in the last 24 hours: past the cap of "
                                "their instance or person per hour", value=float(quota.dropped(
                                    session, since=now - timedelta(hours=24))))

        by_status = GaugeMetricFamily("jzflow_instances", "Process instances by status", labels=["status"])
        for status, count in session.execute(select(ProcessInstance.status, func.count())
                                             .group_by(ProcessInstance.status)):
            by_status.add_metric([str(status)], float(count))
        yield by_status

    def _queues(self, now: datetime) -> Iterator[Metric]:
        depth = GaugeMetricFamily("jzflow_queue_depth", "Jobs waiting in a Celery queue", labels=["queue"])
        age = GaugeMetricFamily("jzflow_queue_oldest_seconds", "Age of the oldest job waiting in a Celery queue",
                                labels=["queue"])
        up = GaugeMetricFamily("jzflow_broker_up", "1 if the broker answered this scrape")
        try:
            found = queues.inspect(self.broker_url, self.queue_names, now=now.timestamp())
        except Exception as exc:  # the broker is down: say so, and keep the database's gauges
            log.warning("queue metrics: the broker did not answer: %s", type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        for q in found:
            depth.add_metric([q.name], float(q.depth))
            age.add_metric([q.name], q.oldest_seconds)
        yield from (up, depth, age)


def registry_for(state: Collector | None = None) -> CollectorRegistry:
    """The registry a scrape reads: every process's values (multiprocess mode) or this one's, plus `state`."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    if state is not None:
        registry.register(state)
    return registry


class _Forward(Collector):
    """Hand on what the process-wide registry collects (without registering `state` there for good)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()


def render(state: Collector | None = None) -> bytes:
    """The metrics in Prometheus' text format."""
    return generate_latest(registry_for(state))
