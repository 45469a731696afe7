"""Celery jobs: thin, idempotent, acks_late. They take ids, re-read state and commit per unit."""
from __future__ import annotations

import json
import logging
import re
import smtplib
from collections.abc import Callable
from email.message import EmailMessage
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, config, plaintext
from engine.archive import core as archive
from engine.celery_app import celery
from engine.db import make_engine, make_sessionmaker, session_scope
from engine.errors import ConcurrentModification
from engine.notify import outbound, outbox, quota
from engine.notify.models import OutboxMessage
from engine.ops import queues
from engine.org import login_guard, oidc_backchannel
from engine.org.models import User
from engine.runtime import message_worker, signals, timers
from engine.tasks.collab_models import Notification

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def session_factory() -> sessionmaker[Session]:
    """Return the process-wide session factory for jobs."""
    return make_sessionmaker(make_engine(config.load().database_url))


def run_timer_sweep(factory: sessionmaker[Session], *, batch: int, max_batches: int = 50) -> int:
    """Fire every due timer, one instance per transaction, each instance at most once; return how many fired.

    An instance still due after it fired (a time the sweep misread) waits for the next sweep: firing it again in
    each later batch made one sweep fire it 50 times.
    """
    fired = 0
    done: set[int] = set()
    for _ in range(max_batches):
        now = clock.now()
        with session_scope(factory) as session:
            ids = [i for i in timers.due_ids(session, now=now, limit=batch + len(done)) if i not in done][:batch]
        if not ids:
            break
        progressed = False
        for instance_id in ids:
            done.add(instance_id)
            seen: int | None = None  # the lock_version the run read, under its row lock
            try:
                with session_scope(factory) as session:
                    seen = timers.take_due(session, instance_id, now=now)
                    if seen is not None:
                        timers.fire_taken(session, instance_id)
                        fired += 1
                        progressed = True
            except ConcurrentModification:
                continue  # someone acted on it meanwhile; its next_timer_at was recomputed
            except OperationalError:
                raise  # the database is gone: let Celery retry the whole sweep
            except Exception as exc:
                # One broken instance must not stall every timer behind it (the sweep goes by due time). The
                # incident is about the state that failed: not written if someone saved the instance since.
                log.exception("timer of instance %s failed", instance_id)
                if seen is not None:
                    with session_scope(factory) as session:
                        timers.mark_failed(session, instance_id, exc, lock_version=seen)
                progressed = True
        if not progressed:
            break  # everything left is locked by another worker or not due after all
    return fired


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def sweep_timers() -> int:
    """Fire due BPMN timers."""
    return run_timer_sweep(session_factory(), batch=config.load().sweep_batch)


def delivery_key(msg: OutboxMessage) -> str:
    """Name one outbox message alike on every attempt, so a receiver can drop the copy a retry sends again.

    A worker killed after the receiver took the message and before its commit leaves the message pending (no
    sender avoids that); the copy sent then carries the same key (webhooks: Idempotency-Key; mail: Message-ID).
    """
    created = clock.as_utc(msg.created_at).strftime("%Y%m%d%H%M%S") if msg.created_at else "0"
    return f"jzflow.outbox.{msg.id}.{created}"


def gone(session: Session, msg: OutboxMessage) -> bool:
    """Tell whether the person a mail or webhook is about was deactivated (停用) since it was queued; if so the
    message is noted as dropped (it is marked delivered: nothing to retry)."""
    user_id = msg.payload.get("user_id") if isinstance(msg.payload, dict) else None
    if user_id is None or session.scalar(select(User.is_active).where(User.id == int(user_id))) is not False:
        return False
    msg.last_error = "dropped: the recipient was deactivated before it was sent"
    return True


def _deliver_webhook(session: Session, msg: OutboxMessage) -> None:
    if gone(session, msg):
        return
    sent = msg.payload.get("body", msg.payload)
    body = json.dumps(sent, ensure_ascii=False).encode()
    # Resolved and checked again now (not only when saved): no loopback, private or link-local target.
    status, answer = outbound.post_json(str(msg.payload["url"]), body, timeout=10,
                                        headers={"Idempotency-Key": delivery_key(msg)})
    if status >= 300:
        raise RuntimeError(f"webhook answered {status}")
    if isinstance(sent, dict) and "msgtype" in sent:
        refused = _robot_refusal(answer)
        if refused:
            raise RuntimeError(refused)


def _robot_refusal(answer: bytes) -> str | None:
    """What a group robot (WeChat Work, DingTalk) said when it refused a message: it answers HTTP 200 either way, with
    a non-zero `errcode` (too many messages a minute, a text too long, a key revoked). None: taken, or no such answer."""
    try:
        said = json.loads(answer)
    except ValueError:
        return None
    code = said.get("errcode") if isinstance(said, dict) else None
    if code in (None, 0, "0"):
        return None
    return one_line(f"robot answered errcode {code}: {str(said.get('errmsg', ''))[:200]}")


def one_line(text: str) -> str:
    """Return text as a mail header holds it: control characters and bidi controls dropped as on paper
    (`plaintext.printed`: a U+202E in a BPMN task name reversed the subject), each run of line breaks, tabs and
    other white space one space."""
    return _BREAKS.sub(" ", plaintext.printed(text)).strip()


_BREAKS = re.compile(r"[\s\x00-\x1f\x7f]+")


def _deliver_email(session: Session, msg: OutboxMessage) -> None:
    if gone(session, msg):
        return
    settings = msg.payload
    email = EmailMessage()
    # A title comes from whoever named the case: a line break in it made the header unsendable (the message was
    # retried until it was given up), and must never start a header of its own.
    email["Subject"] = one_line(str(settings["subject"]))
    email["From"] = settings.get("from", "jzflow@localhost")
    email["To"] = settings["to"]
    _, at, domain = str(email["From"]).rpartition("@")
    domain = domain.strip(" >") if at else ""
    email["Message-ID"] = f"<{delivery_key(msg)}@{domain or 'localhost'}>"
    email.set_content(settings.get("text", ""))
    smtp = smtplib.SMTP(settings.get("host", "127.0.0.1"), int(settings.get("port", 25)), timeout=10)
    try:
        smtp.send_message(email)  # the relay's "250" to the message is the delivery
    finally:
        # Not `with`: its exit raised on a QUIT answered other than 221, after the relay had taken the mail, so a
        # delivered mail counted as failed and each retry sent it again.
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def _deliver_event(_session: Session, msg: OutboxMessage) -> None:
    log.info("event %s: %s", msg.id, msg.payload)


def _deliver_in_app(session: Session, msg: OutboxMessage) -> None:
    # Written in the same transaction that marks the message delivered: exactly once.
    p = msg.payload
    session.add(Notification(user_id=int(p["user_id"]), kind=str(p.get("kind", "info")), title=str(p["title"])[:300],
                             body=str(p.get("body") or ""), link=p.get("link"), outbox_id=msg.id,
                             params=p.get("params") if isinstance(p.get("params"), dict) else None))


def _deliver_bpmn_message(session: Session, msg: OutboxMessage) -> None:
    # Routed in the transaction that marks the outbox row delivered; a conflict is retried with backoff.
    message_worker.route_pending(session, int(msg.payload["message_id"]))


def _give_up_bpmn_message(session: Session, msg: OutboxMessage, error: Exception) -> None:
    # Its last try failed (the instance it matches busy every time): refused with the reason, not pending for good.
    message_worker.give_up(session, int(msg.payload["message_id"]), tries=msg.attempts, error=error)


def _deliver_bpmn_signal(session: Session, msg: OutboxMessage) -> None:
    signals.prepare(session, int(msg.payload["signal_id"]))
    from engine.jobs_messages import kick  # that module imports this one
    kick(in_worker_only=True)  # the deliveries commit with this outbox row; a kick lost or too early: beat


DELIVERERS: dict[str, Callable[[Session, OutboxMessage], None]] = {
    "webhook": _deliver_webhook, "email": _deliver_email, "event": _deliver_event, "in_app": _deliver_in_app,
    "bpmn_message": _deliver_bpmn_message, "bpmn_signal": _deliver_bpmn_signal,
}


GIVE_UP: dict[str, outbox.GiveUp] = {"bpmn_message": _give_up_bpmn_message}


def deliver(session: Session, msg: OutboxMessage) -> None:
    """Deliver one outbox message by its kind."""
    handler = DELIVERERS.get(msg.kind)
    if handler is None:
        raise LookupError(f"no deliverer for outbox kind {msg.kind!r}")
    handler(session, msg)


def run_outbox(factory: sessionmaker[Session], *, limit: int = 100) -> int:
    """Deliver pending outbox messages, each in its own transaction; return how many were delivered."""
    with session_scope(factory) as session:
        due = outbox.pending(session, limit=limit)
    delivered, lease = 0, config.load().outbox_lease_seconds
    for message_id, kind in due:
        leased = False
        if kind in outbox.LEAVING:  # counted before it is sent: a worker killed while sending cannot undo that
            with session_scope(factory) as session:
                leased = outbox.lease(session, message_id, seconds=lease)
            if not leased:
                continue
        with session_scope(factory) as session:
            delivered += outbox.deliver_one(session, message_id, deliver, leased=leased, give_up=GIVE_UP.get(kind))
    return delivered


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def deliver_outbox() -> int:
    """Deliver pending side effects recorded by committed transactions."""
    return run_outbox(session_factory())


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def seal_audit() -> int | None:
    """Seal all audit stream heads into a checkpoint."""
    with session_scope(session_factory()) as session:
        checkpoint = audit.seal(session)
        return checkpoint.id if checkpoint else None


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def purge_login_failures() -> int:
    """Delete failed-login counters whose window has passed."""
    settings = config.load()
    limits = login_guard.Limits(settings.login_account_failures, settings.login_address_failures,
                                settings.login_window_seconds)
    with session_scope(session_factory()) as session:
        return login_guard.purge(session, now=clock.now(), limits=limits)


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def purge_sso_records() -> int:
    """Delete the back-channel logout tokens and recorded single sign-on logins past their time."""
    with session_scope(session_factory()) as session:
        return oidc_backchannel.purge(session, now=clock.now())


def run_notice_prune(factory: sessionmaker[Session], *, batch: int = 1000, max_batches: int = 100) -> int:
    """Delete the notice counters past quota.KEEP, a batch per transaction, until none is left or max_batches (the next
    run goes on); return how many."""
    pruned = 0
    for _ in range(max_batches):
        with session_scope(factory) as session:
            n = quota.prune(session, now=clock.now(), batch=batch)
        pruned += n
        if n < batch:
            break
    return pruned


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def purge_notice_counts() -> int:
    """Delete the hourly notice counters of the notice cap older than the ops gauge reads (engine.notify.quota.KEEP)."""
    return run_notice_prune(session_factory())


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def archive_instances() -> int:
    """Move instances ended more than JZFLOW_ARCHIVE_AFTER_DAYS ago to the archive tables (0: never)."""
    settings = config.load()
    report = archive.run(session_factory(), after_days=settings.archive_after_days, batch=settings.archive_batch)
    return report.moved


@celery.task(  # type: ignore[untyped-decorator]
    acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def purge_broker() -> int:
    """Delete the messages workers took from the embedded broker (beat runs this only there)."""
    return queues.purge_taken(str(celery.conf.broker_url))
