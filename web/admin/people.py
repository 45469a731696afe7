"""管理 → 编辑人员: an administrator's everyday changes to one person (engine.org.staffing): 调岗 and roles, 管理员,
a unit's head (负责人) or responsible leader (责任领导), a password reset, 启用. Admins only; each form carries `seen`
and `once`: sent twice (a double click, a resend after a slow answer), the second copy is the first's answer, not
refused as "changed since" by the version its own first copy bumped."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from engine import org
from engine.org import staffing
from web import once
from web.admin.blueprint import bp, require_admin
from web.common import db_session


def _seen() -> str:
    return request.form.get("seen", "")[:64]


def _page(user_id: int, *, password: str | None = None, status: int = 200) -> ResponseReturnValue:
    session = db_session()
    shown = staffing.person_of(session, user_id)
    user = shown.user
    response = render_template("admin/person.html", person=shown, units=org.units(session), roles=org.roles(session),
                               held=staffing.held_by_directory(user), password=password)
    # A generated password is shown once: never cached.
    return response, status, {"Cache-Control": "no-store"}


def _back(user_id: int) -> ResponseReturnValue:
    return redirect(url_for("admin.person", user_id=user_id))


@bp.get("/admin/users/<int:user_id>")
@login_required
def person(user_id: int) -> ResponseReturnValue:
    require_admin()
    return _page(user_id)


def _done(user_id: int, said: str, name: str, count: int = 0) -> ResponseReturnValue:
    """Commit the change with its answer kept under the form's `once`, and answer (a twin's, if it committed first)."""
    answer = {"location": url_for("admin.person", user_id=user_id), "said": said, "name": name, "count": count}
    return _told(once.commit_once_answer(**answer) or answer)


def _told(answer: dict[str, object]) -> ResponseReturnValue:
    """The answer a change got, flashed and redirected to: the first copy's, and again to a second copy."""
    name, count, said = answer.get("name", ""), answer.get("count", 0), answer.get("said")
    if said == "memberships":
        flash(_("已保存 %(name)s 的单位、角色和管理员身份", name=name), "info")
    elif said == "mark":
        flash(_("已保存 %(name)s 的负责人和责任领导设置", name=name), "info")
    elif said == "reactivate":
        flash(_("已启用用户 %(name)s（原有登录和 API 令牌不再有效，共吊销 %(count)d 个令牌）", name=name, count=count),
              "info")
    else:
        flash(_("已重置 %(name)s 的密码：其所有登录已退出，吊销 %(count)d 个 API 令牌，下次登录须修改密码",
                name=name, count=count), "info")
        if said == "generated":  # a second copy: the password was shown to the first only
            flash(_("此表单已重置过密码，未再重置；生成的临时密码只在重置时显示一次，如未记下，请重新重置"), "info")
    return redirect(str(answer["location"]))


@bp.post("/admin/users/<int:user_id>/memberships")
@login_required
def person_memberships(user_id: int) -> ResponseReturnValue:
    actor = require_admin()
    if (first := once.first_answer()) is not None:  # a resend: the first's answer, not "changed since" by itself
        return _told(first)
    form = request.form
    done = staffing.set_memberships(db_session(), user_id=user_id, unit_codes=[c for c in form.getlist("units") if c],
                                    role_codes=[c for c in form.getlist("roles") if c],
                                    is_admin=form.get("is_admin") == "1", seen=_seen(), actor=actor)
    return _done(user_id, "memberships", done.user.username)


@bp.post("/admin/users/<int:user_id>/marks")
@login_required
def person_mark(user_id: int) -> ResponseReturnValue:
    actor = require_admin()
    if (first := once.first_answer()) is not None:  # a resend: the first's answer
        return _told(first)
    form = request.form
    done = staffing.set_unit_mark(db_session(), user_id=user_id, unit_code=form.get("unit", ""),
                                  mark=form.get("mark", ""), on=form.get("on") == "1", seen=_seen(), actor=actor)
    return _done(user_id, "mark", done.user.username)


@bp.post("/admin/users/<int:user_id>/password")
@login_required
def person_password(user_id: int) -> ResponseReturnValue:
    actor = require_admin()
    # A resend: the first's answer; the password enters the form's stored print only keyed (web.once)
    if (first := once.first_answer(secret=("password",))) is not None:
        return _told(first)
    chosen = request.form.get("password", "") if request.form.get("generate") != "1" else ""
    done, generated, revoked = staffing.reset_password(db_session(), user_id=user_id, password=chosen, seen=_seen(),
                                                       actor=actor)
    if not generated:
        return _done(user_id, "password", done.user.username, revoked)
    # Kept for a second copy: that this form reset it, never the generated password (shown to this copy only)
    twin = once.commit_once_answer(url_for("admin.person", user_id=user_id), said="generated",
                                   name=done.user.username, count=revoked)
    if twin is not None:  # a twin committed first: this reset was undone, its password is worth nothing
        return _told(twin)
    flash(_("已重置 %(name)s 的密码：其所有登录已退出，吊销 %(count)d 个 API 令牌，下次登录须修改密码",
            name=done.user.username, count=revoked), "info")
    return _page(user_id, password=generated)


@bp.post("/admin/users/<int:user_id>/reactivate")
@login_required
def person_reactivate(user_id: int) -> ResponseReturnValue:
    actor = require_admin()
    if (first := once.first_answer()) is not None:  # a resend: the first's answer
        return _told(first)
    done, revoked = staffing.reactivate(db_session(), user_id=user_id, seen=_seen(), actor=actor)
    return _done(user_id, "reactivate", done.user.username, revoked)
