"""经济运行监测: the leaders' dashboard of targets, gaps, projects and warnings; indicator data entry."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("dashboard", __name__)

from web.dashboard import entry, views  # noqa: E402,F401  (they add their routes to bp)
