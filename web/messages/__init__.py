"""消息与信号: recent messages, the catches instances wait on, and signal broadcasts, all of them.

Read only but for one act: an admin routes a refused message again (重新投递, `message_worker.retry`; a message the
outbox gave up after its last try, its instance busy every time). Who may open the pages is
`engine.runtime.message_views.check_reader` (process owners, auditors and admins, as the modeller); anyone else is
refused. Publishing stays with the API (`POST /api/messages`, `/api/signals`) and the command line.
"""
from __future__ import annotations

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from engine.errors import InvalidInput
from engine.runtime import message_views as views
from engine.runtime import message_worker
from web import access
from web.common import commit, current_actor, db_session
from web.guards import id_arg

bp = Blueprint("messages", __name__)

# what became of a message, and a signal's deliveries (msgids; translated where shown)
STATES = {
    "delivered": "已投递", "started": "已启动流程", "buffered": "暂存中", "expired": "已过期", "refused": "已拒收",
    "pending": "待路由", "broadcast": "已广播",
}
KINDS = {"message": "消息", "signal": "信号"}
DEFAULT_LIMIT = 50


def state_label(code: str) -> str:
    """Return a message state's label in the reader's language."""
    return _(STATES[code]) if code in STATES else code


def kind_label(code: str) -> str:
    """Return "消息" or "信号" in the reader's language."""
    return _(KINDS[code]) if code in KINDS else code


def _check() -> None:
    views.check_reader(db_session(), current_actor())


def init_app(app: Flask) -> None:
    """Show 消息与信号 in the menu to those `_check` (every view's first step) lets in."""
    access.door(app, "messages.index", _check, "流程管理员、审计督查人员或系统管理员")


def limit_arg() -> int:
    """Return the page size asked for (the engine keeps it within 1–200).

    Raises: InvalidInput (not a whole number)
    """
    raw = (request.args.get("limit") or "").strip()
    if not raw:
        return DEFAULT_LIMIT
    if not raw.isdigit() or len(raw) > 6:
        raise InvalidInput("每页条数须为 1–200 的整数 (limit: a whole number, 1–200)", field="limit")
    return int(raw)


def _args(*keys: str) -> dict[str, str]:
    return {k: request.args[k].strip() for k in keys if (request.args.get(k) or "").strip()}


def _render(template: str, **context: object) -> ResponseReturnValue:
    return render_template(template, state_label=state_label, kind_label=kind_label, **context)


@bp.get("/messages")
@login_required
def index() -> ResponseReturnValue:
    _check()
    session = db_session()
    flt = views.message_filter(request.args.get("name"), request.args.get("state"))
    page = views.recent_messages(session, flt, after=id_arg("after"), limit=limit_arg())
    return _render("messages/index.html", page=page, flt=flt, args=_args("name", "state", "limit"),
                   names=views.message_names(session), states=views.STATES, may_retry=current_actor().is_admin)


@bp.post("/messages/<int:message_id>/retry")
@login_required
def retry(message_id: int) -> ResponseReturnValue:
    """重新投递: an admin routes a refused message again (the outbox job, shortly, as its sender)."""
    _check()
    message_worker.retry(db_session(), message_id, actor=current_actor())
    commit()
    flash(_("消息已重新投递，后台将很快路由它"), "info")
    return redirect(url_for("messages.index", state="pending"))


@bp.get("/messages/waiting")
@login_required
def waiting() -> ResponseReturnValue:
    _check()
    session = db_session()
    kind = views.check_kind(request.args.get("kind"))
    name = views.check_name(request.args.get("name"))
    after, limit = id_arg("after"), limit_arg()
    names = views.waiting_names(session, kind=kind)
    catches = None
    if name:
        catches = views.waiting(session, kind=kind or "message", name=name, after=after, limit=limit)
    return _render("messages/waiting.html", names=names, catches=catches, kind=kind, name=name,
                   args=_args("kind", "name", "limit"))


@bp.get("/messages/signals")
@login_required
def signals() -> ResponseReturnValue:
    _check()
    name = views.check_name(request.args.get("name"))
    page = views.recent_signals(db_session(), name=name, after=id_arg("after"), limit=limit_arg())
    return _render("messages/signals.html", page=page, name=name, args=_args("name", "limit"))
