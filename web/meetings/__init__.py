"""项目推进暨评审会议: the meetings' agendas (built by the beat) and the decisions recorded at them."""
from __future__ import annotations

from datetime import date

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from engine.errors import Forbidden, InvalidInput
from plan import meetings, reports
from web import access, once
from web.common import commit, current_actor, db_session

bp = Blueprint("meetings", __name__)


def _require_read() -> None:
    session, actor = db_session(), current_actor()
    if not (meetings.may_record(session, actor) or reports.can_use(session, actor)):
        raise Forbidden(_("无权查看项目推进暨评审会议"))


def init_app(app: Flask) -> None:
    access.door(app, "meetings.index", _require_read,
                "领导、招商专员、台账管理员、审计督查、流程管理员、数据监测人员或系统管理员")


def _day(raw: str) -> date | None:
    text = raw.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(_("日期格式应为 YYYY-MM-DD"), field="due_on") from None


@bp.get("/meetings")
@login_required
def index() -> ResponseReturnValue:
    _require_read()
    return render_template("meetings/index.html", views=meetings.visible_recent(db_session(), current_actor()))


@bp.get("/meetings/<int:meeting_id>")
@login_required
def show(meeting_id: int) -> ResponseReturnValue:
    _require_read()
    session, actor = db_session(), current_actor()
    view = meetings.visible_meeting(session, actor, meeting_id)  # a meeting one may not see at all: 404, as if absent
    may_record = meetings.may_record(session, actor)
    return render_template("meetings/show.html", meeting=view.meeting, items=view.items, hidden=view.hidden,
                           decided=meetings.visible_decisions(session, view),
                           opens=meetings.openable(session, actor, view),
                           forms=meetings.decision_forms(session, view.meeting) if may_record else {},
                           outcomes=meetings.OUTCOME_NAMES, may_record=may_record)


@bp.post("/meetings/<int:meeting_id>/decisions")
@login_required
def decide(meeting_id: int) -> ResponseReturnValue:
    meetings.require_record(db_session(), current_actor())  # by role, before the form is read (its date parsed)
    if (sent := once.replayed()) is not None:  # a double click: recorded by the first, not again
        flash(_("会议决定已记录"))
        return redirect(sent)
    form = request.form
    meetings.record_decision(db_session(), meeting_id=meeting_id, project_code=form.get("project_code", "")[:40],
                             outcome=form.get("outcome", ""), decision=form.get("decision", "")[:5000],
                             unit_code=form.get("unit_code", "").strip()[:80] or None,
                             due_on=_day(form.get("due_on", "")[:20]), actor=current_actor(),
                             seen=form.get("seen", "")[:64])
    location = once.commit_once(url_for("meetings.show", meeting_id=meeting_id))
    flash(_("会议决定已记录"))
    return redirect(location)


@bp.post("/meetings/<int:meeting_id>/close")
@login_required
def close(meeting_id: int) -> ResponseReturnValue:
    meetings.close_meeting(db_session(), meeting_id=meeting_id, actor=current_actor())
    commit()
    flash(_("会议已结束，决定已定稿"))
    return redirect(url_for("meetings.show", meeting_id=meeting_id))
