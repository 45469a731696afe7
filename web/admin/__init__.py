"""管理: users, org units with their leaders and open incidents (admins); API tokens (admins, and each user's own)."""
from __future__ import annotations

from typing import Any

from flask import Flask, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from engine import clock, org
from engine.errors import InvalidInput
from engine.notify import settings
from engine.org import leaving, tokens
from engine.runtime import timeline
from engine.tasks import queries
from web import access, once
from web.admin import people as _people  # noqa: F401  # its routes join the blueprint
from web.admin.blueprint import bp, require_admin
from web.common import commit, current_actor, db_session

MIN_PASSWORD = 8


def init_app(app: Flask) -> None:
    """Show 管理 in the menu to those `require_admin` lets in."""
    access.door(app, "admin.index", require_admin, "系统管理员")


@bp.get("/admin")
@login_required
def index() -> ResponseReturnValue:
    require_admin()
    session = db_session()
    incidents = timeline.open_incidents(session)
    rows = {i.instance_id: queries.instance_row(session, i.instance_id) for i in incidents}
    units = org.units(session)
    return render_template("admin/index.html", users=org.users(session), units=units, roles=org.roles(session),
                           incidents=incidents, incident_rows=rows)


@bp.post("/admin/users")
@login_required
def create_user() -> ResponseReturnValue:
    actor = require_admin()
    if (first := once.first_answer(secret=("password",))) is not None:  # a double click: the user the first made
        flash(_("已创建用户 %(name)s", name=first.get("username", "")), "info")
        return redirect(str(first["location"]))
    form = request.form
    password = form.get("password", "")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"密码至少{MIN_PASSWORD}位 (password: at least {MIN_PASSWORD} characters)", field="password")
    user = org.add_user(db_session(), username=form.get("username", "").strip(),
                        display_name=form.get("display_name", "").strip() or form.get("username", "").strip(),
                        password=password, email=form.get("email", "").strip() or None,
                        unit_codes=[c for c in form.getlist("units") if c],
                        role_codes=[c for c in form.getlist("roles") if c],
                        is_head=form.get("is_head") == "1", is_admin=form.get("is_admin") == "1", actor=actor)
    twin = once.commit_once_answer(url_for("admin.index"), username=user.username)
    flash(_("已创建用户 %(name)s", name=user.username if twin is None else twin.get("username", "")), "info")
    return redirect(url_for("admin.index") if twin is None else str(twin["location"]))


@bp.get("/admin/users/<int:user_id>/notifications")
@login_required
def user_notifications(user_id: int) -> ResponseReturnValue:
    """A person's 通知设置, to read (their webhook masked): what they chose, what was delivered."""
    shown = settings.view_of(db_session(), actor=require_admin(), user_id=user_id)
    return render_template("admin/user_notifications.html", shown=shown, kinds=settings.KINDS)


@bp.post("/admin/users/<int:user_id>/deactivate")
@login_required
def deactivate_user(user_id: int) -> ResponseReturnValue:
    actor = require_admin()
    if (first := once.first_answer()) is not None:  # a resend: what the first did, not "nothing to hand over"
        return _deactivated(first)
    done = leaving.deactivate_user(db_session(), user_id=user_id, actor=actor,
                                   successor=request.form.get("successor", ""), reason="admin: deactivated")
    led = [i for i in done.items if i.duty == "leader"]
    answer: dict[str, str | int] = {
        "location": url_for("admin.index"), "name": done.user.username,
        "successor": done.successor.username if done.successor is not None else "",
        "handed_over": len(done.handed_over), "handled": len(done.items) - len(led), "led": len(led),
        "no_leader": sum(1 for i in led if i.to is None), "units": len(done.units), "cancelled": len(done.cancelled)}
    return _deactivated(once.commit_once_answer(**answer) or answer)


def _deactivated(done: dict[str, Any]) -> ResponseReturnValue:
    """Say what a deactivation did (its counts, as `deactivate_user` kept them for a second copy of the form)."""
    flash(_("已停用用户 %(name)s", name=done["name"]), "info")
    handed_over, handled, led = int(done["handed_over"]), int(done["handled"]), int(done["led"])
    if done["successor"] and (handed_over or handled):
        flash(_("%(count)d 项待办已移交给 %(successor)s", count=handed_over + handled, successor=done["successor"]),
              "info")
    elif handed_over:
        flash(_("%(count)d 项待办已移交：退回候选人或委派人", count=handed_over), "info")
    if not done["successor"] and handled:
        flash(_("%(count)d 项问题或招商线索已移交：交给所在单位负责人，或退回单位", count=handled), "info")
    if led:
        flash(_("%(count)d 项问题、招商线索或项目的责任领导已移交，其中 %(none)d 项暂无责任领导，请重新指定",
                count=led, none=int(done["no_leader"])), "info")
    if done["units"]:
        flash(_("%(count)d 个单位的负责人或责任领导已取消，请重新设置", count=int(done["units"])), "info")
    if done["cancelled"]:
        flash(_("%(count)d 项待审批的延期申请已撤回", count=int(done["cancelled"])), "info")
    if not (handed_over or handled or led or done["units"] or done["cancelled"]):
        flash(_("此人没有需要移交的待办或事项"), "info")
    return redirect(str(done["location"]))


def _tokens_page(new_token: str | None = None, status: int = 200) -> ResponseReturnValue:
    actor = current_actor()
    session = db_session()
    # An admin issues for themself and for users who are not admins (tokens.issue refuses another admin).
    people = [u for u, _units, _roles in org.users(session)
              if u.is_active and (not u.is_admin or u.id == actor.user_id)] if actor.is_admin else []
    response = render_template("admin/tokens.html", tokens=tokens.listing(session, actor), people=people,
                               new_token=new_token, is_admin=actor.is_admin, now=clock.now(),
                               day_choices=tokens.offered_days(), default_days=tokens.default_days())
    # The plaintext is shown once: never cached, never put in the (signed, not encrypted) session cookie.
    return response, status, {"Cache-Control": "no-store"}


@bp.get("/admin/tokens")
@login_required
def token_list() -> ResponseReturnValue:
    return _tokens_page()


@bp.post("/admin/tokens")
@login_required
def issue_token() -> ResponseReturnValue:
    actor = current_actor()
    session = db_session()
    if (first := once.first_answer()) is not None:  # a double click, a refresh: the token the form issued, not another
        return _issued_already(first)
    username = request.form.get("username", "").strip() or actor.username
    owner = tokens.owner(session, username)
    plaintext = tokens.issue(session, owner, request.form.get("name", ""), actor=actor,
                             days=request.form.get("expires_in_days"), scope=request.form.get("scope"))
    # Kept for a second copy: the name and the prefix (listed and audited already), never the secret.
    twin = once.commit_once_answer(url_for("admin.token_list"), name=request.form.get("name", "").strip(),
                                   prefix=plaintext[:12])
    if twin is not None:  # a twin committed first: this token was undone, its secret is worth nothing
        return _issued_already(twin)
    return _tokens_page(new_token=plaintext, status=201)


def _issued_already(first: dict[str, object]) -> ResponseReturnValue:
    flash(_("此表单已签发过令牌「%(name)s」（%(prefix)s…），未再签发；其密钥只在签发时显示一次，如未保存，请吊销后重新创建",
            name=first.get("name", ""), prefix=first.get("prefix", "")), "info")
    return redirect(str(first["location"]))


@bp.post("/admin/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> ResponseReturnValue:
    tokens.revoke(db_session(), token_id=token_id, actor=current_actor())
    commit()
    flash(_("令牌已吊销"), "info")
    return redirect(url_for("admin.token_list"))
