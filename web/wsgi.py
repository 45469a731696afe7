"""The WSGI entry point for gunicorn (`web.wsgi:app`): the app, under the per-process memory ceiling."""
from __future__ import annotations

from engine import memory
from engine.ops import logs
from web import create_app

logs.configure()  # JZFLOW_LOG_FORMAT (text | json), JZFLOW_LOG_LEVEL; every line carries the request id
memory.apply_limit()
app = create_app()
