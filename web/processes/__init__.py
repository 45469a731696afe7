"""发起流程: the processes a user may start, and the start page (title, business key, start form)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required
from werkzeug.datastructures import MultiDict
from werkzeug.routing import BuildError

from engine import deploy
from engine.errors import Forbidden, FormInvalid, ProcessNotFound
from engine.org.actors import Actor
from engine.runtime import forms, instances
from engine.tasks import queries
from web import formparse, formrender, once
from web.common import current_actor, db_session

bp = Blueprint("processes", __name__)


def startable_info(key: str, actor: Actor) -> queries.StartInfo:
    """Return what starting the latest version of `key` needs, if the actor may start it.

    Raises: ProcessNotFound, Forbidden
    """
    session = db_session()
    version = deploy.latest_version(session, key)
    if version is None:
        raise ProcessNotFound(f"流程不存在: {key}", process_key=key)
    info = queries.start_info(session, version)
    if not queries.may_start(session, actor, info):
        raise Forbidden("您不能发起此流程 (you may not start this process)", process_key=key)
    return info


def after_start_url(instance_id: int, actor: Actor) -> str:
    """Where to go after starting: the first task if it is the starter's, else the instance."""
    task = queries.first_task_for(db_session(), actor, instance_id)
    if task is not None and "tasks.show" in current_app.view_functions:
        try:
            return url_for("tasks.show", task_id=task.id)
        except BuildError:
            pass
    return url_for("instances.show", instance_id=instance_id)


@bp.get("/processes")
@login_required
def index() -> ResponseReturnValue:
    infos = queries.startable(db_session(), current_actor())
    return render_template("processes/index.html", processes=infos)


@bp.route("/processes/<key>/start", methods=["GET", "POST"])
@login_required
def start(key: str) -> ResponseReturnValue:
    actor = current_actor()
    info = startable_info(key, actor)
    # A stored start form past today's limits is drawn as a message naming it (the template), never walked.
    form = formrender.Form.from_text(info.schema_text, info.ui_text) \
        if info.schema_text and info.form_problem is None else None
    raw: MultiDict[str, str] = formrender.initial(form, None) if form is not None else MultiDict()
    errors: dict[str, list[str]] = {}
    title = request.form.get("title", "").strip()
    business_key = request.form.get("business_key", "").strip()
    status = 200
    if request.method == "POST" and info.form_problem is not None:  # nothing starts on a form no page may draw
        status = 422
    elif request.method == "POST":
        if (sent := once.replayed()) is not None:  # a double click, a resend: the instance the first one started
            flash(_("此表单已提交，未重复发起"), "info")
            return redirect(sent)
        raw = request.form
        parsed = formparse.parse(form, raw) if form is not None else formparse.Parsed(data={})
        if len(title) > 300:
            errors["title"] = [_("标题不能超过300字")]
        if len(business_key) > 200:
            errors["business_key"] = [_("业务编号不能超过200字")]
        field_errors: dict[str, list[str]] = dict(parsed.errors)
        try:
            data: dict[str, Any] = forms.validate(info.schema_text, parsed.data, info.forms)
        except FormInvalid as exc:
            field_errors = parsed.place(exc.errors)
        if not errors and not field_errors:
            try:
                row = instances.start(db_session(), process_key=key, actor=actor, data=data,
                                      business_key=business_key or None, title=title or None, from_client=True)
            except FormInvalid as exc:  # too large for the state, or a service refused a field: nothing started
                db_session().rollback()
                key_errors = [e.message for e in exc.errors if e.field == "business_key"]  # the page's, not the form's
                field_errors = parsed.place(e for e in exc.errors if e.field != "business_key")
                if key_errors:
                    field_errors["business_key"] = key_errors
            else:
                location = once.commit_once(after_start_url(row.id, actor))
                flash(_("流程已发起"), "info")
                return redirect(location)
        errors.update(field_errors)
        status = 422
    fields = formrender.render(form, raw, errors) if form is not None else None
    return render_template("processes/start.html", info=info, fields=fields, title=title,
                           business_key=business_key, errors=errors), status
