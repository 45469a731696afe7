"""gunicorn settings for jzflow's web processes: `gunicorn web.wsgi:app` reads this file from the working directory.

Every value can be set from the environment (docs/operations.md explains the choices).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from engine.config import whole  # a bad number stops the start naming its variable

# Several processes answer /metrics in turn: without a shared folder each would show only its own counters.
# Unset, this master gets a fresh folder of its own (the worker hosts then need theirs: docs/operations.md).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="jzflow-metrics-")

bind = os.environ.get("JZFLOW_BIND", "0.0.0.0:8000")
# Processes × threads: about 2 processes per core; threads cover requests that wait on the database.
workers = whole("JZFLOW_WEB_WORKERS", 4, least=1)
threads = whole("JZFLOW_WEB_THREADS", 4, least=1)
worker_class = "gthread"
# JZFLOW_WEB_REUSE_PORT=1: each process listens on a socket of its own and the kernel spreads new connections over
# them. With the one shared socket (the default) a gthread process takes connections while it has a free thread and
# keeps the keep-alive ones, so clients that hold connections open (API clients, a proxy's upstream keep-alive pool)
# can all end up on one process while the others idle. The price: connections still waiting in a process's own queue
# when it exits (recycled by max_requests, killed) are reset unless the host sets net.ipv4.tcp_migrate_req=1.
reuse_port = os.environ.get("JZFLOW_WEB_REUSE_PORT", "0") == "1"
# A request that runs longer is stuck (scripts have their own 2 s limit): the process is replaced.
timeout = whole("JZFLOW_WEB_TIMEOUT", 60, least=1)
graceful_timeout = 30  # SIGTERM: requests in flight may finish within this
keepalive = 5  # behind a reverse proxy that keeps connections open
# Replace each process after this many requests (plus jitter, so they do not all restart at once).
max_requests = whole("JZFLOW_WEB_MAX_REQUESTS", 5000)
max_requests_jitter = max_requests // 10
preload_app = False  # each process opens its own database pool after the fork
errorlog = "-"
accesslog = None  # the app logs one line per request, with its request id, route and time (engine.ops.logs)

if os.environ.get("JZFLOW_LOG_FORMAT", "").strip().lower() == "json":
    logconfig_dict: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "engine.ops.logs.formatter", "fmt": "json"}},
        "filters": {"request_id": {"()": "engine.ops.logs.RequestIdFilter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"],
                                "stream": "ext://sys.stderr"}},
        # The root logger is left to the app (engine.ops.logs.configure, in web.wsgi): no lines twice.
        "root": {"level": "INFO", "handlers": []},
        "loggers": {"gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                    # with a logconfig gunicorn writes access lines; the app's own request lines replace them
                    "gunicorn.access": {"handlers": [], "level": "WARNING", "propagate": False}},
    }


def on_starting(_server: Any) -> None:
    """Make the metrics folder (PROMETHEUS_MULTIPROC_DIR) before any process writes to it."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)


def child_exit(_server: Any, worker: Any) -> None:
    """A web process ended: its live gauges leave the metrics (its counters stay counted)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
