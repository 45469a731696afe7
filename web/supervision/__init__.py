"""督办: a leader's overdue and escalated work by unit, its actions, the `light` helper and the wait heatmap."""
from __future__ import annotations

from datetime import date, datetime

from flask import Blueprint, Flask, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required
from markupsafe import Markup, escape

from engine import clock
from engine.deadlines import sla
from engine.deadlines.escalation import STEP_NAMES
from engine.errors import Forbidden, InvalidInput, NotFound
from engine.tasks import people
from plan import supervision
from web import access, once
from web.common import commit, current_actor, db_session, form_text

bp = Blueprint("supervision", __name__)
OBJECT_TYPES = ("task", "issue", "lead", "project")


def light(due_at: datetime | None, warn_at: datetime | None = None, now: datetime | None = None) -> Markup:
    """Render a red/yellow/green light for a deadline (nothing without one); use on any list."""
    level = sla.level(due_at, warn_at, now or clock.now())
    if level is None:
        return Markup("")
    title = {"red": _("逾期"), "yellow": _("临近截止"), "green": _("正常")}[level]
    return Markup('<span class="light {0}" role="img" title="{1}" aria-label="{1}"></span>').format(level, escape(title))


def init_app(app: Flask) -> None:
    """Make `light(due_at, warn_at)` a Jinja global (and filter: `task.due_at|light(task.warn_at)`)."""
    app.jinja_env.globals["light"] = light
    app.jinja_env.filters["light"] = light
    access.door(app, "supervision.index", _require_supervisor, "单位负责人或包挂领导（有督办范围）")


def _require_supervisor() -> None:
    if not supervision.is_supervisor(db_session(), current_actor()):
        raise Forbidden(_("督办仅限领导使用"))


def _object(object_type: str) -> str:
    if object_type not in OBJECT_TYPES:
        raise NotFound(f"未知的督办对象 (unknown object): {object_type}")
    return object_type


def _date(field: str, *, required: bool = False) -> date | None:
    value = request.form.get(field, "").strip()
    if not value:
        if required:
            raise InvalidInput(_("请填写日期"), field=field)
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(_("日期格式应为 YYYY-MM-DD"), field=field) from None


def _seen() -> str:
    """The version of what the page showed (`plan.stale`): blank when the form sent none, refused then."""
    return request.form.get("seen", "")[:64]


def _back(object_type: str, object_id: int) -> ResponseReturnValue:
    return redirect(url_for("supervision.index") + f"#{object_type}-{object_id}")


@bp.get("/supervision")
@login_required
def index() -> ResponseReturnValue:
    session, actor = db_session(), current_actor()
    _require_supervisor()
    now = clock.now()
    groups = supervision.overview(session, actor, now=now)
    history = {item.key: supervision.history(session, item.target.object_type, item.target.object_id)
               for group in groups for item in group.items}
    return render_template("supervision/index.html", groups=groups, history=history, now=now,
                           today=now.astimezone(clock.SHANGHAI).date())


@bp.post("/supervision/<object_type>/<int:object_id>/urge")
@login_required
def urge(object_type: str, object_id: int) -> ResponseReturnValue:
    kind = _object(object_type)
    if (first := once.first_answer()) is not None:  # a double click, a resend: the first one urged, not refused 429
        flash(_("已催办 %(n)s 人", n=first.get("told", 0)))
        return redirect(str(first["location"]))
    told = supervision.urge(db_session(), actor=current_actor(), object_type=kind, object_id=object_id,
                            message=form_text("message", supervision.NOTE_LIMIT), due_date=_date("due_date"), seen=_seen())
    mine = url_for("supervision.index") + f"#{object_type}-{object_id}"
    twin = once.commit_once_answer(mine, told=told)
    flash(_("已催办 %(n)s 人", n=told if twin is None else twin.get("told", 0)))
    return redirect(mine if twin is None else str(twin["location"]))


@bp.get("/supervision/<object_type>/<int:object_id>/reassign")
@login_required
def reassign_form(object_type: str, object_id: int) -> ResponseReturnValue:
    """改派: choose the new handler with the people picker, from the people of the actor's scope on this case who belong
    to the object's unit (plan.supervision.reach)."""
    session, actor = db_session(), current_actor()
    _require_supervisor()
    found = supervision.reassignable(session, actor=actor, object_type=_object(object_type), object_id=object_id)
    return render_template("supervision/reassign.html", found=found, target=found.target,
                           people=supervision.reassign_choices(session, actor, found.target,
                                                               people.tree(session, actor, found.instance_id)))


@bp.get("/supervision/<object_type>/<int:object_id>/reassign/people")
@login_required
def reassign_people(object_type: str, object_id: int) -> ResponseReturnValue:
    """改派's live search for the people picker (JSON, as /people/search): only the people the 改派 accepts."""
    session, actor = db_session(), current_actor()
    _require_supervisor()
    q = request.args.get("q", "")
    if len(q) > 200:
        raise InvalidInput("搜索内容过长 (q: at most 200 characters)", field="q")
    found = supervision.reassignable(session, actor=actor, object_type=_object(object_type), object_id=object_id)
    chosen = supervision.reassign_search(session, actor, found.target, q, found.instance_id)
    response = jsonify(people=[{"username": p.username, "name": p.name, "unit": p.unit, "label": p.label}
                               for p in chosen])
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/supervision/<object_type>/<int:object_id>/reassign")
@login_required
def reassign(object_type: str, object_id: int) -> ResponseReturnValue:
    _require_supervisor()
    user = supervision.reassign(db_session(), actor=current_actor(), object_type=_object(object_type),
                                object_id=object_id, to_username=request.form.get("to_username", "").strip(),
                                note=form_text("note", supervision.NOTE_LIMIT), seen=_seen())
    commit()
    flash(_("已改派给 %(name)s", name=user.display_name))
    return _back(object_type, object_id)


@bp.post("/supervision/<object_type>/<int:object_id>/extension")
@login_required
def extension(object_type: str, object_id: int) -> ResponseReturnValue:
    decision = request.form.get("decision", "")
    if decision not in ("grant", "refuse"):
        raise InvalidInput(_("请选择批准或不批准"), field="decision")
    grant = decision == "grant"
    supervision.decide_extension(db_session(), actor=current_actor(), object_type=_object(object_type),
                                 object_id=object_id, grant=grant, due_date=_date("due_date", required=grant),
                                 opinion=form_text("opinion", supervision.NOTE_LIMIT), seen=_seen())
    commit()
    flash(_("已批准延期") if grant else _("已不批准延期"))
    return _back(object_type, object_id)


@bp.post("/supervision/<object_type>/<int:object_id>/escalate")
@login_required
def escalate(object_type: str, object_id: int) -> ResponseReturnValue:
    step = supervision.escalate(db_session(), actor=current_actor(), object_type=_object(object_type),
                                object_id=object_id, note=form_text("note", supervision.NOTE_LIMIT), seen=_seen())
    commit()
    flash(_("已升级至 %(who)s", who=STEP_NAMES.get(step.step, step.step)))
    return _back(object_type, object_id)


@bp.get("/supervision/heat/<process_key>.json")
@login_required
def heat(process_key: str) -> ResponseReturnValue:
    """Waiting time per BPMN element of a process version (latest, or ?version=N), for the diagram's heatmap."""
    session, actor = db_session(), current_actor()
    if not supervision.can_see_heat(session, actor):
        raise Forbidden(_("无权查看"))
    found = supervision.wait_heat(session, process_key, request.args.get("version", type=int))
    stats = found.stats
    return jsonify(process_key=process_key, version=found.version,
                   heat={b: round(h.median, 1) for b, h in stats.items()},
                   stats={b: {"count": h.count, "open": h.open, "mean": round(h.mean, 1), "median": round(h.median, 1),
                              "max": round(h.max, 1)} for b, h in stats.items()})
