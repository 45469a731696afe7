"""经济运行监测: the leaders' dashboard of targets, gaps, projects and warnings; indicator data entry."""
from __future__ import annotations

from web.dashboard import entry, views  # noqa: F401  (they add their routes to bp)
from web.dashboard.blueprint import bp

__all__ = ["bp"]
