"""The four lists. Filters and the page cursor are GET arguments, so every view is a link to keep or share."""
from __future__ import annotations

from typing import Any

from flask import render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l
from flask_login import login_required

from engine import clock
from engine.tasks import inbox, people, sendback
from web.common import current_actor, db_session
from web.inbox.blueprint import bp

TITLES = {"index": _l("待办"), "done": _l("已办"), "started": _l("我发起的"), "cc": _l("抄送我的")}
PAGES = {"index": inbox.todo_page, "done": inbox.done_page, "started": inbox.started_page, "cc": inbox.cc_page}
# Which filters each list offers (the others would not mean anything there).
FIELDS = {"index": ("process", "stage", "due", "q"), "done": ("process", "stage", "q"),
          "started": ("process", "stage", "due", "q"), "cc": ("process", "q", "unread")}
INSTANCE_STATUS = {"running": _l("运行中"), "suspended": _l("已挂起"), "incident": _l("故障"),
                   "completed": _l("已结束"), "terminated": _l("已终止")}


def list_context(list_name: str, **extra: Any) -> dict[str, Any]:
    """Query one list page for the current request's filter and cursor."""
    session, actor = db_session(), current_actor()
    flt = inbox.Filter.from_mapping({k: v for k, v in request.args.items() if k in FIELDS[list_name]})
    after = request.args.get("after") or None
    page = PAGES[list_name](session, actor, flt, after=after)
    processes = inbox.processes(session)
    saved = []
    for row in inbox.saved_filters(session, actor):
        query = row.query if isinstance(row.query, dict) else {}
        target = query.get("list") if query.get("list") in FIELDS else "index"
        args = inbox.Filter.from_mapping({k: v for k, v in query.items() if k in FIELDS[target]}).as_query()
        saved.append((row, url_for(f"inbox.{target}", **args)))
    return {"list_name": list_name, "flt": flt, "page": page, "after": after, "titles": TITLES,
            "fields": FIELDS[list_name], "counts": inbox.counts(session, actor), "processes": processes,
            "process_names": dict(processes), "saved": saved, "now": clock.now(),
            "cap": inbox.COUNT_CAP, "actor": actor, "instance_status": INSTANCE_STATUS, **extra}


@bp.get("/inbox")
@login_required
def index() -> ResponseReturnValue:
    context = list_context("index")
    groups = people.tree(db_session(), current_actor()) if context["page"].rows else []  # whom 批量转办 may reach
    return render_template("inbox/index.html", people=groups, **context)


@bp.get("/inbox/done")
@login_required
def done() -> ResponseReturnValue:
    context = list_context("done")
    session, actor = db_session(), current_actor()
    mine = [row.task for row in context["page"].rows if row.task.kind == "bpmn" and row.instance_status == "running"]
    return render_template("inbox/done.html", withdrawable=sendback.withdrawable(session, actor, mine), **context)


@bp.get("/inbox/started")
@login_required
def started() -> ResponseReturnValue:
    return render_template("inbox/started.html", **list_context("started"))


@bp.get("/inbox/cc")
@login_required
def cc() -> ResponseReturnValue:
    return render_template("inbox/cc.html", **list_context("cc"))
