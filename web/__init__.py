"""Flask app factory: configuration, extensions, blueprints; errors translated once."""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy.exc import DBAPIError
from werkzeug.middleware.proxy_fix import ProxyFix

from engine import config
from engine.db import make_engine, make_sessionmaker
from engine.notify import language as notify_language
from web import auth, common, errors, features, guards, i18n, language, limits_memory, limits_redis, once, ops, wording
from web.extensions import SECURITY_HEADERS, babel, csrf, limiter, login_manager
from web.sessions import CookieSessions

LANGUAGES = language.LOCALES
log = logging.getLogger(__name__)


def _locale() -> str:
    """The logged-in person's saved language, else the browser's cookie, else Chinese (web/language.py)."""
    saved = language.saved()
    if saved is not None:
        return saved
    chosen = request.cookies.get(language.COOKIE)
    return chosen if chosen in LANGUAGES else "zh"


def _timezone() -> str:
    return "Asia/Shanghai"


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create the jzflow web application."""
    settings = config.load()
    app = Flask(__name__, instance_path=str(settings.instance_dir), instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key or None,  # resolved below, once the database is known
        DATABASE_URL=settings.database_url,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("JZFLOW_SECURE_COOKIES", "0") == "1",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=8 * 3600,
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        BABEL_DEFAULT_LOCALE="zh",
        BABEL_DEFAULT_TIMEZONE="Asia/Shanghai",
        RATELIMIT_STORAGE_URI=limits_redis.uri_for(settings.redis_url) if settings.redis_url else limits_memory.URI,
        RATELIMIT_HEADERS_ENABLED=True,
        # Redis down must not take logins down: fall back to per-process memory and carry on.
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        MAX_CONTENT_LENGTH=25 * 1024 * 1024,
    )
    if os.environ.get("JZFLOW_API_RATE_LIMIT"):  # README's setting: the API's limit per token (web/api/blueprint.py)
        app.config["JZFLOW_API_RATE_LIMIT"] = os.environ["JZFLOW_API_RATE_LIMIT"].strip()
    if test_config:
        app.config.from_mapping(test_config)
    _secure(app, settings)
    if not settings.public_url and not str(app.config["DATABASE_URL"]).startswith("sqlite"):
        log.warning("JZFLOW_PUBLIC_URL is unset: links that leave the site (e-mails, the single sign-on callback) "
                    "follow the Host header a request names, and issued documents carry no verification link; set it "
                    "to the address users reach the site at")
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["jzflow.engine"] = engine
    app.extensions["jzflow.sessionmaker"] = make_sessionmaker(engine)

    app.register_blueprint(ops.bp)  # /healthz /readyz /metrics; request ids and latency on every request
    ops.init_app(app)
    guards.init_app(app)  # before the blueprints: their <int:…> rules take the bounded converter
    i18n.compile_catalogs()
    app.session_interface = CookieSessions()  # the signed cookie's serializer built once per key
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None  # type: ignore[assignment]
    csrf.init_app(app)
    babel.init_app(app, locale_selector=_locale, timezone_selector=_timezone,
                   default_translation_directories=str(i18n.BUILD_DIR))

    @app.before_request  # before the limiter's own check, registered by init_app just below
    def _new_limiter_request() -> None:
        if not (limiter.enabled and limiter.initialized):  # limits off (RATELIMIT_ENABLED): the limiter has no store
            return
        storage = limiter.storage
        if isinstance(storage, limits_redis.OneTripRedisStorage):
            storage.new_request()

    limiter.init_app(app)

    app.register_blueprint(auth.bp)
    app.register_blueprint(auth.sso_bp)  # 统一身份认证登录 (OpenID Connect), 404 while JZFLOW_OIDC_ISSUER is unset
    common.init_app(app)
    once.init_app(app)  # create forms carry a key: sent twice, they make one row
    features.register(app)
    _vocabulary(app)

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            try:
                session.rollback()  # anything not committed by the view is discarded
            except DBAPIError:  # the connection died after the answer was made: the pool drops it
                pass
            session.close()

    errors.init_app(app)
    for endpoint, view in list(app.view_functions.items()):  # a connection lost before commit: run it again
        app.view_functions[endpoint] = errors.retrying(view)

    @app.after_request
    def _headers(response: Any) -> Any:
        # One pass over the answer's headers (setdefault per name scanned them and raised a KeyError for each one absent)
        present = {name.lower() for name, _value in response.headers}
        response.headers.extend([(name, value) for name, value in SECURITY_HEADERS.items()
                                 if name.lower() not in present])
        if app.config["SESSION_COOKIE_SECURE"]:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        # A shared or back-button cache never shows a user's page or answer. An API token request is authenticated
        # by its token (g.api_auth): asking flask-login would load a cookie session's user it never uses.
        if request.endpoint != "static" and "Cache-Control" not in response.headers and \
                (g.get("api_auth") or _authenticated()):
            response.headers["Cache-Control"] = "no-store"
        # The browser's cookie follows a person's saved language while they are logged in (the login answer included),
        # so the login page after a logout stays in it.
        # (not for an API token's request: asking flask-login would load a cookie session's user it never uses)
        saved = language.saved() if request.endpoint != "static" and not g.get("api_auth") and _authenticated() \
            else None
        if saved is not None and request.cookies.get(language.COOKIE) != saved:
            language.remember(response, saved)
        return response

    @app.route("/lang/<code>", methods=["GET", "POST"])
    def set_language(code: str) -> ResponseReturnValue:
        """The switch: this browser's cookie; by POST (CSRF) while logged in, the person's saved language too."""
        if request.method == "POST" and _authenticated():
            notify_language.choose(common.db_session(), actor=common.current_actor(),
                                   language=language.person_language(code[:20]))  # InvalidInput names the field
            common.commit()
        target = request.referrer if request.referrer and request.referrer.startswith(request.host_url) else "/"
        response = redirect(target)
        if code in LANGUAGES:
            language.remember(response, code)
        return response

    icon = (Path(__file__).parent / "static" / "favicon.ico").read_bytes()

    @app.get("/favicon.ico")
    def favicon() -> ResponseReturnValue:
        return Response(icon, mimetype="image/vnd.microsoft.icon", headers={"Cache-Control": "public, max-age=604800"})

    @app.get("/")
    def index() -> ResponseReturnValue:
        return redirect(url_for("inbox.index"))

    return app


def _vocabulary(app: Flask) -> None:
    """Let every template name codes in the reader's language: actions, object types, statuses, one-language messages."""
    from web.instances import labels
    app.jinja_env.filters["action_label"] = labels.action
    app.jinja_env.filters["object_label"] = labels.object_type
    app.jinja_env.filters["status_label"] = labels.status
    app.jinja_env.filters["extension_label"] = labels.extension
    app.jinja_env.filters["one_language"] = wording.localized
    app.jinja_env.filters["person"] = wording.person
    app.jinja_env.filters["plan_word"] = wording.plan_word
    app.jinja_env.filters["listed"] = wording.listed


def _secure(app: Flask, settings: config.Settings) -> None:
    """Refuse the development secret outside the embedded default; trust only the configured proxies.

    Raises: config.InsecureConfiguration
    """
    key = app.config.get("SECRET_KEY")
    if not key or key == config.DEV_SECRET_KEY:
        app.config["SECRET_KEY"] = config.secret_key(
            config.Settings(instance_dir=settings.instance_dir, secret_key=key or ""), app.config["DATABASE_URL"])
    if settings.trusted_proxies > 0:  # JZFLOW_TRUSTED_PROXIES: how many reverse proxies stand in front of us
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]


def _authenticated() -> bool:
    return bool(getattr(current_user, "is_authenticated", False))
