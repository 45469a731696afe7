"""项目录入 on a project's page: planned dates (倒排工期), stages with evidence, reports to confirm, libraries,
the 包挂 leader, 要素保障 needs and starting an approval stage. Every route: the project must be in reach
(else 404 as if it did not exist), then the service checks the right to change it (403)."""
from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from engine.errors import InvalidInput
from plan.projects import approvals, edits, entry, needs, schedule, views
from plan.projects.models import Project
from web import links, once
from web.common import commit, current_actor, db_session, form_text
from web.projects.blueprint import bp, current_reach


def _project(project_id: int) -> Project:
    session = db_session()
    views.require_reach(session, current_actor(), current_reach())
    return views.visible_project(session, current_reach(), project_id)


def _back(project: Project, anchor: str) -> ResponseReturnValue:
    commit()
    return redirect(url_for("projects.show", project_id=project.id) + f"#{anchor}")


def _seen() -> str:
    """The version of what the page showed (`plan.stale`): blank when the form did not send one, refused then."""
    return request.form.get("seen", "")[:64]


def _int(name: str) -> int:
    value = request.form.get(name, "").strip()
    if not value.isdigit() or len(value) > 6:
        raise InvalidInput(_("请填写工作日数"), field=name)
    return int(value)


@bp.post("/projects/<int:project_id>/plan")
@login_required
def plan(project_id: int) -> ResponseReturnValue:
    project = _project(project_id)
    entry.require_edit(project, current_actor())
    dates = {f: entry.day(request.form.get(f), f) for f in entry.PLANNED_FIELDS}
    edits.set_planned(db_session(), project, actor=current_actor(), dates=dates, seen=_seen())
    flash(_("计划日期已保存"))
    return _back(project, "stages")


@bp.post("/projects/<int:project_id>/backward")
@login_required
def backward(project_id: int) -> ResponseReturnValue:
    project = _project(project_id)
    entry.require_edit(project, current_actor())
    complete = entry.day(request.form.get("planned_complete"), "planned_complete")
    if complete is None:
        raise InvalidInput(_("请填写计划竣工日期"), field="planned_complete")
    schedule.schedule_backward(db_session(), project, actor=current_actor(), planned_complete=complete,
                               construction_wd=_int("construction_wd"), produce_wd=_int("produce_wd"), seen=_seen())
    flash(_("已按倒排工期生成计划日期"))
    return _back(project, "stages")


@bp.post("/projects/<int:project_id>/stage")
@login_required
def stage(project_id: int) -> ResponseReturnValue:
    project = _project(project_id)
    entry.require_edit(project, current_actor())
    on = entry.day(request.form.get("on"), "on")
    if on is None:
        raise InvalidInput(_("请填写日期"), field="on")
    report = entry.record_stage(db_session(), project, actor=current_actor(), stage=request.form.get("stage", ""),
                                on=on, evidence=request.form.get("evidence", ""), note=request.form.get("note", ""))
    flash(_("已报送，待他人确认") if report else _("阶段已记录"))
    return _back(project, "stages")


@bp.post("/projects/<int:project_id>/stage/back")
@login_required
def move_back(project_id: int) -> ResponseReturnValue:
    """退回阶段: an administrator corrects a stage recorded by mistake, with the reason."""
    project = _project(project_id)
    entry.move_back(db_session(), project, actor=current_actor(), stage=request.form.get("stage", ""),
                    reason=request.form.get("reason", ""), seen=_seen())
    flash(_("阶段已退回"))
    return _back(project, "stages")


@bp.post("/projects/<int:project_id>/reports/<int:report_id>/<any(confirm, reject):decision>")
@login_required
def decide(project_id: int, report_id: int, decision: str) -> ResponseReturnValue:
    project = _project(project_id)
    entry.decide_report(db_session(), project, actor=current_actor(), report_id=report_id,
                        confirm=decision == "confirm", note=form_text("note", 2000), seen=_seen())
    flash(_("已确认") if decision == "confirm" else _("已退回"))
    return _back(project, "stages")


@bp.post("/projects/<int:project_id>/libraries")
@login_required
def libraries(project_id: int) -> ResponseReturnValue:
    project = _project(project_id)
    edits.set_libraries(db_session(), project, actor=current_actor(), codes=request.form.getlist("libraries")[:10],
                        seen=_seen())
    flash(_("项目库已更新"))
    return _back(project, "libraries")


@bp.post("/projects/<int:project_id>/leader")
@login_required
def leader(project_id: int) -> ResponseReturnValue:
    project = _project(project_id)
    edits.set_leader(db_session(), project, actor=current_actor(), username=request.form.get("leader", "")[:60],
                     seen=_seen())
    flash(_("包挂领导已更新"))
    return _back(project, "libraries")


@bp.post("/projects/<int:project_id>/needs")
@login_required
def add_need(project_id: int) -> ResponseReturnValue:
    project = _project(project_id)
    if (sent := once.replayed()) is not None:  # a double click: registered by the first click
        flash(_("此表单已提交，未重复登记"))
        return redirect(sent)
    needs.raise_need(db_session(), project, actor=current_actor(), kind=request.form.get("kind", ""),
                     description=request.form.get("description", ""))
    location = once.commit_once(url_for("projects.show", project_id=project.id) + "#needs")
    flash(_("要素保障事项已登记"))
    return redirect(location)


@bp.post("/projects/<int:project_id>/needs/<int:need_id>/resolve")
@login_required
def resolve_need(project_id: int, need_id: int) -> ResponseReturnValue:
    project = _project(project_id)
    needs.resolve_need(db_session(), project, actor=current_actor(), need_id=need_id,
                       resolution=request.form.get("resolution", ""))
    flash(_("要素保障事项已办结"))
    return _back(project, "needs")


@bp.post("/projects/<int:project_id>/approval")
@login_required
def start_approval(project_id: int) -> ResponseReturnValue:
    project = _project(project_id)
    actor = current_actor()
    entry.require_edit(project, actor)
    stage_code = request.form.get("stage", "")
    if stage_code not in approvals.STAGES:
        raise InvalidInput(_("未知审批阶段"), field="stage")
    row = approvals.start_stage(db_session(), project, stage=stage_code, actor=actor, applicant=actor.username)
    flash(_("已发起%(stage)s审批", stage=_(approvals.STAGES[stage_code].name)))
    commit()
    return redirect(links.instance_url(row.instance_id) if row.instance_id
                    else url_for("projects.show", project_id=project.id))
