"""Logs that an operator can follow: a request id on every line, plain text or JSON (JZFLOW_LOG_FORMAT).

The id of a web request (a sane incoming X-Request-ID, else a new one) is kept in a context variable;
every job the request queues carries it in a message header, and the worker puts it back into the
context while the job runs, so the job's log lines name the request that caused them.
"""
from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Any

from engine import config

REQUEST_ID_HEADER = "jz_request_id"  # the Celery message header that carries it into jobs
SENT_AT_HEADER = "jz_sent_at"  # epoch seconds the job was queued (queue age in the metrics)
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")
_current: ContextVar[str | None] = ContextVar("jzflow_request_id", default=None)
_HANDLER_MARK = "_jzflow_handler"


def sane_request_id(value: str | None) -> str | None:
    """Return an incoming request id if it is short and plain (no spaces, quotes or control characters)."""
    if value and _SANE.fullmatch(value):
        return value
    return None


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return _current.get()


def bind_request_id(value: str | None) -> Any:
    """Make `value` the current request id; returns a token for `reset_request_id`."""
    return _current.set(value)


def reset_request_id(token: Any) -> None:
    _current.reset(token)


class RequestIdFilter(logging.Filter):
    """Give every record a `request_id` attribute ("-" outside a request or job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _current.get() or "-"
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(process)d %(message)s"


def formatter(fmt: str | None = None) -> logging.Formatter:
    """The formatter for the configured log format: JSON (one object a line) or plain text."""
    fmt = fmt or config.load().log_format
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter
        return JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                             json_ensure_ascii=False)
    return logging.Formatter(TEXT_FORMAT)


def configure(level: str | None = None) -> None:
    """Send the root logger's records to stderr in the configured format (once per process)."""
    root = logging.getLogger()
    if any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        return
    wanted = (level or config.load().log_level).upper()
    if wanted not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"JZFLOW_LOG_LEVEL: {wanted!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter())
    handler.addFilter(RequestIdFilter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(wanted)
    # Every /readyz asks Alembic for the schema revision; its INFO lines would fill the log.
    logging.getLogger("alembic.runtime.migration").setLevel(max(logging.WARNING, root.level))
    # SpiffWorkflow logs every task's change of state at INFO (a dozen lines a completion, each formatted and
    # written): the engine's own debugging, seen at DEBUG only.
    logging.getLogger("spiff").setLevel(root.level if root.level <= logging.DEBUG else logging.WARNING)


def adopt(logger: logging.Logger) -> None:
    """Put the request id (and the JSON format, if configured) on handlers someone else set up (Celery's)."""
    fmt = config.load().log_format
    for handler in logger.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        if fmt == "json":
            handler.setFormatter(formatter("json"))
            continue
        current = handler.formatter
        if current is not None and current._fmt and "%(request_id)s" not in current._fmt:
            # Keep Celery's formatter class (it fills in the job's name and id), add the request id.
            current._fmt = current._fmt.replace("%(message)s", "[%(request_id)s] %(message)s", 1)
            current._style._fmt = current._fmt


# --- Celery: the id travels in the message headers -------------------------------------------------------

def stamp_headers(headers: dict[str, Any] | None) -> None:
    """Add the current request id and the time of sending to a job's message headers."""
    if headers is None:
        return
    headers.setdefault(SENT_AT_HEADER, time.time())
    rid = _current.get()
    if rid and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = rid


def request_id_of(task_request: Any) -> str | None:
    """Read the request id a job's message carried (protocol 2 puts custom headers on the request)."""
    value = getattr(task_request, REQUEST_ID_HEADER, None)
    if value is None:
        headers = getattr(task_request, "headers", None) or {}
        value = headers.get(REQUEST_ID_HEADER) if isinstance(headers, dict) else None
    return sane_request_id(str(value)) if value else None
