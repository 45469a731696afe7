"""The tasks feature's blueprint: its view modules add their routes to `bp`."""
from __future__ import annotations

from flask import Blueprint

from web import links

bp = Blueprint("tasks", __name__)
bp.add_app_template_global(links.instance_url, "jz_instance_url")  # the inbox lists link to instances too
