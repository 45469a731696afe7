"""挂图作战 (the schedule chart of a unit's or a library's projects), 新建项目, and 项目导入 (XLSX with a preview)."""
from __future__ import annotations

import base64
import binascii
import hashlib
import secrets

from flask import Response, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from engine import clock
from engine.errors import InvalidInput
from plan.dashboard import STAGE_NAMES
from plan.projects import entry, imports, page, schedule, views
from plan.projects.core import PROJECT_TYPES, today
from web import once
from web.common import commit, current_actor, db_session
from web.projects.blueprint import bp, current_reach


def _entering() -> None:
    """Only a unit's data or investment officers (or admins) enter projects; the services check each one's unit."""
    entry.require_enter(db_session(), current_actor())


@bp.get("/projects/schedule")
@login_required
def chart() -> ResponseReturnValue:
    session = db_session()
    reach = views.require_reach(session, current_actor(), current_reach())
    flt = views.ProjectFilter.from_mapping(request.args)
    found = views.project_page(session, reach, flt, limit=views.MAX_PAGE, now=clock.now())
    projects = schedule.projects_of(session, ids=[r.project.id for r in found.rows])
    return render_template("projects/schedule.html", chart=schedule.gantt(projects, today()), flt=flt,
                           choices=views.choices(session), stage_names=STAGE_NAMES, truncated=found.next_cursor is not None)


@bp.get("/projects/new")
@login_required
def new() -> ResponseReturnValue:
    _entering()
    session = db_session()
    return render_template("projects/new.html", choices=views.choices(session), types=PROJECT_TYPES,
                           leaders=page.leaders(session), form={})


@bp.post("/projects/new")
@login_required
def create() -> ResponseReturnValue:
    _entering()
    if (sent := once.replayed()) is not None:  # a double click: the project the first click entered
        flash(_("此表单已提交，未重复录入"))
        return redirect(sent)
    session = db_session()
    values = {k: request.form.get(k, "") for k in imports.HEADERS if k != "libraries"}
    values["libraries"] = ",".join(request.form.getlist("libraries")[:10])
    project = entry.create_project(session, actor=current_actor(), data=entry.read_input(values))
    location = once.commit_once(url_for("projects.show", project_id=project.id))
    flash(_("项目已录入：%(code)s", code=project.code))
    return redirect(location)


@bp.get("/projects/import")
@login_required
def import_form() -> ResponseReturnValue:
    _entering()
    return render_template("projects/import.html", result=None, payload="")


@bp.get("/projects/import/template.xlsx")
@login_required
def import_template() -> ResponseReturnValue:
    _entering()
    own = page.unit_codes(db_session(), current_actor())
    body = imports.template_xlsx(own[0] if own else "", today())
    response = Response(body, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    response.headers["Content-Disposition"] = "attachment; filename=projects-template.xlsx"
    return response


@bp.post("/projects/import")
@login_required
def import_preview() -> ResponseReturnValue:
    _entering()
    file = request.files.get("file")
    if file is None or not file.filename:
        raise InvalidInput(_("请选择 XLSX 或 CSV 文件"), field="file")
    try:
        payload = file.read(imports.MAX_BYTES + 1)
    finally:
        file.close()  # a large upload is spooled to a temporary file: release it now
    result = imports.run(db_session(), filename=file.filename, data=payload, actor=current_actor(), store=False)
    return render_template("projects/import.html", result=result, stage_names=STAGE_NAMES, once=secrets.token_urlsafe(16),
                           payload=base64.b64encode(payload).decode() if result.ok else ""), 200 if result.ok else 422


@bp.post("/projects/import/confirm")
@login_required
def import_confirm() -> ResponseReturnValue:
    _entering()
    try:
        payload = base64.b64decode(request.form.get("payload", ""), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(_("上传内容已损坏，请重新上传"), field="payload") from None
    if len(payload) > imports.MAX_BYTES or hashlib.sha256(payload).hexdigest() != request.form.get("sha256"):
        raise InvalidInput(_("上传内容已损坏，请重新上传"), field="payload")
    result = imports.run(db_session(), filename=request.form.get("filename", "upload.xlsx")[:200], data=payload,
                         actor=current_actor(), store=True, once=request.form.get("once", ""),
                         seen=request.form.get("seen", "")[:64])
    commit()
    if result.replayed:  # this form was stored before (a double click, a retry): nothing was added now
        flash(_("此文件已导入，未重复导入：新增 %(add)s，更新 %(update)s", add=result.count("add"),
                update=result.count("update")))
    else:
        flash(_("已导入：新增 %(add)s，更新 %(update)s", add=result.count("add"), update=result.count("update")))
    return redirect(url_for("projects.index"))
