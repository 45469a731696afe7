"""项目库: the list of projects one may see, a project's page and its entry forms, 挂图作战, 项目导入."""
from __future__ import annotations

from web.projects import actions, planning  # noqa: F401  (they add their routes to bp)
from web.projects.blueprint import bp, current_reach, init_app, may_open

__all__ = ["bp", "current_reach", "init_app", "may_open"]
