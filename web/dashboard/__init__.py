"""Feature blueprint: dashboard (routes are added by its feature work)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("dashboard", __name__)
