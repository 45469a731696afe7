"""流程实例: the list of instances one may see, an instance's page, its BPMN; suspend / resume / terminate."""
from __future__ import annotations

import json

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from engine import documents, runtime
from engine.errors import Forbidden, NotFound
from engine.org import directory
from engine.org.actors import Actor
from engine.runtime import instances, timeline
from engine.tasks import access, queries, submissions, taskview
from web import downloads, links
from web.common import commit, current_actor, db_session
from web.instances import labels

bp = Blueprint("instances", __name__)
# How long a browser keeps the diagram of the version the page names: as the modeller keeps a version's, whose
# files never change (an hour: not longer, as a kept copy outlives the reader's access to the instance).
DIAGRAM_MAX_AGE = 3600


def visible_row(instance_id: int, actor: Actor) -> queries.InstanceRow:
    """Return an instance the actor may see.

    Raises: InstanceNotFound (also for one they may not see: the same answer, docs/security.md)
    """
    session = db_session()
    row = queries.instance_row(session, instance_id)
    if row is None:
        raise access.not_found(instance_id)
    access.require_view(session, actor, instance_id)
    return row


def filters_from(args: dict[str, str]) -> queries.InstanceFilter:
    """Read the list's filters from query arguments."""
    return queries.InstanceFilter(process_key=args.get("process") or None, status=args.get("status") or None,
                                  mine=args.get("mine") in ("1", "on", "true"), text=args.get("q") or None)


@bp.get("/instances")
@login_required
def index() -> ResponseReturnValue:
    session = db_session()
    flt = filters_from(request.args.to_dict())
    page = queries.instance_page(session, current_actor(), flt, after=request.args.get("after") or None,
                                 limit=request.args.get("limit", 50, type=int) or 50)
    processes = queries.process_choices(session)
    args = {k: v for k, v in request.args.items() if k not in ("after",) and v}
    return render_template("instances/index.html", page=page, flt=flt, processes=processes,
                           statuses=queries.STATUSES, labels=labels, args=args)


@bp.get("/instances/<int:instance_id>")
@login_required
def show(instance_id: int) -> ResponseReturnValue:
    session = db_session()
    actor = current_actor()
    row = visible_row(instance_id, actor)
    instance = row.instance
    # The data as stored (流程数据, the audit events' values): for admins, process owners and auditors; the staff
    # starter reads the same values labelled, in the 审批单 (docs/security.md)
    raw = queries.shows_raw_data(session, actor, instance)  # the API's `data` follows the same rule
    running = runtime.load(session, instance_id, read_only=True)
    states = timeline.diagram_states(session, running)
    data = None
    if raw:
        values = timeline.instance_data(running)
        names = directory.names_by_username(session, values.values())  # initiator & co.: who that is, one query
        data = [(key, *labels.pretty(value), names.get(value) if isinstance(value, str) else None)
                for key, value in values.items()]
    external = access.is_external(session, actor)  # an applicant: the public history only
    entries = timeline.timeline(session, instance_id, with_details=raw and not external, public=external,
                                public_for=actor.user_id)
    history = [(e, json.dumps(e.details, ensure_ascii=False, indent=2, sort_keys=True, default=str)
                if e.details is not None else None) for e in entries]
    task_rows = timeline.human_tasks(session, instance_id)
    steps = submissions.for_instance(session, actor, instance_id)  # an applicant: only their own steps
    users = queries.UserNames().load(session, [t.assignee_id for t in task_rows]
                                     + [t.completed_by_id for t in task_rows])
    return render_template(
        "instances/show.html", row=row, instance=instance, states=states, data=data, history=history,
        tasks=task_rows, users=users, incidents=timeline.incidents(session, instance_id),
        labels=labels, is_admin=actor.is_admin, task_url=links.task_url, related=links.instance_links(instance_id),
        diagram_url=url_for("instances.diagram", instance_id=instance_id, v=instance.version_id), steps=steps,
        external=external,
        issued=documents.for_instance(session, instance_id, internal=not external),  # an applicant: not the 审批单
        # An archived instance's task pages are gone: its files are listed here (served by the task route).
        attachments=taskview.visible_attachments(session, actor, instance_id)
        if instance.archived_at is not None else None)


@bp.get("/instances/<int:instance_id>/diagram.bpmn")
@login_required
def diagram(instance_id: int) -> ResponseReturnValue:
    row = visible_row(instance_id, current_actor())
    version_id = row.instance.version_id
    text = timeline.bpmn_text(db_session(), version_id, row.process_key)
    if text is None:
        raise NotFound("此版本没有BPMN文件 (no BPMN file in this version)", instance_id=instance_id)
    # Fetched by the viewer as text; opened directly, an inert download. A version's files never change, but an
    # instance's version does (a migration): the page asks for ?v=<its version>, an answer that never goes stale and
    # is kept; any other request (a page drawn before a migration, a link opened by hand) is asked again each time,
    # answered 304 while the instance is still on the version its ETag names.
    current = request.args.get("v") == str(version_id)
    return downloads.user_file(text, f"{row.process_key}.bpmn", etag=f"version-{version_id}",
                               max_age=DIAGRAM_MAX_AGE if current else 0)


def _lifecycle(instance_id: int, action: str) -> ResponseReturnValue:
    actor = current_actor()
    visible_row(instance_id, actor)
    if not actor.is_admin:
        raise Forbidden("只有管理员可以执行此操作 (admins only)", instance_id=instance_id)
    change = {"suspend": instances.suspend, "resume": instances.resume, "terminate": instances.terminate}[action]
    change(db_session(), instance_id=instance_id, actor=actor)
    commit()
    flash({"suspend": _("流程实例已挂起"), "resume": _("流程实例已恢复"), "terminate": _("流程实例已终止")}[action],
          "info")
    return redirect(url_for("instances.show", instance_id=instance_id))


@bp.post("/instances/<int:instance_id>/suspend")
@login_required
def suspend(instance_id: int) -> ResponseReturnValue:
    return _lifecycle(instance_id, "suspend")


@bp.post("/instances/<int:instance_id>/resume")
@login_required
def resume(instance_id: int) -> ResponseReturnValue:
    return _lifecycle(instance_id, "resume")


@bp.post("/instances/<int:instance_id>/terminate")
@login_required
def terminate(instance_id: int) -> ResponseReturnValue:
    return _lifecycle(instance_id, "terminate")
