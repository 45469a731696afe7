"""The dashboard's pages: overview, an indicator's drill-down, a project, units; charts as SVG/PNG/JSON."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Response, jsonify, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required

from engine import clock
from engine.errors import NotFound
from engine.tasks import queries
from plan import dashboard, indicators
from plan import investment as plan
from plan.dashboard import charts, unitview
from plan.dashboard.charts import Chart
from plan.projects import approvals as project_approvals
from plan.projects.models import STAGES
from web import links
from web.common import current_actor, db_session
from web.dashboard.blueprint import bp

FORMATS = ("svg", "png", "json")


def require_reader() -> None:
    """The dashboard's door: everyone of the government (each sees their scope), not applicants from outside."""
    dashboard.require_reader(db_session(), current_actor())


def _scope() -> dashboard.Scope:
    require_reader()
    return dashboard.scope_of(db_session(), current_actor())


def _period() -> str:
    return dashboard.check_period(request.args.get("period"), dashboard.default_period(db_session(), clock.now()))


def _helpers() -> dict[str, Any]:
    return {"show": plan.show, "instance_url": links.instance_url, "task_url": links.task_url, "stages": STAGES,
            "stage_names": dashboard.STAGE_NAMES, "category_names": dashboard.CATEGORY_NAMES,
            "now": clock.now()}


def _wording(chart: Chart) -> Chart:
    """Put an overview chart's fixed words (its title, series, target line) in the reader's language: on the page
    and in its SVG, PNG and JSON alike."""
    from flask_babel import gettext
    return replace(chart, title=gettext(chart.title),
                   target_label=gettext(chart.target_label) if chart.target_label else chart.target_label,
                   series=tuple(replace(s, name=gettext(s.name)) for s in chart.series))


def _send(chart: Chart, fmt: str, name: str) -> ResponseReturnValue:
    if fmt == "json":
        return jsonify(chart.as_dict())
    if fmt == "svg":
        response = Response(charts.render_svg(chart), mimetype="image/svg+xml")
    elif fmt == "png":
        response = Response(charts.render_png(chart), mimetype="image/png")
    else:
        raise NotFound(f"图表格式须为 svg、png 或 json (format must be svg, png or json): {fmt}", format=fmt)
    response.headers["Content-Disposition"] = f'inline; filename="{name}.{fmt}"'
    # no Cache-Control of its own: the app's no-store (a browser shared at a counter keeps no one's scoped figures)
    return response


@bp.get("/dashboard")
@login_required
def index() -> ResponseReturnValue:
    session = db_session()
    scope = _scope()  # who may read, before what was asked is looked at
    period = _period()
    ov = dashboard.overview(session, period=period, scope=scope, now=clock.now())
    # 提速审批缩短30天以上: working days saved by the certified approval stages of the projects in scope
    saved = project_approvals.savings(session, None if scope.everything else
                                      [p.id for p in dashboard.visible_projects(session, scope)])
    chart_data = {name: _wording(dashboard.named_chart(ov, name)).as_dict() for name in dashboard.CHARTS}
    industry_links = [url_for("dashboard.indicator", code=i.scale.code, period=period)
                      for i in ov.industries if i.scale is not None]
    return render_template("dashboard/index.html", ov=ov, period=period, charts=chart_data,
                           industry_links=industry_links, can_enter=indicators.can_enter(session, current_actor()),
                           saved=saved, **_helpers())


@bp.get("/dashboard/charts/<name>.<fmt>")
@login_required
def chart(name: str, fmt: str) -> ResponseReturnValue:
    scope = _scope()
    ov = dashboard.overview(db_session(), period=_period(), scope=scope, now=clock.now())
    return _send(_wording(dashboard.named_chart(ov, name)), fmt, f"{name}-{ov.period}")


@bp.get("/dashboard/indicators/<code>")
@login_required
def indicator(code: str) -> ResponseReturnValue:
    scope = _scope()
    period = _period()
    detail = dashboard.indicator_detail(db_session(), code=code, period=period, scope=scope)
    return render_template("dashboard/indicator.html", d=detail, row=detail.row, period=period,
                           chart=detail.chart.as_dict(), **_helpers())


@bp.get("/dashboard/indicators/<code>/chart.<fmt>")
@login_required
def indicator_chart(code: str, fmt: str) -> ResponseReturnValue:
    scope = _scope()
    period = _period()
    detail = dashboard.indicator_detail(db_session(), code=code, period=period, scope=scope)
    return _send(detail.chart, fmt, f"{code}-{period}")


@bp.get("/dashboard/projects/<code>")
@login_required
def project(code: str) -> ResponseReturnValue:
    detail = dashboard.project_detail(db_session(), code=code, scope=_scope(), now=clock.now())
    return render_template("dashboard/project.html", p=detail, **_helpers())


@bp.get("/dashboard/units")
@login_required
def units() -> ResponseReturnValue:
    rows = unitview.figures(db_session(), scope=_scope(), now=clock.now())
    return render_template("dashboard/units.html", rows=rows, **_helpers())


@bp.get("/dashboard/units/<code>")
@login_required
def unit(code: str) -> ResponseReturnValue:
    session = db_session()
    view = unitview.unit_view(session, code=code, scope=_scope(), now=clock.now())
    return render_template("dashboard/unit.html", v=view, process_names=dict(queries.process_choices(session)),
                           **_helpers())
