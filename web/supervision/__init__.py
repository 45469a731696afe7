"""Feature blueprint: supervision (routes are added by its feature work)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("supervision", __name__)
