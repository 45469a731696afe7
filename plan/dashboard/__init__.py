"""经济运行监测: the leaders' dashboard read models (the names below), its charts and the per-unit view.
"""
from plan.dashboard.core import (
    CATEGORY_NAMES,
    CHARTS,
    indicator_detail,
    named_chart,
    overview,
    project_detail,
)
from plan.dashboard.pipeline import visible_projects
from plan.dashboard.scope import Scope, require_reader, scope_of
from plan.dashboard.targets import IndicatorRow, check_period, default_period, indicator_rows, light_of
from plan.projects.lags import STAGE_NAMES, Lag, lag_of

__all__ = [
    "CATEGORY_NAMES",
    "CHARTS",
    "STAGE_NAMES",
    "IndicatorRow",
    "Lag",
    "Scope",
    "check_period",
    "default_period",
    "indicator_detail",
    "indicator_rows",
    "lag_of",
    "light_of",
    "named_chart",
    "overview",
    "project_detail",
    "require_reader",
    "scope_of",
    "visible_projects",
]
