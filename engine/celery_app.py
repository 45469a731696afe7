"""The Celery application: Redis when JZFLOW_REDIS_URL is set, else a SQLite broker needing no server."""
from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from engine import config, extensions, memory
from engine.ops import celery_signals


def _transport_options(settings: config.Settings) -> dict[str, object]:
    """Return broker transport options; kombu's SQLAlchemy transport passes them all to create_engine()."""
    if settings.redis_url:
        # An unacked message (worker killed mid-job) is put back once older than this, by a worker's
        # start-up scan or its periodic one (about every 100 s); beat's next sweep comes sooner.
        return {"visibility_timeout": 600}
    return {}


def _directory_beat() -> dict[str, dict[str, Any]]:
    """The directory sync's beat entry, when JZFLOW_LDAP_URL is set (engine/jobs_directory.py)."""
    from engine.org import ldap_read
    settings = ldap_read.load_settings()
    if not settings.enabled:
        return {}
    return {"sync-directory": {"task": "engine.jobs_directory.sync_directory", "schedule": settings.sync_seconds}}


def _broker_beat(settings: config.Settings) -> dict[str, dict[str, Any]]:
    """The embedded broker's clean-up: kombu's SQLAlchemy transport keeps every message a worker took."""
    if settings.redis_url:
        return {}
    return {"purge-broker": {"task": "engine.jobs.purge_broker", "schedule": 3600.0}}


def make_celery(settings: config.Settings | None = None) -> Celery:
    """Create the Celery app with our reliability settings and the beat schedule."""
    settings = settings or config.load()
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    extensions.load()
    app = Celery("jzflow", broker=settings.broker_url,
                 include=["engine.jobs", "engine.jobs_deadlines", "engine.jobs_directory", "engine.jobs_messages",
                          *extensions.task_modules])
    app.conf.update(
        task_acks_late=True,                 # a worker killed mid-job leaves the message to be redelivered
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings),
        timezone="Asia/Shanghai",
        enable_utc=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep-timers": {"task": "engine.jobs.sweep_timers", "schedule": settings.timer_sweep_seconds},
            "deliver-outbox": {"task": "engine.jobs.deliver_outbox", "schedule": settings.outbox_seconds},
            # Seal (and anchor outside the database) often: deletions are noticed within this window.
            "seal-audit": {"task": "engine.jobs.seal_audit", "schedule": settings.audit_seal_seconds},
            "purge-login-failures": {"task": "engine.jobs.purge_login_failures", "schedule": 3600.0},
            "purge-sso-records": {"task": "engine.jobs.purge_sso_records", "schedule": 3600.0},
            "purge-notice-counts": {"task": "engine.jobs.purge_notice_counts", "schedule": 3600.0},
            "sweep-deadlines": {"task": "engine.jobs_deadlines.sweep_deadlines", "schedule": 60.0},
            **_directory_beat(),
            # Signal deliveries a lost job left pending, and buffered messages past their time to live.
            "deliver-signals": {"task": "engine.jobs_messages.deliver_signals", "schedule": settings.outbox_seconds},
            "expire-messages": {"task": "engine.jobs_messages.expire_messages", "schedule": 60.0},
            # Hourly: a run with nothing due is one indexed COUNT; a backlog goes in batches, one transaction each.
            "archive-instances": {"task": "engine.jobs.archive_instances", "schedule": 3600.0},
            **_broker_beat(settings),
            **extensions.beat,
        },
        beat_schedule_filename=str(settings.instance_dir / "celerybeat-schedule"),
    )
    return app


celery = make_celery()
celery_signals.connect()  # request ids into jobs and their logs; job durations; counters of committed work


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _memory_ceiling(**_kwargs: Any) -> None:
    """Put each pool process under JZFLOW_MEMORY_LIMIT_MB (a MemoryError becomes an incident)."""
    memory.apply_limit()
