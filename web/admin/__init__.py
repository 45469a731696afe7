"""Feature blueprint: admin (routes are added by its feature work)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__)
