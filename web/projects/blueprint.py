"""项目库: the list of projects one may see, filtered and keyset-paged, and a project's page."""
from __future__ import annotations

from flask import Blueprint, Flask, g, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from engine import clock
from plan.dashboard import CATEGORY_NAMES, STAGE_NAMES
from plan.projects import approvals, entry, needs, page, views
from plan.projects.core import today
from plan.projects.models import STAGES
from web import links
from web.common import current_actor, db_session

bp = Blueprint("projects", __name__)


def current_reach() -> views.Reach:
    """Return what the logged-in user may see of projects and issues (cached for the request)."""
    if "reach" not in g:
        g.reach = views.reach_of(db_session(), current_actor())
    found: views.Reach = g.reach
    return found


def _reach() -> views.Reach:
    return views.require_reach(db_session(), current_actor(), current_reach())


def _args(query: dict[str, str]) -> dict[str, str]:
    """The list's query arguments for its next page: the filter and the page size, if one was asked for."""
    size = request.args.get("limit", type=int)
    return {**query, "limit": str(size)} if size else query


@bp.get("/projects")
@login_required
def index() -> ResponseReturnValue:
    session = db_session()
    reach = _reach()
    flt = views.ProjectFilter.from_mapping(request.args)
    page = views.project_page(session, reach, flt, after=request.args.get("after") or None,
                              limit=request.args.get("limit", views.PAGE_SIZE, type=int) or views.PAGE_SIZE,
                              now=clock.now())
    return render_template("projects/index.html", page=page, flt=flt, args=_args(flt.as_query()),
                           choices=views.choices(session), stages=STAGES, stage_names=STAGE_NAMES, now=clock.now(),
                           may_enter=entry.may_enter(session, current_actor()))


@bp.get("/projects/<int:project_id>")
@login_required
def show(project_id: int) -> ResponseReturnValue:
    session = db_session()
    detail = views.project_detail(session, _reach(), project_id, now=clock.now())
    work = page.project_work(session, detail.project, current_actor())
    return render_template("projects/show.html", p=detail, pr=detail.project, stage_names=STAGE_NAMES,
                           category_names=CATEGORY_NAMES, now=clock.now(), task_url=links.task_url,
                           instance_url=links.instance_url, w=work, need_kinds=needs.NEED_KINDS,
                           planned_names=entry.PLANNED_NAMES, approval_stages=approvals.STAGES, today=today())


def may_open() -> bool:
    """Tell whether the logged-in user sees any project or issue (项目库 and 问题台账 in the menu)."""
    return current_user.is_authenticated and current_reach().any


def _instance_links(instance_id: int) -> list[tuple[str, str, str]]:
    return [("项目", f"{p.code} {p.name}", url_for("projects.show", project_id=p.id))
            for p in views.instance_projects(db_session(), current_reach(), instance_id)]


def init_app(app: Flask) -> None:
    """Show 项目库 in the menu to those who may open it; link an instance's page to its projects."""
    links.guard_nav(app, "projects.index", may_open)
    links.add_instance_links(app, _instance_links)
