"""审计: auditors filter the audit trail, read one instance's timeline, export CSV/XLSX and verify the chain.

Auditors (role `auditor`) read everything and change nothing: `_auditors_read_only` refuses every
non-GET request of a user holding that role (admins excepted), in the browser and through the API.
"""
from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, render_template, request, stream_with_context
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required

from engine import clock
from engine.audit import audit_views
from engine.errors import InvalidInput
from engine.tasks import queries
from web import access
from web.common import current_actor, db_session
from web.errors import wants_json
from web.guards import MAX_ID, bearer_token, id_arg
from web.wording import localized

bp = Blueprint("audit", __name__)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# One's own credentials are not the records audited: an auditor changes their password and revokes their own tokens
# (tokens.revoke refuses anyone else's), and chooses the language they read in (the switch, 通知设置's 语言).
ALWAYS_ALLOWED = ("auth.login", "auth.logout", "auth.password", "admin.revoke_token", "static", "set_language",
                  "notifications.save_language")


# --- auditors change nothing --------------------------------------------------------------------------------

@bp.before_app_request
def _auditors_read_only() -> ResponseReturnValue | None:
    if request.method in SAFE_METHODS or request.endpoint in ALWAYS_ALLOWED:
        return None
    # A bearer token counts only under /api, whose `_authenticate` applies the same rule to the token's actor (asked
    # first: a token request never loads a cookie session's user).
    if request.blueprint == "api" and bearer_token():
        return None
    if not current_user.is_authenticated or not audit_views.is_read_only_actor(current_actor()):
        return None
    message = _("审计人员只能查看，不能修改 (auditors read only)")
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json" or request.is_json:
        return jsonify(error="forbidden", message=message), 403
    from web.errors import forbidden_page
    return forbidden_page(message), 403


# --- filters ------------------------------------------------------------------------------------------------

def _when(value: str | None, field: str, *, end: bool) -> datetime | None:
    """Read a date or datetime-local given in Asia/Shanghai; a date's end is the start of the next day."""
    if not value:
        return None
    try:
        if len(value.strip()) == 10:
            day = date.fromisoformat(value.strip())
            moment = datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=clock.SHANGHAI)
        else:
            moment = datetime.fromisoformat(value.strip())
            moment = moment if moment.tzinfo else moment.replace(tzinfo=clock.SHANGHAI)
        return clock.as_utc(moment)
    except ValueError as exc:
        raise InvalidInput(_("日期格式无效") + f": {value[:40]}", field=field) from exc
    except OverflowError as exc:  # the day after 9999-12-31, or UTC before year 1
        raise InvalidInput(_("日期超出范围") + f": {value[:40]}", field=field) from exc


def filter_from(args: Any) -> audit_views.AuditFilter:
    """Read the audit filter from query arguments.

    Raises: InvalidInput
    """
    instance = (args.get("instance") or "").strip().lstrip("#")
    if instance and (not instance.isdigit() or int(instance) > MAX_ID):
        raise InvalidInput(_("实例编号须为数字"), field="instance")
    since, until = _when(args.get("since"), "since", end=False), _when(args.get("until"), "until", end=True)
    if since is not None and until is not None and since >= until:  # would answer nothing, as if nothing happened
        raise InvalidInput(_("起始时间须早于截止时间"), field="since")
    return audit_views.AuditFilter(
        since=since, until=until,
        actor=(args.get("actor") or "").strip() or None, action=(args.get("action") or "").strip() or None,
        process_key=(args.get("process") or "").strip() or None, instance_id=int(instance) if instance else None,
        object_type=(args.get("object_type") or "").strip() or None,
        object_id=(args.get("object_id") or "").strip() or None)


def _args() -> dict[str, str]:
    keys = ("since", "until", "actor", "action", "process", "instance", "object_type", "object_id")
    return {k: request.args[k] for k in keys if request.args.get(k)}


def _auditor() -> None:
    audit_views.require_auditor(db_session(), current_actor())


def init_app(app: Flask) -> None:
    """Show 审计 in the menu to those `_auditor` lets in."""
    access.door(app, "audit.index", _auditor, "审计督查人员或系统管理员")


def pretty(value: Any) -> str:
    """Before/after values as indented JSON (the template escapes it)."""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


# --- pages --------------------------------------------------------------------------------------------------

@bp.get("/audit")
@login_required
def index() -> ResponseReturnValue:
    _auditor()
    session = db_session()
    choices = dict(args=_args(), actions=audit_views.actions(session), object_types=audit_views.object_types(session),
                   processes=queries.process_choices(session), pretty=pretty)
    try:
        flt = filter_from(request.args)
    except InvalidInput as refused:  # the filter comes back as typed, the field named, no records
        if wants_json():
            raise
        return render_template("audit/index.html", page=None, filtered=True, refused=localized(refused.message),
                               refused_field=refused.details.get("field"), **choices), 422
    page = audit_views.events(session, flt, after=id_arg("after"), limit=request.args.get("limit", 50, type=int) or 50)
    return render_template("audit/index.html", page=page, filtered=not flt.is_empty(), **choices)


@bp.get("/audit/events/<int:event_id>")
@login_required
def event(event_id: int) -> ResponseReturnValue:
    _auditor()
    row = audit_views.event(db_session(), event_id)
    return render_template("audit/event.html", row=row, pretty=pretty)


@bp.get("/audit/instances/<int:instance_id>")
@login_required
def timeline(instance_id: int) -> ResponseReturnValue:
    _auditor()
    found = audit_views.timeline(db_session(), instance_id)
    return render_template("audit/timeline.html", timeline=found, pretty=pretty)


@bp.get("/audit/verify")
@login_required
def verify() -> ResponseReturnValue:
    _auditor()
    result = audit_views.verify(db_session())
    return render_template("audit/verify.html", result=result, pretty=pretty)


def _filename(ext: str) -> str:
    return f"jzflow-audit-{clock.now().astimezone(clock.SHANGHAI):%Y%m%d-%H%M%S}.{ext}"


@bp.get("/audit/export.csv")
@login_required
def export_csv() -> ResponseReturnValue:
    _auditor()
    flt = filter_from(request.args)
    session = db_session()
    audit_views.require_exportable(session, flt)
    body = stream_with_context(audit_views.csv_chunks(audit_views.iter_events(session, flt)))
    response = Response(body, mimetype="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f"attachment; filename={_filename('csv')}"
    return response


@bp.get("/audit/export.xlsx")
@login_required
def export_xlsx() -> ResponseReturnValue:
    _auditor()
    flt = filter_from(request.args)
    audit_views.require_exportable(db_session(), flt)
    data = audit_views.xlsx_bytes(audit_views.iter_events(db_session(), flt))
    response = Response(data, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    response.headers["Content-Disposition"] = f"attachment; filename={_filename('xlsx')}"
    return response
