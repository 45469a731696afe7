"""Celery's side of the request id and the job metrics: stamped on queueing, restored while the job runs."""
from __future__ import annotations

import logging
import time
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    before_task_publish,
    task_postrun,
    task_prerun,
)

from engine.ops import logs, metrics

_STARTED = "_jzflow_started"
_CONTEXT = "_jzflow_request_context"


def _published(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    logs.stamp_headers(headers)


def _prerun(task: Any = None, **_kwargs: Any) -> None:
    if task is None:
        return
    setattr(task.request, _CONTEXT, logs.bind_request_id(logs.request_id_of(task.request)))
    setattr(task.request, _STARTED, time.perf_counter())


def _postrun(task: Any = None, state: str | None = None, **_kwargs: Any) -> None:
    if task is None:
        return
    started = getattr(task.request, _STARTED, None)
    if started is not None:
        metrics.JOB_SECONDS.labels(job=str(task.name)[:120], outcome=str(state or "UNKNOWN")).observe(
            time.perf_counter() - started)
    token = getattr(task.request, _CONTEXT, None)
    if token is not None:
        try:
            logs.reset_request_id(token)
        except ValueError:  # another context (eager runs in tests): just clear it
            logs.bind_request_id(None)


def _logger_ready(logger: logging.Logger | None = None, **_kwargs: Any) -> None:
    if logger is not None:
        logs.adopt(logger)


def connect() -> None:
    """Connect the handlers (weakly held by Celery: module-level functions, so they stay alive)."""
    before_task_publish.connect(_published)
    task_prerun.connect(_prerun)
    task_postrun.connect(_postrun)
    after_setup_logger.connect(_logger_ready)
    after_setup_task_logger.connect(_logger_ready)
