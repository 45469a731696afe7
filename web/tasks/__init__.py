"""The task page: its form, instructions, diagram, history, attachments and every inbox operation."""
from __future__ import annotations

from web.tasks import operations, views  # noqa: F401  (they add their routes to bp)
from web.tasks.blueprint import bp

__all__ = ["bp"]
