"""问题台账: the list of ledger issues one may see, filtered and keyset-paged, and an issue's page."""
from __future__ import annotations

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from engine import clock
from plan import item_leaders
from plan.ledger import views
from plan.ledger.core import SOURCES
from plan.ledger.models import ISSUE_STATES
from plan.projects import views as project_views
from web import links
from web.common import commit, current_actor, db_session
from web.projects import current_reach, may_open

bp = Blueprint("ledger", __name__)

STATUS_NAMES = {"registered": "登记", "dispatched": "已派单", "accepted": "已响应", "in_progress": "办理中",
                "feedback": "已反馈", "confirmed": "已回访确认", "closed": "已销号", "returned": "已退回"}
ACTION_NAMES = {"ledger.register": "登记", "ledger.dispatch": "派单", "ledger.accepted": "响应", "ledger.returned": "退回",
                "ledger.progress": "进展报告", "ledger.extension.grant": "批准延期", "ledger.extension.refuse": "不批准延期",
                "ledger.feedback": "反馈", "ledger.closed": "核验销号", "ledger.reopened": "核验未通过",
                "ledger.confirmed": "回访确认", "ledger.revisit_failed": "回访未通过", "ledger.leader": "指定责任领导"}
SOURCE_NAMES = {"service_visit": "服务企业走访", "project": "项目推进", "manual": "手工登记"}


def _args(query: dict[str, str]) -> dict[str, str]:
    """The list's query arguments for its next page: the filter and the page size, if one was asked for."""
    size = request.args.get("limit", type=int)
    return {**query, "limit": str(size)} if size else query


@bp.get("/ledger")
@login_required
def index() -> ResponseReturnValue:
    session = db_session()
    now = clock.now()
    flt = views.IssueFilter.from_mapping(request.args)
    page = views.issue_page(session, project_views.require_reach(session, current_actor(), current_reach()), flt,
                            after=request.args.get("after") or None,
                            limit=request.args.get("limit", project_views.PAGE_SIZE, type=int) or project_views.PAGE_SIZE,
                            now=now)
    return render_template("ledger/index.html", page=page, flt=flt, args=_args(flt.as_query()), statuses=ISSUE_STATES,
                           sources=SOURCES, units=project_views.choices(session).units, status_names=STATUS_NAMES,
                           source_names=SOURCE_NAMES, now=now)


@bp.get("/ledger/<int:issue_id>")
@login_required
def show(issue_id: int) -> ResponseReturnValue:
    session = db_session()
    actor = current_actor()
    detail = views.issue_detail(session, project_views.require_reach(session, actor, current_reach()), actor, issue_id)
    return render_template("ledger/show.html", d=detail, i=detail.issue, status_names=STATUS_NAMES,
                           action_names=ACTION_NAMES, source_names=SOURCE_NAMES, now=clock.now(), task_url=links.task_url,
                           instance_url=links.instance_url,
                           leader_form=item_leaders.form_for(session, "issue", detail.issue, actor))


@bp.post("/ledger/<int:issue_id>/leader")
@login_required
def leader(issue_id: int) -> ResponseReturnValue:
    """指定责任领导: the issue must be in reach (else 404), then the service checks the right (403) and the choice."""
    session = db_session()
    actor = current_actor()
    views.visible_issue(session, project_views.require_reach(session, actor, current_reach()), issue_id)
    changed = item_leaders.set_leader(session, "issue", issue_id, actor=actor,
                                      username=request.form.get("leader", "")[:100], seen=request.form.get("seen", "")[:64])
    commit()
    flash(_("责任领导已更新") if changed else _("责任领导未改变"))
    return redirect(url_for("ledger.show", issue_id=issue_id) + "#leader")


def _instance_links(instance_id: int) -> list[tuple[str, str, str]]:
    return [("问题", f"{i.code} {i.title}", url_for("ledger.show", issue_id=i.id))
            for i in views.instance_issues(db_session(), current_reach(), instance_id)]


def init_app(app: Flask) -> None:
    """Show 问题台账 in the menu to those who may open it; link an instance's page to its issue."""
    links.guard_nav(app, "ledger.index", may_open)
    links.add_instance_links(app, _instance_links)
