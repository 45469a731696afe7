"""Log in and out with username and password (hashed), rate-limited; safe redirects only."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash

from engine.models import User
from engine.services import audit
from engine.services.actors import actor_of
from web import limiter
from web.common import LoginUser, db_session

bp = Blueprint("auth", __name__)
# A hash to compare against when the user does not exist, so timing does not tell usernames apart.
_DUMMY_HASH = "scrypt:32768:8:1$dummydummydummy$" + "0" * 128


def _safe_next(target: str | None) -> str:
    """Return a same-site relative path, never an absolute URL (no open redirect)."""
    if not target:
        return url_for("inbox.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ch < " " or ch == "\x7f" for ch in target):  # CR/LF would split the Location header
        return url_for("inbox.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("10 per minute; 50 per hour", methods=["POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        session = db_session()
        user = session.scalar(select(User).where(User.username == username)) if username else None
        ok = check_password_hash(user.password_hash if user and user.password_hash else _DUMMY_HASH, password)
        if user is not None and user.is_active and user.password_hash and ok:
            login_user(LoginUser(user), remember=False)
            audit.record(session, actor_of(session, user), "auth.login", stream=f"user:{user.id}",
                         object_type="app_user", object_id=user.id, after={"ip": request.remote_addr})
            session.commit()
            return redirect(_safe_next(request.form.get("next") or request.args.get("next")))
        error = _("用户名或密码错误")
    return render_template("auth/login.html", error=error, username=username,
                           next=request.args.get("next", "")), (401 if error else 200)


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    logout_user()
    flash(_("已退出登录"), "info")
    return redirect(url_for("auth.login"))
