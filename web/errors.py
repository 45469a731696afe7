"""Errors translated once: RFC 9457 problem details under /api, Chinese HTML pages elsewhere.

Every error a client can cause is a 4xx with a message; a database connection lost mid-request is a
503 with `Retry-After` (the client retries, with its `Idempotency-Key` on API POSTs); anything else is
a 500 that says so in the caller's format, never Werkzeug's English page or an HTML page under /api.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, flash, g, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError, DBAPIError
from werkzeug.exceptions import HTTPException

from engine.db import COMMIT_STARTED, is_disconnect
from engine.errors import EngineError
from web import access, language
from web.wording import localized, worded

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
RETRY_AFTER_SECONDS = 2

# (stable code, Chinese title, English title) per status; the page and the problem's `title`.
STATUS_TEXT: dict[int, tuple[str, str, str]] = {
    400: ("bad_request", "请求无效", "Bad request"),
    401: ("unauthorized", "需要登录", "Unauthorized"),
    403: ("forbidden", "无权访问", "Forbidden"),
    404: ("not_found", "页面或对象不存在", "Not found"),
    405: ("method_not_allowed", "不支持此请求方法", "Method not allowed"),
    409: ("conflict", "操作冲突，请刷新后重试", "Conflict"),
    413: ("too_large", "提交的内容过大", "Content too large"),
    415: ("unsupported_media_type", "不支持的内容类型", "Unsupported media type"),
    422: ("invalid_input", "输入数据无效", "Unprocessable content"),
    429: ("rate_limited", "请求过于频繁，请稍后再试", "Too many requests"),
    500: ("internal_error", "服务器内部错误，已记录，请稍后再试", "Internal server error"),
    503: ("unavailable", "服务暂时不可用，请稍后重试", "Service unavailable"),
}


def wants_json() -> bool:
    """Tell whether the caller gets JSON: everything under /api, and clients that ask for it."""
    return request.path.startswith("/api/") or request.path == "/api" or \
        request.accept_mimetypes.best == "application/json"


def problem(status: int, code: str | None = None, message: str | None = None, **details: Any) -> Response:
    """Return an RFC 9457 problem (`type`, `title`, `status`, `detail`) that keeps jzflow's `error`/`message`."""
    default_code, zh, en = STATUS_TEXT.get(status, ("http_error", "请求失败", "Error"))
    text = message or f"{zh} ({en})"
    if g.get("api_auth") and language.saved() is not None:  # an API caller who chose a language: its half only
        text, details = worded(text, details)
    body = {"type": "about:blank", "title": en, "status": status, "detail": text, "instance": request.path,
            "error": code or default_code, "message": text, **details}
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM
    return response


def _page(status: int, message: str | None = None) -> tuple[str, int]:
    _code, zh, _en = STATUS_TEXT.get(status, ("http_error", "请求失败", "Error"))
    if status == 403:
        return forbidden_page(message), status
    return render_template("error.html", status=status, title=_(zh),
                           message=localized(message) if message else _(zh)), status


def forbidden_page(message: str | None = None) -> str:
    """Render the 403 page: why (the refusal, the right the feature takes) and whom to ask, by name."""
    return render_template("forbidden.html", status=403, title=_("无权访问"),
                           message=localized(message) if message else None, right=access.right_here(),
                           contacts=access.whom_to_ask())


def _retry_after(response: Response) -> Response:
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def retrying(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Run a view again, once, on a fresh connection when the first was lost before any commit began.

    Nothing was committed then (the server rolled the transaction back), so the second run is the first
    that counts. A loss during or after a commit is a 503: the work may have committed, and only the
    client (with its Idempotency-Key) can tell a retry from a second request.
    """
    @functools.wraps(view)
    def run(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        try:
            return view(*args, **kwargs)
        except DBAPIError as exc:
            session = g.get("db_session")
            if not is_disconnect(exc) or session is None or session.info.get(COMMIT_STARTED):
                raise
            log.warning("database connection lost before commit in %s %s; running it again", request.method,
                        request.path)
            _rollback()
            g.pop("db_session").close()
            if g.get("api_auth") != "token":
                g.pop("actor", None)
            g.pop("_login_user", None)  # flask-login reloads the user on the new session
            return view(*args, **kwargs)
    return run


def init_app(app: Flask) -> None:
    """Register the error handlers."""

    @app.errorhandler(EngineError)
    def _engine_error(exc: EngineError) -> ResponseReturnValue:
        if wants_json():
            return problem(exc.http_status, exc.code, exc.message, **exc.details)
        message = localized(exc.message)
        if request.headers.get("HX-Request"):
            return render_template("_error.html", error=exc, message=message), exc.http_status
        if exc.http_status == 403 and not (request.method == "POST" and request.referrer):
            return forbidden_page(exc.message), 403
        flash(message, "error")
        if request.method == "POST" and request.referrer and request.referrer.startswith(request.host_url):
            return redirect(request.referrer)
        return render_template("error.html", error=exc, status=exc.http_status, message=message), \
            exc.http_status

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> ResponseReturnValue:
        message = _("表单已过期或缺少安全令牌，请刷新页面后重试")
        if wants_json():
            return problem(400, "csrf", f"{message} ({exc.description})")
        return _page(400, message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        status = exc.code or 500
        if status < 400 or exc.response is not None:
            return exc
        if wants_json():
            response = problem(status)
        else:
            page, _status = _page(status)
            response = Response(page, status=status, mimetype="text/html")
        headers = dict(exc.get_headers())
        for name in ("Retry-After", "Allow", "WWW-Authenticate"):
            if headers.get(name):
                response.headers[name] = headers[name]
        return response

    @app.errorhandler(DBAPIError)
    def _database_error(exc: DBAPIError) -> ResponseReturnValue:
        _rollback()  # the error page itself reads (the navigation, the unread count)
        if is_disconnect(exc):
            log.warning("database unavailable during %s %s: %s", request.method, request.path, exc.orig)
            if wants_json():
                return _retry_after(problem(503, "database_unavailable",
                                            "数据库连接中断，请稍后重试 (database connection lost; retry)"))
            page, status = _page(503)
            return _retry_after(Response(page, status=status, mimetype="text/html"))
        if isinstance(exc, DataError):  # the database refused a value (too long, out of range, NUL…)
            message = _("输入数据无效：数值超出范围或文本过长") + " (invalid value: out of range or too long)"
            return problem(422, "invalid_value", message) if wants_json() else _page(422, message)
        return _internal(exc)

    @app.errorhandler(OverflowError)
    def _overflow(exc: OverflowError) -> ResponseReturnValue:
        _rollback()
        message = _("数值超出范围") + " (number out of range)"
        return problem(422, "out_of_range", message) if wants_json() else _page(422, message)

    @app.errorhandler(RecursionError)
    def _too_deep(exc: RecursionError) -> ResponseReturnValue:
        message = _("提交的数据嵌套过深") + " (input nested too deeply)"
        return problem(422, "too_deep", message) if wants_json() else _page(422, message)

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> ResponseReturnValue:
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        _rollback()
        return problem(500) if wants_json() else _page(500)


def _rollback() -> None:
    session = g.get("db_session")
    if session is not None:
        try:
            session.rollback()
        except DBAPIError:  # the connection is gone: the pool replaces it
            log.warning("rollback failed after a database error", exc_info=True)
