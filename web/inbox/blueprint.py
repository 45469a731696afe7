"""The inbox feature's blueprint: its view modules add their routes to `bp`."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("inbox", __name__)
