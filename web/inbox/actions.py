"""Changes made from the lists: bulk 认领 / 办理 / 转办, 抄送 read marks, saved filters.

A bulk action calls the engine service once per task, each in a savepoint so that one refusal
does not undo the others; the request still commits once, and shows every task's result. At most MAX_BULK
tasks at a time: a choice of more is refused whole, never cut short without a word.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required
from werkzeug.datastructures import MultiDict

from engine import tasks
from engine.errors import EngineError, FieldError, FormInvalid, InvalidInput
from engine.runtime import forms
from engine.tasks import fixed, inbox, lookup, operations, people, taskview
from engine.tasks.models import HumanTask
from web.common import commit, current_actor, db_session, form_text
from web.formparse import parse
from web.formrender import Form, initial, render
from web.inbox.blueprint import bp
from web.inbox.lists import FIELDS, list_context
from web.wording import localized

MAX_BULK = 100


@dataclass(frozen=True)
class Result:
    task_id: int
    name: str
    ok: bool
    message: str


def _selected(values: list[str]) -> list[int]:
    """The chosen task ids, each once, in order.

    Raises: InvalidInput (more than MAX_BULK: refused whole, never cut short without a word)
    """
    ids = list(dict.fromkeys(int(v) for v in values if v.strip().isdigit() and len(v.strip()) <= 18))
    if len(ids) > MAX_BULK:
        raise InvalidInput(_("一次最多处理 %(max)s 项任务，本次勾选了 %(n)s 项，请分批操作", max=MAX_BULK, n=len(ids)),
                           field="ids")
    return ids


def _filter_args() -> dict[str, str]:
    return inbox.Filter.from_mapping({k: v for k, v in request.args.items() if k in FIELDS["index"]}).as_query()


def _visible(ids: list[int]) -> list[HumanTask]:
    """The selected tasks the actor may see, in the order chosen; the others are left out, names and all."""
    session, actor = db_session(), current_actor()
    seen = []
    for task_id in ids:
        try:
            seen.append(taskview.get_visible(session, actor, task_id))
        except EngineError:
            continue
    return seen


def _template_task(ids: list[int]) -> HumanTask | None:
    """The first selected task the actor may see: its form is the one the bulk submission fills."""
    session, actor = db_session(), current_actor()
    for task_id in ids:
        try:
            return taskview.get_visible(session, actor, task_id)
        except EngineError:
            continue
    return None


def _bulk_form(ids: list[int], raw: MultiDict[str, str] | None = None, errors: dict[str, list[str]] | None = None,
               status: int = 200) -> ResponseReturnValue:
    session = db_session()
    chosen = _visible(ids)  # someone else's task: not its name, not its id (as if it did not exist)
    if not chosen:
        abort(404)
    first = chosen[0]
    texts = taskview.form_texts(session, first)
    html = None
    if texts.problem is None:  # else a stored form past today's limits: the page says which, draws none of it
        # a field every chosen task fixes (engine/tasks/fixed.py) is read-only and left empty: each takes its own value
        held = set.intersection(*(set(fixed.of(session, t, texts.schema)) for t in chosen))
        form = Form.from_text(texts.schema, fixed.read_only(texts.ui, sorted(held)))
        html = render(form, raw if raw is not None else initial(form, {}), errors,
                      more=raw.get("_more", "") if raw is not None else "")
    return render_template("inbox/bulk_complete.html", ids=[t.id for t in chosen], tasks=chosen, first=first,
                           form_html=html, form_problem=texts.problem,
                           opinion=raw.get("opinion", "") if raw is not None else "",
                           filter_args=_filter_args()), status


def _complete_each(ids: list[int]) -> Callable[[int], Any] | ResponseReturnValue:
    session, actor = db_session(), current_actor()
    first = _template_task(ids)
    if first is None:
        abort(404)
    texts = taskview.form_texts(session, first)
    if texts.problem is not None:
        return _bulk_form(ids, request.form, status=422)
    parsed = parse(Form.from_text(texts.schema, texts.ui), request.form)
    if parsed.errors:
        found: list[FieldError] = []
        try:
            forms.validate(texts.schema, parsed.data)
        except FormInvalid as exc:
            found = exc.errors
        return _bulk_form(ids, request.form, parsed.place(found), 422)
    try:
        opinion = form_text("opinion") or None
    except InvalidInput as refused:  # the form again, what was typed kept
        flash(localized(refused.message), "error")
        return _bulk_form(ids, request.form, status=422)
    return lambda task_id: tasks.complete(session, task_id=task_id, actor=actor, data=parsed.data, opinion=opinion)


def _plan(action: str, ids: list[int]) -> tuple[Callable[[int], Any], str] | ResponseReturnValue:
    """Return the per-task call and its success message, or a page to show instead (the bulk form)."""
    session, actor = db_session(), current_actor()
    if action == "claim":
        return (lambda task_id: tasks.claim(session, task_id=task_id, actor=actor)), _("已认领")
    if action == "transfer":
        target = request.form.get("to_username", "").strip()[:80]
        if not target:
            raise InvalidInput("请填写转办给谁 (whom to transfer to)", field="to_username")
        note = form_text("note")

        def transfer(task_id: int) -> Any:
            return operations.transfer(session, task_id=task_id, actor=actor, to_username=target, note=note)
        return transfer, _("已转办给 %(name)s", name=_("、").join(people.labels(session, [target])) or target)
    if action == "complete":
        if not request.form.get("confirm"):  # first the shared form, on a page of its own
            target = url_for("inbox.bulk_form", ids=ids, **_filter_args())
            if request.headers.get("HX-Request"):
                return Response(status=204, headers={"HX-Redirect": target})
            return redirect(target)
        if request.form.get("_more"):
            return _bulk_form(ids, request.form)
        each = _complete_each(ids)
        return (each, _("已提交")) if callable(each) else each
    abort(400)


@bp.get("/inbox/bulk/complete")
@login_required
def bulk_form() -> ResponseReturnValue:
    ids = _selected(request.args.getlist("ids"))
    if not ids:
        return redirect(url_for("inbox.index", **_filter_args()))
    return _bulk_form(ids)


@bp.post("/inbox/bulk")
@login_required
def bulk() -> ResponseReturnValue:
    session = db_session()
    ids = _selected(request.form.getlist("ids"))
    if not ids:
        flash(_("请先勾选任务"), "error")
        return redirect(url_for("inbox.index", **_filter_args()))
    plan = _plan(request.form.get("action", ""), ids)
    if not isinstance(plan, tuple) or len(plan) != 2 or not callable(plan[0]):
        return plan  # type: ignore[return-value]
    call, done = plan
    names = lookup.names(session, ids)
    results: list[Result] = []
    for task_id in ids:
        try:
            taskview.get_visible(session, current_actor(), task_id)
        except EngineError as exc:  # someone else's task: not even its name
            results.append(Result(task_id, f"#{task_id}", False, localized(exc.message)))
            continue
        try:
            with session.begin_nested():  # a refusal undoes only this task's changes
                call(task_id)
            results.append(Result(task_id, names.get(task_id, f"#{task_id}"), True, done))
        except EngineError as exc:
            results.append(Result(task_id, names.get(task_id, f"#{task_id}"), False, localized(exc.message)))
    commit()
    ok = sum(r.ok for r in results)
    if not request.headers.get("HX-Request"):  # htmx swaps only the list, where the results table says it all
        flash(_("批量操作完成：成功 %(ok)s 项，失败 %(failed)s 项", ok=ok, failed=len(results) - ok),
              "info" if ok == len(results) else "error")
    return render_template("inbox/index.html", **list_context("index", results=results))


@bp.post("/inbox/cc/<int:cc_id>/read")
@login_required
def cc_read(cc_id: int) -> ResponseReturnValue:
    inbox.mark_cc_read(db_session(), current_actor(), cc_id)
    commit()
    return redirect(url_for("inbox.cc", **_cc_args()))


@bp.post("/inbox/cc/read-all")
@login_required
def cc_read_all() -> ResponseReturnValue:
    count = inbox.mark_cc_read(db_session(), current_actor())
    commit()
    flash(_("已将 %(n)s 条抄送标为已读", n=count), "info")
    return redirect(url_for("inbox.cc", **_cc_args()))


def _cc_args() -> dict[str, str]:
    return inbox.Filter.from_mapping({k: v for k, v in request.args.items() if k in FIELDS["cc"]}).as_query()


@bp.post("/inbox/filters")
@login_required
def save_filter() -> ResponseReturnValue:
    list_name = request.form.get("list", "index")
    if list_name not in inbox.LISTS:
        abort(400)
    flt = inbox.Filter.from_mapping({k: v for k, v in request.form.items() if k in FIELDS[list_name]})
    saved = inbox.save_filter(db_session(), current_actor(), name=request.form.get("name", ""), list_name=list_name,
                              flt=flt)
    commit()
    flash(_("已保存筛选「%(name)s」", name=saved.name), "info")
    return redirect(url_for(f"inbox.{list_name}", **flt.as_query()))


@bp.post("/inbox/filters/<int:filter_id>/delete")
@login_required
def delete_filter(filter_id: int) -> ResponseReturnValue:
    inbox.delete_filter(db_session(), current_actor(), filter_id)
    commit()
    flash(_("已删除筛选"), "info")
    list_name = request.form.get("list", "index")
    return redirect(url_for(f"inbox.{list_name}" if list_name in inbox.LISTS else "inbox.index"))
