"""The API's routes: the caller's tasks and their operations, instances, processes (start)."""
from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from engine import runtime, tasks
from engine.errors import InvalidInput
from engine.org.actors import Actor
from engine.runtime import instances, timeline
from engine.tasks import access, lookup, operations, queries, sendback, taskview
from engine.tasks.models import HumanTask
from plan import supervision
from web.api import serialize
from web.api.blueprint import body, bp, text_field
from web.api.idempotency import finish
from web.common import current_actor, db_session, due_date_of
from web.processes import startable_info

# Free texts (意见, 说明, 理由) as the task page takes them: longer is refused naming the field, never cut.
TEXT_LIMIT, URGE_LIMIT = 4000, 2000


def _limit() -> int:
    value = request.args.get("limit", "50")
    if not value.isdigit() or not 1 <= int(value) <= queries.MAX_PAGE:
        raise InvalidInput(f"limit 须为 1–{queries.MAX_PAGE} 的整数 (limit: 1–{queries.MAX_PAGE})", field="limit")
    return int(value)


def visible_task(task_id: int, actor: Actor) -> HumanTask:
    """Return a task the actor holds, may claim, or whose instance they may see: every task route asks first, so one
    they may not see answers as a missing id (404, the same body) before its body or state is looked at.

    Raises: TaskNotFound, InstanceArchived
    """
    return taskview.get_visible(db_session(), actor, task_id)


def _task_response(task: HumanTask, status: int = 200) -> ResponseReturnValue:
    return jsonify(serialize.task_detail(db_session(), task, current_actor())), status


def _task_done(task: HumanTask) -> ResponseReturnValue:
    """Answer an operation on a task: its new state, committed together with the work (and any key)."""
    return finish(serialize.task_detail(db_session(), task, current_actor()))


# --- tasks -------------------------------------------------------------------------------------------

@bp.get("/tasks")
def task_list() -> ResponseReturnValue:
    actor = current_actor()
    page = queries.inbox_page(db_session(), actor, after=request.args.get("after") or None, limit=_limit())
    return jsonify(items=serialize.tasks_list(db_session(), page.items, actor), next_cursor=page.next_cursor)


@bp.get("/tasks/<int:task_id>")
def task_show(task_id: int) -> ResponseReturnValue:
    return _task_response(visible_task(task_id, current_actor()))


# 认领 and 取消认领 take no body: the service's one read refuses an unseen task as missing before anything else.
@bp.post("/tasks/<int:task_id>/claim")
def task_claim(task_id: int) -> ResponseReturnValue:
    task = tasks.claim(db_session(), task_id=task_id, actor=current_actor())
    return _task_done(task)


@bp.post("/tasks/<int:task_id>/unclaim")
def task_unclaim(task_id: int) -> ResponseReturnValue:
    task = tasks.unclaim(db_session(), task_id=task_id, actor=current_actor())
    return _task_done(task)


@bp.post("/tasks/<int:task_id>/complete")
def task_complete(task_id: int) -> ResponseReturnValue:
    try:
        data = body()
        form = data.get("data", {})
        if not isinstance(form, dict):
            raise InvalidInput("data 必须是 JSON 对象 (data must be an object)", field="data")
        opinion = text_field(data, "opinion", max_length=TEXT_LIMIT) or None
    except InvalidInput:
        visible_task(task_id, current_actor())  # one the caller may not see is missing, whatever was sent
        raise
    # the completion's one read refuses an unseen task as missing before anything else: no read of it before
    done = tasks.complete(db_session(), task_id=task_id, actor=current_actor(), data=form, opinion=opinion)
    return finish({"instance_id": done.instance_id, "status": done.status, "incident": done.incident,
                   "next_tasks": done.next_tasks})


@bp.post("/tasks/<int:task_id>/transfer")
def task_transfer(task_id: int) -> ResponseReturnValue:
    visible_task(task_id, current_actor())
    data = body()
    task = operations.transfer(db_session(), task_id=task_id, actor=current_actor(),
                               to_username=text_field(data, "to_username", required=True),
                               note=text_field(data, "note", max_length=TEXT_LIMIT))
    return _task_done(task)


@bp.post("/tasks/<int:task_id>/delegate")
def task_delegate(task_id: int) -> ResponseReturnValue:
    visible_task(task_id, current_actor())
    data = body()
    task = operations.delegate(db_session(), task_id=task_id, actor=current_actor(),
                               to_username=text_field(data, "to_username", required=True),
                               note=text_field(data, "note", max_length=TEXT_LIMIT))
    return _task_done(task)


@bp.post("/tasks/<int:task_id>/resolve")
def task_resolve(task_id: int) -> ResponseReturnValue:
    visible_task(task_id, current_actor())
    data = body()
    task = operations.resolve_delegation(db_session(), task_id=task_id, actor=current_actor(),
                                         opinion=text_field(data, "opinion", required=True, max_length=TEXT_LIMIT))
    return _task_done(task)


@bp.post("/tasks/<int:task_id>/cosigners")
def task_add_cosigners(task_id: int) -> ResponseReturnValue:
    visible_task(task_id, current_actor())
    data = body()
    names = data.get("usernames", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidInput("usernames 须为字符串数组 (usernames: a list of strings)", field="usernames")
    created = operations.add_cosigners(db_session(), task_id=task_id, actor=current_actor(), usernames=names,
                                       position=text_field(data, "position", required=True),
                                       note=text_field(data, "note", max_length=TEXT_LIMIT))
    return finish({"task_id": task_id, "cosign_task_ids": [c.id for c in created]})


@bp.post("/tasks/<int:task_id>/cosigners/<int:cosign_id>/remove")
def task_remove_cosigner(task_id: int, cosign_id: int) -> ResponseReturnValue:
    visible_task(task_id, current_actor())
    session = db_session()
    lookup.cosign_of(session, task_id, cosign_id)
    operations.remove_cosigner(session, cosign_task_id=cosign_id, actor=current_actor())
    return finish({"task_id": task_id, "removed": cosign_id})


def _send_back_to(data: dict[str, Any]) -> Any:
    to: Any = data.get("to", "previous")
    if not (isinstance(to, str) or (isinstance(to, int) and not isinstance(to, bool))):
        raise InvalidInput("to 须为 previous、applicant 或任务编号 (to: previous | applicant | a task id)", field="to")
    return to


@bp.post("/tasks/<int:task_id>/send-back/preview")
def task_send_back_preview(task_id: int) -> ResponseReturnValue:
    visible_task(task_id, current_actor())
    found = sendback.preview(db_session(), task_id=task_id, actor=current_actor(), to=_send_back_to(body()))
    return jsonify(task_id=task_id, target={"id": found.target.id, "bpmn_id": found.target.bpmn_id,
                                            "name": found.target.name},
                   cancels=[{"task_id": r.id, "bpmn_id": r.bpmn_id, "name": r.name} for r in found.cancels])


@bp.post("/tasks/<int:task_id>/send-back")
def task_send_back(task_id: int) -> ResponseReturnValue:
    visible_task(task_id, current_actor())
    data = body()
    confirm = data.get("confirm", False)
    if not isinstance(confirm, bool):
        raise InvalidInput("confirm 须为 true 或 false (confirm: a boolean)", field="confirm")
    reopened = sendback.send_back(db_session(), task_id=task_id, actor=current_actor(), to=_send_back_to(data),
                                  reason=text_field(data, "reason", max_length=TEXT_LIMIT), confirm=confirm)
    return _task_done(reopened)


@bp.post("/tasks/<int:task_id>/urge")
def task_urge(task_id: int) -> ResponseReturnValue:
    visible_task(task_id, current_actor())
    data = body()
    notified = operations.urge(db_session(), task_id=task_id, actor=current_actor(),
                               message=text_field(data, "message", max_length=URGE_LIMIT))
    return finish({"task_id": task_id, "notified": notified})


@bp.post("/tasks/<int:task_id>/extension-requests")
def task_request_extension(task_id: int) -> ResponseReturnValue:
    """申请延期 by the step's holder: a later due date and why; 督办 decides it."""
    tasks.require_holder(visible_task(task_id, current_actor()), current_actor())  # said before its fields
    data = body()
    asked = supervision.request_extension(db_session(), actor=current_actor(), task_id=task_id,
                                          due_date=due_date_of(data.get("due_date")),
                                          reason=text_field(data, "reason"))  # its limit: the service's, named
    return finish(serialize.extension_request(asked), 201)


# --- instances and processes -------------------------------------------------------------------------

@bp.get("/instances")
def instance_list() -> ResponseReturnValue:
    flt = queries.InstanceFilter(process_key=request.args.get("process") or None,
                                 status=request.args.get("status") or None,
                                 mine=request.args.get("mine", "").lower() in ("1", "true"),
                                 text=request.args.get("q") or None)
    page = queries.instance_page(db_session(), current_actor(), flt, after=request.args.get("after") or None,
                                 limit=_limit())
    return jsonify(items=serialize.instances_list(db_session(), page.items), next_cursor=page.next_cursor)


def _instance_response(instance_id: int, status: int = 200, **extra: Any) -> ResponseReturnValue:
    return jsonify(_instance_detail(instance_id, **extra)), status


def _instance_detail(instance_id: int, **extra: Any) -> dict[str, Any]:
    session = db_session()
    actor = current_actor()
    row = queries.instance_row(session, instance_id)
    if row is None:
        raise access.not_found(instance_id)
    access.require_view(session, actor, instance_id)  # one they may not see: the same answer
    data = None
    if queries.shows_raw_data(session, actor, row.instance):  # as 流程数据 on the page: not for a staff starter
        data = timeline.instance_data(runtime.load(session, instance_id, read_only=True))
    out = serialize.instance_detail(session, row, actor, task_rows=timeline.human_tasks(session, instance_id),
                                    incidents=timeline.incidents(session, instance_id), data=data)
    out.update(extra)
    return out


@bp.get("/instances/<int:instance_id>")
def instance_show(instance_id: int) -> ResponseReturnValue:
    return _instance_response(instance_id)


@bp.get("/processes")
def process_list() -> ResponseReturnValue:
    infos = queries.startable(db_session(), current_actor())
    return jsonify(items=[serialize.process(i) for i in infos])


@bp.post("/processes/<key>/instances")
def process_start(key: str) -> ResponseReturnValue:
    actor = current_actor()
    startable_info(key, actor)
    data = body()
    form = data.get("data", {})
    if not isinstance(form, dict):
        raise InvalidInput("data 必须是 JSON 对象 (data must be an object)", field="data")
    title = text_field(data, "title", max_length=300) or None
    business_key = text_field(data, "business_key", max_length=200) or None
    # Reserved keys (initiator) are refused and the start form, when there is one, checked by the engine.
    row = instances.start(db_session(), process_key=key, actor=actor, data=form, business_key=business_key,
                          title=title, from_client=True)
    first = queries.first_task_for(db_session(), actor, row.id)
    return finish(_instance_detail(row.id, next_task_id=first.id if first is not None else None), 201)
