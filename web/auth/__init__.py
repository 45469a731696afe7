"""Log in and out with username and password (hashed); safe redirects only.

Failed logins are limited per account and per client address (engine/org/login_guard.py), never
successful ones. Logout and a password change end every session of the user server-side (the session
epoch, web/common.py).
"""
from __future__ import annotations

import logging

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask import session as cookie_session
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.security import check_password_hash

from engine import audit, clock, config, org
from engine.errors import Forbidden, InvalidInput, RateLimited
from engine.org import directory, login_guard, oidc
from engine.org.actors import SYSTEM, actor_of
from web.auth.redirects import safe_next
from web.auth.sso import LOGOUT_HINT, logout_target
from web.auth.sso import bp as sso_bp
from web.common import SSO_SESSION, LoginUser, commit, current_actor, db_session
from web.guards import bearer_token

bp = Blueprint("auth", __name__)
# Failed and refused logins, one line each (the name as sent, cut and printable; the client's address). The audit
# trail records successes, and of the failures only the one that locks an account or an address (auth.lockout, once
# per key and window, for any name): every guess there would fill its chains, and a write for existing accounts alone
# would tell usernames apart by its time.
log = logging.getLogger("jzflow.auth")
__all__ = ["bp", "safe_next", "sso_bp"]
# A hash to compare against when the user does not exist, so timing does not tell usernames apart.
_DUMMY_HASH = "scrypt:32768:8:1$dummydummydummy$" + "0" * 128


_safe_next = safe_next
# Open to a person whose password an administrator reset (must_change_password) until they change it.
_WHILE_TEMPORARY = {"auth.password", "auth.logout", "auth.login", "static", "set_language"}


@bp.before_app_request
def _temporary_password() -> ResponseReturnValue | None:
    """A person logged in with the temporary password an administrator set goes to 修改密码 first, and nowhere else
    (a form they post elsewhere is refused: 403). A single sign-on login of theirs is left alone."""
    endpoint = request.endpoint or ""
    if endpoint in _WHILE_TEMPORARY or endpoint.startswith("ops."):  # probes: no login is loaded for them
        return None
    # An API request with a token is its token's alone (web/api/blueprint.py: no cookie user acts in it). Elsewhere an
    # Authorization header authenticates nothing and the cookie's person acts: it takes nobody past the change.
    if request.blueprint == "api" and bearer_token() is not None:
        return None
    if not current_user.is_authenticated or not current_user.user.must_change_password:
        return None
    if SSO_SESSION in cookie_session:  # a single sign-on login: not one with the temporary password
        return None
    if request.method in ("GET", "HEAD"):
        flash(_("管理员已为您重置密码，请先修改密码"), "info")
        return redirect(url_for("auth.password"))
    raise Forbidden("请先修改管理员为您设置的临时密码 (change the temporary password first)")


def _limits() -> login_guard.Limits:
    settings = config.load()
    return login_guard.Limits(per_account=settings.login_account_failures,
                              per_address=settings.login_address_failures,
                              window_seconds=settings.login_window_seconds)


def _failed(username: str, address: str | None, outcome: str, locking: tuple[str, ...] = ()) -> None:
    """Log a failed or refused try; a failure that locks the account or the address is also audited, once per
    key and window (an auditor sees the lock, not every guess) and for a name that exists or not alike."""
    shown = "".join(c if c.isprintable() else "\ufffd" for c in username[:80])
    log.warning("登录失败 (login failed): %s user=%r address=%s", outcome, shown, address,
                extra={"username": shown, "address": address, "outcome": outcome})  # the fields again, for JSON logs
    if locking:
        session, minutes = db_session(), max(1, config.load().login_window_seconds // 60)
        for key in locking:
            audit.record(session, SYSTEM, "auth.lockout", stream="auth:lockout", object_type="login_key",
                         object_id=key, after={"username": shown, "ip": address, "minutes": minutes})
        session.commit()


def _too_many(username: str, wait: int) -> ResponseReturnValue:
    minutes = max(1, (wait + 59) // 60)
    error = _("登录失败次数过多，请%(minutes)s分钟后再试", minutes=minutes)
    return (render_template("auth/login.html", error=error, username=username, next=request.args.get("next", "")),
            429, {"Retry-After": str(wait)})


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "").strip()[:80]
        password = request.form.get("password", "")
        session = db_session()
        limits, now, address = _limits(), clock.now(), request.remote_addr
        # Counted, and committed, before the password is looked at: tries sent together see each other.
        wait, locking = login_guard.attempt(session, username=username, address=address, now=now, limits=limits)
        session.commit()
        if wait:  # refused before the password is even looked at: guessing on stops here
            _failed(username, address, "refused")
            return _too_many(username, wait)
        user = directory.by_username(session, username)
        ok = check_password_hash(user.password_hash if user and user.password_hash else _DUMMY_HASH, password)
        # With single sign-on on, a password opens only the accounts kept for emergencies (JZFLOW_OIDC_LOCAL_LOGINS).
        ok = ok and oidc.load_settings().allows_password(username)
        if user is not None and user.is_active and user.password_hash and ok:
            login_guard.succeeded(session, username=username, address=address)
            cookie_session.clear()  # nothing from before the login carries over
            login_user(LoginUser(user), remember=False)
            audit.record(session, actor_of(session, user), "auth.login", stream=f"user:{user.id}",
                         object_type="app_user", object_id=user.id, after={"ip": address})
            session.commit()
            return redirect(_safe_next(request.form.get("next") or request.args.get("next")))
        error = _("用户名或密码错误")  # the failure was counted above
        _failed(username, address, "failed", locking)
        if oidc.load_settings().enabled and not oidc.load_settings().allows_password(username):
            error = _("本系统已启用统一身份认证，请点击“统一身份认证登录”")
    return render_template("auth/login.html", error=error, username=username,
                           next=request.args.get("next", "")), (401 if error else 200)


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    # After an OIDC login the provider's session ends too (single sign-out); asked before this session is gone.
    provider_down = False
    try:
        provider = logout_target(current_user.user.id)
    except oidc.SsoError:
        provider, provider_down = None, True
    # Server-side: the user's session epoch moves on, so a copy of this cookie (or any other) is dead too.
    org.log_out(db_session(), actor=current_actor(), address=request.remote_addr, single_sign_out=bool(provider))
    commit()
    logout_user()
    cookie_session.clear()
    flash(_("已退出登录"), "info")
    if provider_down:
        flash(_("已退出本系统，但无法连接统一身份认证服务：统一身份认证的登录可能仍然有效，请关闭浏览器"), "error")
    if provider:
        return redirect(provider, 303)
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password() -> ResponseReturnValue:
    if request.method == "POST":
        form = request.form
        if form.get("new_password", "") != form.get("confirm_password", ""):
            raise InvalidInput("两次输入的新密码不一致 (new password: the two entries differ)", field="confirm_password")
        session, limits, now = db_session(), _limits(), clock.now()
        username, address = current_user.user.username, request.remote_addr
        # A current password tried is a login tried: a session left open must not let anyone guess on without end.
        wait, locking = login_guard.attempt(session, username=username, address=address, now=now, limits=limits)
        session.commit()
        if wait:
            raise RateLimited(f"密码错误次数过多，请{max(1, (wait + 59) // 60)}分钟后再试 (current password: too many "
                              f"wrong attempts, try again in {wait} s)", field="current_password")
        try:
            user = org.change_password(session, user_id=current_user.user.id, current=form.get("current_password", ""),
                                       new=form.get("new_password", ""), actor=current_actor())
        except InvalidInput as exc:
            session.rollback()
            if exc.details.get("field") != "current_password":  # the current password was right: no failure
                login_guard.succeeded(session, username=username, address=address)
                session.commit()
            else:
                _failed(username, address, "failed", locking)
            raise
        login_guard.succeeded(session, username=username, address=address)
        commit()
        # An SSO login stays one: the provider's back-channel logout still ends it, /logout still signs out there.
        kept = {key: cookie_session[key] for key in (SSO_SESSION, LOGOUT_HINT) if key in cookie_session}
        cookie_session.clear()
        cookie_session.update(kept)
        login_user(LoginUser(user), remember=False)  # this session goes on in the new epoch; all others ended
        flash(_("密码已修改，其他设备上的登录已退出"), "info")
        return redirect(url_for("inbox.index"))
    return render_template("auth/password.html"), 200, {"Cache-Control": "no-store"}

