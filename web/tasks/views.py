"""The task page (GET), its diagram's BPMN and attachment downloads — each access-checked."""
from __future__ import annotations

from flask import render_template
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l
from flask_login import login_required
from werkzeug.datastructures import MultiDict

from engine import clock, tasks
from engine.errors import NotYourTask
from engine.org.actors import Actor
from engine.tasks import inbox, people, submissions, taskview
from plan import supervision
from web import downloads
from web.common import current_actor, db_session
from web.formrender import PREFIX, Form, initial, render
from web.tasks import instructions
from web.tasks.blueprint import bp

# Labels of the history's audit actions and comment kinds (unknown ones show their code).
ACTIONS = {
    "instance.start": _l("发起流程"), "task.claim": _l("认领"), "task.unclaim": _l("取消认领"),
    "task.complete": _l("提交"), "task.transfer": _l("转办"), "task.delegate": _l("委派"),
    "task.delegation_resolved": _l("委派退回"), "task.cosign.add": _l("加签"), "task.cosign.remove": _l("减签"),
    "task.cosign.sign": _l("加签签署"), "task.submit_for_cosign": _l("提交，待加签人签署"),
    "task.send_back": _l("退回"), "task.withdraw": _l("撤回"), "task.urge": _l("催办"), "timer.fire": _l("定时触发"),
    "document.issue": _l("出具文书"),
    "instance.attach": _l("上传附件"), "instance.incident": _l("流程故障"), "instance.suspend": _l("挂起"),
    "instance.resume": _l("恢复"), "instance.terminate": _l("终止"), "opinion": _l("审批意见"),
    "applicant_opinion": _l("申请说明"),
    "comment": _l("评论"), "urge": _l("催办"), "transfer": _l("转办说明"), "delegate": _l("委派说明"),
    "cosign": _l("加签说明"), "send_back": _l("退回理由"), "withdraw": _l("撤回理由"), "cc": _l("抄送"),
    "system": _l("系统"),
}
STATES = {"ready": _l("待办理"), "completed": _l("已完成"), "cancelled": _l("已取消"), "suspended": _l("已挂起"),
          "pending": _l("待激活")}
EXTENSION_STATES = {"pending": _l("待审批"), "granted": _l("已批准"), "refused": _l("未批准"),
                    "cancelled": _l("已取消")}  # cancelled: its asker moved or was deactivated
POSITIONS = {"before": _l("前加签"), "after": _l("后加签")}


def render_page(task_id: int, *, raw: MultiDict[str, str] | None = None, errors: dict[str, list[str]] | None = None,
                more: str = "", extension: MultiDict[str, str] | None = None,
                status: int = 200) -> ResponseReturnValue:
    """Render the task page; after a refused submission, with the user's input and the errors at their fields
    (`extension`: what a refused 申请延期 sent, shown again in its form)."""
    session = db_session()
    actor = current_actor()
    page = taskview.load(session, actor, task_id)
    form_html = None
    if page.may.complete and page.task.kind == "bpmn" and page.form_problem is None:
        form = Form.from_text(page.schema_text, page.ui_text)
        form_html = render(form, shown(form, page, raw), errors, more=more)
    now = clock.now()
    asked = supervision.latest_extension(session, page.task.id)
    steps = submissions.for_instance(session, actor, page.task.instance_id)  # what earlier steps submitted
    return render_template(
        "tasks/show.html", page=page, task=page.task, form_html=form_html, steps=steps,
        own=next((s for s in steps if s.task_id == page.task.id), None),
        opinion=(raw.get("opinion", "") if raw is not None else ""),
        instructions_html=instructions.render(page.instructions, page.data),
        light=inbox.light_of(page.task.due_at, page.task.warn_at, now),
        people=people.tree(session, actor, page.task.instance_id), actions=ACTIONS, states=STATES, positions=POSITIONS,
        asked=asked, may_extend=may_extend(page, actor) and (asked is None or asked.status != "pending"),
        extension=extension or MultiDict(), extension_states=EXTENSION_STATES,
    ), status


def shown(form: Form, page: taskview.TaskPage, raw: MultiDict[str, str] | None) -> MultiDict[str, str]:
    """The values the form is drawn with: the task's data, or what was sent; the fields the application fixed always
    with their values (a read-only field sends it, a disabled choice nothing: engine/tasks/fixed.py)."""
    if raw is None:
        return initial(form, {**page.data, **page.fixed})
    if not page.fixed:
        return raw
    values = raw.copy()
    held = initial(form, page.fixed)
    for name in page.fixed:
        path = f"{PREFIX}/{name}"
        values.setlist(path, held.getlist(path))
    return values


def may_extend(page: taskview.TaskPage, actor: Actor) -> bool:
    """Whether the page offers 申请延期: an open step with a deadline, to its holder (the service checks again)."""
    if page.task.state != "ready" or page.instance.status != "running" or page.task.due_at is None:
        return False
    try:
        tasks.require_holder(page.task, actor)
    except NotYourTask:
        return False
    return True


@bp.get("/tasks/<int:task_id>")
@login_required
def show(task_id: int) -> ResponseReturnValue:
    return render_page(task_id)


@bp.get("/tasks/<int:task_id>/diagram.bpmn")
@login_required
def diagram(task_id: int) -> ResponseReturnValue:
    xml = taskview.diagram_xml(db_session(), current_actor(), task_id)
    return downloads.user_file(xml, "diagram.bpmn")  # fetched by the viewer as text; opened directly, a download


@bp.get("/tasks/<int:task_id>/attachments/<int:attachment_id>")
@login_required
def attachment(task_id: int, attachment_id: int) -> ResponseReturnValue:
    found = taskview.attachment(db_session(), current_actor(), task_id, attachment_id)
    # Never shown inline, never with the uploader's type unless it is inert (web.downloads).
    return downloads.user_file(found.content, found.name, found.content_type, etag=found.sha256)
