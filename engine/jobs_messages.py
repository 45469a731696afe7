"""Celery jobs of messages and signals: resume the instances a signal waits for, in batches; expire the buffer."""
from __future__ import annotations

import logging
import time

from celery import current_task
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import clock
from engine.celery_app import celery
from engine.db import session_scope
from engine.errors import ConcurrentModification
from engine.jobs import session_factory
from engine.runtime import message_worker, signals

log = logging.getLogger(__name__)
BATCH = 100
MAX_SECONDS = 20.0  # then the job hands the rest to a fresh job (other work gets a turn)


def run_signal_deliveries(factory: sessionmaker[Session], *, batch: int = BATCH,
                          max_seconds: float = MAX_SECONDS) -> tuple[int, bool]:
    """Resume instances waiting on broadcast signals, one per transaction; return (resumed, more left)."""
    resumed, after = 0, 0
    started = time.monotonic()
    while time.monotonic() - started < max_seconds:
        with session_scope(factory) as session:
            ids = signals.pending_ids(session, limit=batch, after=after)
        if not ids:
            return resumed, False
        for delivery_id in ids:
            after = delivery_id
            try:
                with session_scope(factory) as session:
                    resumed += signals.deliver_one(session, delivery_id)
            except ConcurrentModification:
                continue  # someone acted on the instance meanwhile: it stays pending for the next job
            except OperationalError:
                raise
            except Exception:  # one broken instance must not stop the broadcast
                log.exception("signal delivery %s failed", delivery_id)
    with session_scope(factory) as session:
        return resumed, bool(signals.pending_ids(session, limit=1))


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def deliver_signals() -> int:
    """Resume the instances broadcast signals wait for; hand what is left to a fresh job."""
    resumed, more = run_signal_deliveries(session_factory())
    if more:
        kick(in_worker_only=True)
    return resumed


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def expire_messages() -> int:
    """Mark buffered messages past their time to live expired."""
    with session_scope(session_factory()) as session:
        return message_worker.expire(session, now=clock.now())


def kick(*, in_worker_only: bool = False) -> None:
    """Send `deliver_signals` without waiting on a broker that is down (beat's schedule catches up).

    `in_worker_only`: only from inside a worker's job (the outbox job run as a plain function, in tests or
    by hand, sends nothing; beat catches up).
    """
    if in_worker_only and not (current_task and current_task.request.id):  # a proxy: falsy outside a job
        return
    try:
        options = dict(celery.conf.broker_transport_options or {})
        if str(celery.conf.broker_url or "").startswith("redis"):
            options["max_retries"] = 0
        with celery.connection_for_write(transport_options=options) as connection:
            celery.send_task("engine.jobs_messages.deliver_signals", retry=False, ignore_result=True,
                             connection=connection)
    except Exception:  # the deliveries are committed; a lost kick costs only time
        log.warning("could not kick deliver_signals; beat will", exc_info=True)
