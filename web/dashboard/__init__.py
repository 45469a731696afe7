"""经济运行监测: the leaders' dashboard of targets, gaps, projects and warnings; indicator data entry."""
from __future__ import annotations

from flask import Flask

from web import access
from web.dashboard import entry, views  # noqa: F401  (they add their routes to bp)
from web.dashboard.blueprint import bp


def init_app(app: Flask) -> None:
    """Show 经济运行监测 in the menu to those its pages let in."""
    access.door(app, "dashboard.index", views.require_reader, "政府部门人员（非项目单位）")


__all__ = ["bp", "init_app"]
