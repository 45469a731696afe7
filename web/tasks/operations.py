"""The task page's operations: each a CSRF-checked POST calling one audited engine service, then
commit, flash and redirect (POST-redirect-GET). Engine errors are translated by the app's handler."""
from __future__ import annotations

import re

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from engine import tasks
from engine.errors import FieldError, FormInvalid, InvalidInput
from engine.org import directory
from engine.runtime import forms
from engine.tasks import collab, lookup, operations, people, sendback, taskview
from engine.tasks.models import HumanTask
from plan import supervision
from web import once
from web.common import commit, current_actor, db_session, due_date_of
from web.common import form_text as text
from web.formparse import parse
from web.formrender import Form
from web.tasks.blueprint import bp
from web.tasks.views import render_page
from web.wording import localized

_NAMES = re.compile(r"[\s,，、;；]+")


def usernames(field: str) -> list[str]:
    """Read usernames from repeated inputs or one input separated by spaces, commas or 、."""
    names: list[str] = []
    for value in request.form.getlist(field):
        names += [n for n in _NAMES.split(value) if n]
    return list(dict.fromkeys(names))


def chosen(*names: str) -> str:
    """Name the people an operation reached by name and unit (林志远（发改局）), never by username."""
    return _("、").join(people.labels(db_session(), names))




def _visible(task_id: int) -> HumanTask:
    """Refuse a task the actor may not see as a missing one (404), before any service tells them more about it."""
    return taskview.get_visible(db_session(), current_actor(), task_id)


def seen_closed(task: HumanTask) -> bool:
    """Tell whether the page the form came from showed the step ended (its hidden `step`); a form without it: as the
    step was read now. A comment, file or 抄送 on a step shown open is refused if it has closed since (409)."""
    shown = request.form.get("step")
    if shown in ("open", "closed"):
        return shown == "closed"
    return task.state in ("completed", "cancelled")


def _back(task_id: int, anchor: str | None = None) -> ResponseReturnValue:
    return redirect(url_for("tasks.show", task_id=task_id, _anchor=anchor))


def _said(answer: dict[str, object]) -> str:
    """What an operation's answer flashes, from what `_done` kept: the first copy's, and again a second copy's."""
    name, said = answer.get("name", ""), answer.get("said")
    return {"unclaim": lambda: _("已取消认领"), "transfer": lambda: _("已转办给 %(name)s", name=name),
            "delegate": lambda: _("已委派给 %(name)s，待其处理后退回给您", name=name),
            "resolve": lambda: _("已处理并退回委派人"), "uncosign": lambda: _("已减签"),
            "send_back": lambda: _("已退回到「%(name)s」", name=name), "withdraw": lambda: _("已撤回，请重新办理"),
            "cc": lambda: _("已抄送给 %(names)s", names=name)}[str(said)]()


def _again() -> ResponseReturnValue | None:
    """The first copy's answer to this form (a double click, a resend after a slow answer), or None: do the work.
    Asked after `_visible`; the operation itself would refuse what its own first copy did (已委派, 已取消...)."""
    first = once.first_answer()
    return None if first is None else _told(first)


def _done(said: str, location: str, name: str = "") -> ResponseReturnValue:
    """Commit the operation with its answer kept under the form's `once` (a twin's, if it committed first)."""
    answer = {"said": said, "location": location, "name": name}
    return _told(once.commit_once_answer(**answer) or answer)


def _told(answer: dict[str, object]) -> ResponseReturnValue:
    flash(_said(answer), "info")
    return redirect(str(answer["location"]))


@bp.post("/tasks/<int:task_id>/claim")
@login_required
def claim(task_id: int) -> ResponseReturnValue:
    _visible(task_id)
    tasks.claim(db_session(), task_id=task_id, actor=current_actor())
    commit()
    flash(_("已认领"), "info")
    return _back(task_id)


@bp.post("/tasks/<int:task_id>/unclaim")
@login_required
def unclaim(task_id: int) -> ResponseReturnValue:
    _visible(task_id)
    if (first := _again()) is not None:
        return first
    tasks.unclaim(db_session(), task_id=task_id, actor=current_actor())
    return _done("unclaim", url_for("tasks.show", task_id=task_id))


@bp.post("/tasks/<int:task_id>/complete")
@login_required
def complete(task_id: int) -> ResponseReturnValue:
    session, actor = db_session(), current_actor()
    if request.form.get("_more"):  # "增加一行": show the form again with one more empty row, submit nothing
        _visible(task_id)
        return render_page(task_id, raw=request.form, more=request.form["_more"])
    if (first := _submitted_before(task_id)) is not None:  # a double click, a resend: the first one's answer
        return _submitted(first)
    # What the completion reads first, read once here (the page's form files need the task): one statement where a
    # read of the task, of its instance's version, of the instance and of its open rows went one by one
    read = tasks.read_to_complete(session, task_id, actor)
    task = read.task
    try:
        opinion = text("opinion") or None
    except InvalidInput as refused:  # the page again, what was typed kept
        flash(localized(refused.message), "error")
        return render_page(task_id, raw=request.form, status=422)
    data: dict[str, object] = {}
    parsed = None
    if task.kind == "bpmn":
        texts = taskview.form_texts(session, task, read.instance.version_id)
        if texts.problem is not None:  # a stored form past today's limits: the page says which, nothing is read
            return render_page(task_id, raw=request.form, status=422)
        parsed = parse(Form.from_text(texts.schema, texts.ui), request.form)
        data = parsed.data
        if parsed.errors:  # values that are not numbers: show them with whatever else the schema finds
            found: list[FieldError] = []
            try:
                forms.validate(texts.schema, data)
            except FormInvalid as exc:
                found = exc.errors
            flash(_("表单有误，请修改标出的字段"), "error")
            return render_page(task_id, raw=request.form, errors=parsed.place(found), status=422)
    try:
        result = tasks.complete(session, task_id=task_id, actor=actor, data=data, opinion=opinion, read=read)
    except FormInvalid as exc:
        session.rollback()
        if parsed is None:
            raise
        flash(_("表单有误，请修改标出的字段"), "error")
        return render_page(task_id, raw=request.form, errors=parsed.place(exc.errors), status=422)
    held = task.blocked and task.kind == "bpmn"
    answer = {
        "location": url_for("tasks.show", task_id=result.mine_next) if result.mine_next is not None  # mine too: there
        else url_for("inbox.index"),
        "said": "incident" if result.incident else "held" if held else "done"}
    return _submitted(once.commit_once_answer(**answer) or answer)


def _submitted_before(task_id: int) -> dict[str, object] | None:
    """The answer this completion form got already (its `once`), or None: complete now. Asked before the task is
    read to complete, which refuses a step done — by this same form's first copy, too."""
    if not request.form.get(once.FIELD):
        return None
    _visible(task_id)
    return once.first_answer()


def _submitted(answer: dict[str, object]) -> ResponseReturnValue:
    said = answer.get("said")
    if said == "incident":
        flash(_("已提交，但流程出现故障，已通知管理员"), "error")
    else:
        flash(_("已提交，等待加签人签署") if said == "held" else _("已提交"), "info")
    return redirect(str(answer["location"]))


@bp.post("/tasks/<int:task_id>/transfer")
@login_required
def transfer(task_id: int) -> ResponseReturnValue:
    _visible(task_id)
    if (first := _again()) is not None:
        return first
    target = text("to_username", 80)
    operations.transfer(db_session(), task_id=task_id, actor=current_actor(), to_username=target, note=text("note"))
    return _done("transfer", url_for("inbox.index"), chosen(target))


@bp.post("/tasks/<int:task_id>/delegate")
@login_required
def delegate(task_id: int) -> ResponseReturnValue:
    _visible(task_id)
    if (first := _again()) is not None:
        return first
    target = text("to_username", 80)
    operations.delegate(db_session(), task_id=task_id, actor=current_actor(), to_username=target, note=text("note"))
    return _done("delegate", url_for("tasks.show", task_id=task_id), chosen(target))


@bp.post("/tasks/<int:task_id>/resolve")
@login_required
def resolve(task_id: int) -> ResponseReturnValue:
    _visible(task_id)
    if (first := _again()) is not None:
        return first
    operations.resolve_delegation(db_session(), task_id=task_id, actor=current_actor(), opinion=text("opinion"))
    return _done("resolve", url_for("inbox.index"))


@bp.post("/tasks/<int:task_id>/cosigners")
@login_required
def add_cosigners(task_id: int) -> ResponseReturnValue:
    _visible(task_id)
    if (first := once.first_answer()) is not None:  # a double click: the first one added them, not refused 422
        return _cosigned(first)
    position = request.form.get("position", "")
    names = usernames("usernames")
    operations.add_cosigners(db_session(), task_id=task_id, actor=current_actor(), usernames=names,
                             position=position, note=text("note"))
    answer = {"location": url_for("tasks.show", task_id=task_id, _anchor="cosigners"), "position": position,
              "names": chosen(*names)}
    return _cosigned(once.commit_once_answer(**answer) or answer)


def _cosigned(answer: dict[str, object]) -> ResponseReturnValue:
    names = str(answer.get("names", ""))
    flash(_("已加签 %(names)s，加签人签署后由您继续办理", names=names) if answer.get("position") == "before"
          else _("已加签 %(names)s，您提交后由加签人签署", names=names), "info")
    return redirect(str(answer["location"]))


@bp.post("/tasks/<int:task_id>/cosigners/<int:cosign_id>/remove")
@login_required
def remove_cosigner(task_id: int, cosign_id: int) -> ResponseReturnValue:
    _visible(task_id)
    session = db_session()
    lookup.cosign_of(session, task_id, cosign_id)
    if (first := _again()) is not None:
        return first
    operations.remove_cosigner(session, cosign_task_id=cosign_id, actor=current_actor())
    return _done("uncosign", url_for("tasks.show", task_id=task_id, _anchor="cosigners"))


@bp.post("/tasks/<int:task_id>/send-back")
@login_required
def send_back(task_id: int) -> ResponseReturnValue:
    _visible(task_id)
    if (first := _again()) is not None:
        return first
    session, actor = db_session(), current_actor()
    to = request.form.get("to", "previous").strip() or "previous"
    if to not in ("previous", "applicant") and not to.isdigit():
        raise InvalidInput("退回目标无效 (unknown target)", field="to")
    try:
        reopened = sendback.send_back(session, task_id=task_id, actor=actor, to=to, reason=text("reason"),
                                      confirm=request.form.get("confirm") == "1")
    except sendback.ConfirmationRequired:  # it cancels parallel branches: say which, and ask again
        session.rollback()
        preview = sendback.preview(session, task_id=task_id, actor=actor, to=to)
        names = directory.display_names(session, [r.assignee_id for r in preview.cancels])
        return render_template("tasks/send_back_confirm.html", task_id=task_id, preview=preview, names=names, to=to,
                               reason=text("reason")), 409
    return _done("send_back", url_for("inbox.index"), reopened.name)


@bp.post("/tasks/<int:task_id>/withdraw")
@login_required
def withdraw(task_id: int) -> ResponseReturnValue:
    _visible(task_id)
    if (first := _again()) is not None:
        return first
    reopened = sendback.withdraw(db_session(), task_id=task_id, actor=current_actor(), reason=text("reason"))
    return _done("withdraw", url_for("tasks.show", task_id=reopened.id))


@bp.post("/tasks/<int:task_id>/urge")
@login_required
def urge(task_id: int) -> ResponseReturnValue:
    _visible(task_id)
    if (first := once.first_answer()) is not None:  # a double click, a resend: the first one urged, not refused 429
        flash(_("已催办 %(n)s 人", n=first.get("told", 0)), "info")
        return redirect(str(first["location"]))
    count = operations.urge(db_session(), task_id=task_id, actor=current_actor(), message=text("message", 2000))
    twin = once.commit_once_answer(url_for("tasks.show", task_id=task_id), told=count)
    flash(_("已催办 %(n)s 人", n=count if twin is None else twin.get("told", 0)), "info")
    return redirect(url_for("tasks.show", task_id=task_id) if twin is None else str(twin["location"]))


@bp.post("/tasks/<int:task_id>/cc")
@login_required
def carbon_copy(task_id: int) -> ResponseReturnValue:
    task = _visible(task_id)
    # A resend (a double click, a slow answer) is the first's answer: the engine's own check finds only unread copies,
    # and one read meanwhile would be delivered again
    if (first := _again()) is not None:
        return first
    names = usernames("usernames")
    collab.carbon_copy(db_session(), instance_id=task.instance_id, actor=current_actor(),
                       usernames=names, note=text("note", 2000), task_id=task.id, seen_closed=seen_closed(task))
    return _done("cc", url_for("tasks.show", task_id=task_id), chosen(*names))


@bp.post("/tasks/<int:task_id>/comments")
@login_required
def comment(task_id: int) -> ResponseReturnValue:
    task = _visible(task_id)
    if (sent := once.replayed()) is not None:  # a double click, a resend: the first one commented
        return redirect(sent)
    collab.add_comment(db_session(), instance_id=task.instance_id, actor=current_actor(), body=text("body"),
                       task_id=task.id, seen_closed=seen_closed(task))
    location = once.commit_once(url_for("tasks.show", task_id=task_id, _anchor="history"))
    flash(_("已发表评论"), "info")
    return redirect(location)


@bp.post("/tasks/<int:task_id>/attachments")
@login_required
def attach(task_id: int) -> ResponseReturnValue:
    task = _visible(task_id)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise InvalidInput("请选择文件 (choose a file)", field="file")
    content = upload.read(collab.MAX_ATTACHMENT_BYTES + 1)
    if (sent := once.replayed((upload.filename, content))) is not None:  # the same file sent again: kept once
        flash(_("此附件已上传，未重复保存"), "info")
        return redirect(sent)
    collab.attach(db_session(), instance_id=task.instance_id, actor=current_actor(), name=upload.filename,
                  content=content, content_type=upload.mimetype or "application/octet-stream", task_id=task.id,
                  seen_closed=seen_closed(task))
    location = once.commit_once(url_for("tasks.show", task_id=task_id, _anchor="attachments"))
    flash(_("已上传附件"), "info")
    return redirect(location)


@bp.post("/tasks/<int:task_id>/extension-requests")
@login_required
def request_extension(task_id: int) -> ResponseReturnValue:
    tasks.require_holder(_visible(task_id), current_actor())  # before its fields: not theirs is said first
    if (sent := once.replayed()) is not None:  # a double click, a resend: the first one asked
        return redirect(sent)
    session = db_session()
    try:
        supervision.request_extension(session, actor=current_actor(), task_id=task_id,
                                      due_date=due_date_of(request.form.get("due_date", "")),
                                      reason=text("reason", supervision.NOTE_LIMIT))
    except InvalidInput as refused:  # the page again, what was typed kept, nothing stored
        session.rollback()
        flash(localized(refused.message), "error")
        return render_page(task_id, extension=request.form, status=422)
    location = once.commit_once(url_for("tasks.show", task_id=task_id, _anchor="extension"))
    flash(_("已申请延期，待督办领导审批"), "info")
    return redirect(location)
