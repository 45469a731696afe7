"""The task page: its form, instructions, diagram, history, attachments and every inbox operation."""
from __future__ import annotations

from flask import Blueprint

from web import links

bp = Blueprint("tasks", __name__)
bp.add_app_template_global(links.instance_url, "jz_instance_url")  # the inbox lists link to instances too

from web.tasks import operations, views  # noqa: E402,F401  (they add their routes to bp)
