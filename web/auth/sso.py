"""统一身份认证登录: OpenID Connect sign-in through the city's identity provider (engine/org/oidc.py).

`/login/sso` starts a login (state, nonce and the PKCE verifier kept in this browser's signed session);
`/login/sso/callback` takes the provider's answer once: the pending login is removed from the session before
anything is checked, so a replayed callback finds none, and the provider itself redeems a code only once.
The same person's first login in two tabs at once makes one account (the loser of the race updates it).
A refusal (wrong state, a token that does not verify, an unknown unit, a deactivated account) shows a page
saying why, logs nobody in and writes nothing.
"""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask import session as cookie_session
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_user
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import NotFound

from engine import audit
from engine.org import oidc, sso_users
from engine.org.actors import actor_of
from web.auth.redirects import safe_next
from web.common import LoginUser, db_session

bp = Blueprint("sso", __name__)
PENDING = "oidc_pending"


@bp.record_once
def _check_settings(_state: BlueprintSetupState) -> None:
    oidc.load_settings()  # a misconfigured SSO stops the app at start, not at the first login


@bp.app_context_processor
def _sso_context() -> dict[str, object]:
    return {"sso_enabled": oidc.load_settings().enabled}


def _settings() -> oidc.Settings:
    settings = oidc.load_settings()
    if not settings.enabled:
        raise NotFound(_("未启用统一身份认证登录"))
    return settings


def _redirect_uri(settings: oidc.Settings) -> str:
    return settings.redirect_url or url_for("sso.callback", _external=True)


def _refused(exc: oidc.SsoError) -> ResponseReturnValue:
    db_session().rollback()
    return render_template("auth/sso_error.html", message=exc.message), exc.http_status, {"Cache-Control": "no-store"}


@bp.get("/login/sso")
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    settings = _settings()
    try:
        url, pending = oidc.begin(settings, redirect_uri=_redirect_uri(settings),
                                  next_path=safe_next(request.args.get("next")))
    except oidc.SsoError as exc:
        return _refused(exc)
    cookie_session[PENDING] = pending.as_dict()
    return redirect(url), 302, {"Cache-Control": "no-store"}


@bp.get("/login/sso/callback")
def callback() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("inbox.index"))
    settings = _settings()
    pending = oidc.Pending.from_dict(cookie_session.pop(PENDING, None))  # used once, whatever happens next
    session = db_session()
    try:
        claims = oidc.finish(settings, pending, args=request.args, redirect_uri=_redirect_uri(settings))
        try:
            user = sso_users.provision(session, settings, claims)
        except IntegrityError:  # the same person's first login in another tab won the race: now it is an update
            session.rollback()
            user = sso_users.provision(session, settings, claims)
    except oidc.SsoError as exc:
        return _refused(exc)
    cookie_session.clear()  # nothing from before the login carries over
    login_user(LoginUser(user), remember=False)
    audit.record(session, actor_of(session, user), "auth.login", stream=f"user:{user.id}", object_type="app_user",
                 object_id=user.id, after={"ip": request.remote_addr, "method": "oidc"})
    session.commit()
    assert pending is not None  # finish() refused a missing one
    return redirect(safe_next(pending.next))
