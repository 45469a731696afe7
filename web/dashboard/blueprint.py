"""The dashboard feature's blueprint: its view modules add their routes to `bp`."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("dashboard", __name__)
