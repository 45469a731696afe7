"""招商线索: a lead's page (its fields, instance, record) and 指定责任领导 on it."""
from __future__ import annotations

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from plan import item_leaders
from plan.leads import views
from web import links
from web.common import commit, current_actor, db_session
from web.projects import current_reach

bp = Blueprint("leads", __name__)

STATUS_NAMES = {"registered": "登记", "dispatched": "已派单", "accepted": "已接收", "returned": "已退回",
                "contacting": "对接中", "project": "已转项目", "dropped": "未形成项目"}
SOURCE_NAMES = {"platform": "监测平台推送", "visit": "外出招商", "referral": "以商招商", "other": "其他"}


@bp.get("/leads/<int:lead_id>")
@login_required
def show(lead_id: int) -> ResponseReturnValue:
    session = db_session()
    detail = views.lead_detail(session, current_reach(), lead_id)
    return render_template("leads/show.html", d=detail, x=detail.lead, status_names=STATUS_NAMES,
                           source_names=SOURCE_NAMES, task_url=links.task_url, instance_url=links.instance_url,
                           leader_form=item_leaders.form_for(session, "lead", detail.lead, current_actor()))


@bp.post("/leads/<int:lead_id>/leader")
@login_required
def leader(lead_id: int) -> ResponseReturnValue:
    """指定责任领导: the lead must be in reach (else 404), then the service checks the right (403) and the choice."""
    session = db_session()
    views.visible_lead(session, current_reach(), lead_id)
    changed = item_leaders.set_leader(session, "lead", lead_id, actor=current_actor(),
                                      username=request.form.get("leader", "")[:100], seen=request.form.get("seen", "")[:64])
    commit()
    flash(_("责任领导已更新") if changed else _("责任领导未改变"))
    return redirect(url_for("leads.show", lead_id=lead_id) + "#leader")


def _instance_links(instance_id: int) -> list[tuple[str, str, str]]:
    return [("招商线索", f"{x.code} {x.title}", url_for("leads.show", lead_id=x.id))
            for x in views.instance_leads(db_session(), current_reach(), instance_id)]


def init_app(app: Flask) -> None:
    """Link an instance's page to its lead."""
    links.add_instance_links(app, _instance_links)
