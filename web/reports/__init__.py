"""报表: start a 周调度 / 月通报 run, watch its progress (a meta refresh, no script), download XLSX and PDF."""
from __future__ import annotations

from datetime import date
from urllib.parse import quote

from flask import Blueprint, Flask, Response, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from engine import clock
from engine.errors import Forbidden, InvalidInput, NotFound
from plan import reports
from web import access, once
from web.common import current_actor, db_session, kick

bp = Blueprint("reports", __name__)
ACTIVE = ("pending", "running")
MEDIA = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "pdf": "application/pdf"}


def kick_report(run_id: int) -> None:
    """Ask a worker to generate the run now; if the broker is down, beat's pending-reports job does it later."""
    kick("plan.jobs.generate_report", [run_id])


def _require_reports() -> None:
    if not reports.can_use(db_session(), current_actor()):
        raise Forbidden(_("无权使用报表"))


def init_app(app: Flask) -> None:
    """Show 报表 in the menu to those `_require_reports` lets in."""
    access.door(app, "reports.index", _require_reports, "领导、台账管理员、审计督查、流程管理员、数据监测人员或系统管理员")


@bp.get("/reports")
@login_required
def index() -> ResponseReturnValue:
    _require_reports()
    runs = reports.recent_runs(db_session())
    today = clock.now().astimezone(clock.SHANGHAI).date()
    return render_template("reports/index.html", runs=runs, today=today, kinds=reports.KINDS,
                           refresh=any(r.status in ACTIVE for r in runs))


@bp.post("/reports")
@login_required
def start() -> ResponseReturnValue:
    _require_reports()  # before the form is looked at: refused is refused
    if (sent := once.replayed()) is not None:  # a double click, a refresh: the run the first asked for
        return redirect(sent)
    kind = request.form.get("kind", "")
    try:
        day = date.fromisoformat(request.form.get("day", "").strip())
    except ValueError:
        raise InvalidInput(_("日期格式应为 YYYY-MM-DD"), field="day") from None
    run = reports.create_run(db_session(), actor=current_actor(), kind=kind, day=day)
    mine = url_for("reports.show", run_id=run.id)
    location = once.commit_once(mine)
    if location == mine:  # else a twin committed first: this run was undone, the twin kicked its own
        kick_report(run.id)
    flash(_("报表生成中"))
    return redirect(location)


@bp.get("/reports/<int:run_id>")
@login_required
def show(run_id: int) -> ResponseReturnValue:
    actor = current_actor()
    run = reports.get_run(db_session(), run_id, actor)
    # what failed (the exception's text: SQL, parameters, paths) is for whoever runs the system, not the reader
    return render_template("reports/show.html", run=run, refresh=run.status in ACTIVE,
                           summary=reports.visible_summary(db_session(), run, actor),
                           detail=run.error if actor.is_admin else None)


@bp.get("/reports/<int:run_id>.<fmt>")
@login_required
def download(run_id: int, fmt: str) -> ResponseReturnValue:
    if fmt not in MEDIA:
        raise NotFound(_("没有这种格式"))
    found = reports.run_file(db_session(), run_id, fmt, current_actor())
    if found is None:
        raise NotFound(_("报表尚未生成"))
    run, content = found
    name = f"{run.title}.{fmt}"
    return Response(content, mimetype=MEDIA[fmt], headers={
        "Content-Disposition": f"attachment; filename=report-{run.id}.{fmt}; filename*=UTF-8''{quote(name)}"})
