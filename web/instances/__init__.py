"""Feature blueprint: instances (routes are added by its feature work)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("instances", __name__)
