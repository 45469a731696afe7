"""The WSGI entry point for gunicorn (`web.wsgi:app`): the app, under the per-process memory ceiling."""
from __future__ import annotations

from engine import memory
from web import create_app

memory.apply_limit()
app = create_app()
