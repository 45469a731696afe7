"""统一身份认证登录: OpenID Connect sign-in through the city's identity provider (engine/org/oidc.py).

`/login/sso` starts a login (state, nonce and the PKCE verifier kept in this browser's signed session);
`/login/sso/callback` takes the provider's answer once: the pending login is removed from the session before
anything is checked, so a replayed callback finds none, and the provider itself redeems a code only once.
The same person's first login in two tabs at once makes one account (the loser of the race updates it).
A refusal (wrong state, a token that does not verify, an unknown unit, a deactivated account, an existing account
not linked to the subject: engine/org/sso_users.py) shows a page saying why, logs nobody in and writes nothing.

统一身份认证退出 (engine/org/oidc_logout.py): the login keeps its ID token sealed in the session (`LOGOUT_HINT`);
/logout asks `logout_target` where to send the browser, and every page lets its forms be redirected to the
provider (CSP form-action), or browsers would stop the logout form's redirect.

统一身份认证后台退出 (engine/org/oidc_backchannel.py): the provider POSTs a logout token to
`/login/sso/backchannel-logout` (server to server: no session, no CSRF token). Every login is recorded with its
subject and the provider's session (`sid`) its ID token names, its record's id kept in the session (`SSO_SESSION`,
checked by the user loader in web/common.py). The answer is 200 (`Cache-Control: no-store`), or 400 with the
JSON `{"error": "invalid_request", "claim": …}` naming what is wrong and nothing changed.
"""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as cookie_session
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_user
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import NotFound

from engine import audit, clock
from engine.errors import Conflict
from engine.org import oidc, oidc_backchannel, oidc_logout, sso_users
from engine.org.actors import actor_of
from web import links
from web.auth.redirects import safe_next
from web.common import SSO_SESSION, LoginUser, db_session
from web.extensions import SECURITY_HEADERS, csrf

bp = Blueprint("sso", __name__)
PENDING = "oidc_pending"
LOGOUT_HINT = "oidc_logout"  # present after an OIDC login: the sealed ID token ("" when too large to keep)
CSP = "Content-Security-Policy"
BACKCHANNEL = "sso.backchannel_logout"
MAX_LOGOUT_BODY = 16 * 1024  # bytes: a logout token is a few hundred, and the provider sends nothing else
NO_STORE = {"Cache-Control": "no-store"}


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
    return settings.redirect_url or links.external_url("sso.callback")


def _refused(exc: oidc.SsoError) -> ResponseReturnValue:
    db_session().rollback()
    if isinstance(exc, oidc.SsoRefused):  # the provider vouched for them: the administrator may have to act (a link)
        current_app.logger.warning("single sign-on refused (%s): %s", exc.details.get("field"), exc.message)
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
        signed_in = oidc.finish(settings, pending, args=request.args, redirect_uri=_redirect_uri(settings))
        try:
            user = sso_users.provision(session, settings, signed_in.claims)
        except (IntegrityError, Conflict):  # the same person's first login in another tab won the race (its account
            session.rollback()  # made while this one waited for the username's lock): now it is an update
            user = sso_users.provision(session, settings, signed_in.claims)
    except oidc.SsoError as exc:
        return _refused(exc)
    cookie_session.clear()  # nothing from before the login carries over
    login_user(LoginUser(user), remember=False)
    sealed = oidc_logout.seal(signed_in.id_token, user_id=user.id, secret=current_app.secret_key or "")
    cookie_session[LOGOUT_HINT] = sealed or ""  # an OIDC login, with its hint when the cookie can hold it
    # Every SSO login, by its subject (and the provider's session, when named): the provider's back-channel logout
    # finds it whatever the account's source
    cookie_session[SSO_SESSION] = oidc_backchannel.record_login(
        session, user_id=user.id, sub=str(signed_in.claims["sub"]), sid=signed_in.claims.get("sid"), now=clock.now(),
        lifetime=current_app.permanent_session_lifetime)
    audit.record(session, actor_of(session, user), "auth.login", stream=f"user:{user.id}", object_type="app_user",
                 object_id=user.id, after={"ip": request.remote_addr, "method": "oidc"})
    session.commit()
    assert pending is not None  # finish() refused a missing one
    return redirect(safe_next(pending.next))


def _logout_refused(claim: str) -> ResponseReturnValue:
    db_session().rollback()
    return jsonify(error="invalid_request", claim=claim), 400, NO_STORE


@bp.url_value_preprocessor
def _bound_logout_body(endpoint: str | None, _values: dict[str, object] | None) -> None:
    """Bound a back-channel logout's body before anything reads it (the input guards read every form, up to the
    app's 25 MB): this runs before the app's before_request functions."""
    if endpoint != BACKCHANNEL or not oidc.load_settings().enabled:  # (off: the view's 404)
        return
    if request.content_length is not None and request.content_length > MAX_LOGOUT_BODY:
        abort(make_response(_logout_refused("logout_token")))
    request.max_content_length = MAX_LOGOUT_BODY  # a body sent without a length stops there too


@bp.post("/login/sso/backchannel-logout")
def backchannel_logout() -> ResponseReturnValue:
    """End the sessions the provider's logout token names (a form field `logout_token`, nothing else)."""
    settings = _settings()
    tokens = request.form.getlist("logout_token") if request.mimetype == "application/x-www-form-urlencoded" else []
    if len(tokens) != 1:
        return _logout_refused("logout_token")
    session = db_session()
    try:
        oidc_backchannel.log_out(session, settings, tokens[0], now=clock.now())
    except oidc_backchannel.LogoutRefused as exc:
        return _logout_refused(exc.claim)
    except oidc.SsoError:  # the provider's keys could not be fetched: nothing could be checked, nothing ended
        db_session().rollback()
        return jsonify(error="temporarily_unavailable"), 400, NO_STORE
    session.commit()
    return "", 200, NO_STORE


csrf.exempt(backchannel_logout)  # the provider calls it server to server: no browser, no session; the token is proof


def _post_logout_uri(settings: oidc.Settings) -> str:
    """The login page, absolute, on the public address the callback is registered under (never a request's)."""
    login_path = url_for("auth.login")
    if not settings.redirect_url:
        return links.external_url("auth.login")
    parts = urlsplit(settings.redirect_url)
    callback = url_for("sso.callback")
    path = parts.path[:-len(callback)] + login_path if parts.path.endswith(callback) else login_path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def logout_target(user_id: int) -> str | None:
    """Return where single sign-out sends the browser after an OIDC login, or None for a local logout.

    Only the session's own sealed ID token is ever a hint, and only the configured login page the way back:
    nothing of the request is used. Raises: SsoError (the provider cannot be asked)
    """
    if LOGOUT_HINT not in cookie_session:
        return None
    settings = oidc.load_settings()
    if not settings.enabled:
        return None
    hint = oidc_logout.unseal(cookie_session[LOGOUT_HINT], user_id=user_id, secret=current_app.secret_key or "")
    return oidc_logout.end_session_url(settings, id_token_hint=hint, post_logout_redirect_uri=_post_logout_uri(settings))


@bp.after_app_request
def _form_action(response: Response) -> Response:
    """Let the logout form be redirected to the provider: browsers apply form-action to a form's redirects."""
    if response.mimetype != "text/html":  # only pages carry the logout form (the API and files stay as they are)
        return response
    origins = oidc_logout.form_origins(oidc.load_settings())
    policy = response.headers.get(CSP, SECURITY_HEADERS[CSP])
    if origins and "form-action 'self';" in policy:
        response.headers[CSP] = policy.replace("form-action 'self';", f"form-action 'self' {' '.join(origins)};", 1)
    return response
