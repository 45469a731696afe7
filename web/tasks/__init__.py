"""Feature blueprint: tasks (routes are added by its feature work)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("tasks", __name__)
