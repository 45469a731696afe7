"""JSON API under /api: bearer tokens for machines, the session cookie (with CSRF) for the browser.

Errors are RFC 9457 problem details that keep `{"error", "message", ...}` (web/errors.py);
401 without credentials; a read-only token (engine/org/tokens.py scopes) may GET, HEAD and OPTIONS only, anything
else is 403 token_read_only before the view runs; rate-limited per token (or per user / address) with Flask-Limiter.
"""
from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from limits import parse as parse_limit
from sqlalchemy.exc import DBAPIError

from engine.audit import audit_views
from engine.errors import InvalidInput, PasswordChangeRequired, TokenExpired
from engine.org import tokens
from web import guards
from web.common import db_session
from web.errors import problem
from web.extensions import client_address, csrf, limiter
from web.guards import bearer_token

bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)  # token requests carry no cookie; session requests are checked in `_authenticate`
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PUBLIC_ENDPOINTS = ("api.openapi", "api.landing")
DEFAULT_RATE_LIMIT = "600 per minute"


def rate_key() -> str:
    """Rate-limit bucket: the token (by its digest), else the logged-in user, else the address (IPv6: its /64)."""
    token = bearer_token()
    if token:
        return "api:token:" + tokens.digest(token)[:32]
    if current_user.is_authenticated:
        return f"api:user:{current_user.id}"
    return "api:ip:" + client_address()


def _rate_limit() -> str:
    return str(current_app.config.get("JZFLOW_API_RATE_LIMIT", DEFAULT_RATE_LIMIT))


limiter.limit(_rate_limit, key_func=rate_key)(bp)


def unauthorized(message: str, code: str = "unauthorized", challenge: str = "", **details: Any) -> ResponseReturnValue:
    """Return a 401 problem asking for a bearer token (`challenge`: RFC 6750 error attributes to add)."""
    response = problem(401, code, message, **details)
    response.headers["WWW-Authenticate"] = 'Bearer realm="jzflow"' + challenge
    return response


def _unknown_token() -> ResponseReturnValue:
    """Answer a token that authenticates nobody: 401, counted against the client's address (its own bucket, at the
    API's rate) — keyed by the token, a new made-up one each request had a budget of its own, so guessing or flooding
    from one address never stopped. A real token's budget stays its own."""
    if limiter.enabled and limiter.initialized:
        rate, key = parse_limit(_rate_limit()), ("api-unknown-token", client_address())
        try:
            allowed = limiter.limiter.hit(rate, *key)
            reset = limiter.limiter.get_window_stats(rate, *key).reset_time if not allowed else 0.0
        except Exception:  # the store is down: as RATELIMIT_SWALLOW_ERRORS, an answer and not a 500
            allowed = True
        if not allowed:
            response = problem(429, "rate_limited")
            response.headers["Retry-After"] = str(max(1, int(reset - time.time()) + 1))
            return response
    return unauthorized("令牌无效或已吊销 (invalid or revoked token)")


@bp.before_request
def _authenticate() -> ResponseReturnValue | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    token = bearer_token()
    if token is not None:  # an Authorization header decides alone, whatever cookie comes along
        session = db_session()
        try:
            found = tokens.authenticate_scoped(session, token) if token else None
        except TokenExpired as expired:
            return unauthorized(expired.message, expired.code,
                                ', error="invalid_token", error_description="The access token expired"', **expired.details)
        except PasswordChangeRequired as held:  # its owner's password was reset: until changed, no token of theirs
            return unauthorized(held.message, held.code, ', error="invalid_token", error_description="The owner must '
                                'change the password an administrator reset"', **held.details)
        if found is None:
            return _unknown_token()
        # last_used_at is flushed into the request's unit of work: the view's commit carries it, and a
        # read that commits nothing has it committed by `_commit_reads` (one commit per request either way).
        g.actor, scope = found
        g.api_auth = "token"
        if request.method not in SAFE_METHODS and scope != tokens.READ_WRITE:  # before the view: nothing runs
            session.rollback()  # not even last_used_at: a refused request changes nothing
            return problem(403, "token_read_only", "此令牌为只读令牌，只能查询（GET），不能修改；请使用读写令牌 (this token "
                                                   "is read-only: it may only read (GET, HEAD); use a read-write token)",
                           scope=scope)
        if request.method not in SAFE_METHODS and audit_views.is_read_only_actor(g.actor):
            return jsonify(error="forbidden", message=_("审计人员只能查看，不能修改 (auditors read only)")), 403
        return None
    if current_user.is_authenticated:
        g.api_auth = "session"
        if request.method not in SAFE_METHODS:
            csrf.protect()  # a browser session: the X-CSRFToken header is required
        return None
    return unauthorized("需要登录或 API 令牌 (log in or send Authorization: Bearer <token>)")


@bp.after_request
def _commit_reads(response: Response) -> Response:
    """Commit a token read's last_used_at: a GET's view commits nothing, so this is the request's one commit."""
    if g.get("api_auth") == "token" and request.method in SAFE_METHODS and response.status_code < 400:
        session = db_session()
        if session.in_transaction():
            try:
                session.commit()
            except DBAPIError:  # the connection died after the answer was made: last_used_at is only bookkeeping,
                pass  # and the teardown rolls back and lets the pool drop the connection
    return response


def _no_constant(name: str) -> Any:
    raise InvalidInput(f"JSON 没有 {name} 这样的数值 (JSON has no {name})", field="(body)")


def body() -> dict[str, Any]:
    """Return the JSON object sent (numbers with a fraction as Decimal); an empty body is {}.

    Raises: InvalidInput
    """
    raw = request.get_data(cache=True, as_text=True)
    if not raw.strip():
        return {}
    if not request.is_json:  # read as JSON whatever its type says: the input checks ran only on a JSON type
        guards.check_json(raw)
    try:
        value = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
    except ValueError as exc:
        raise InvalidInput(f"请求体不是有效的 JSON (invalid JSON): {exc}", field="(body)") from exc
    if not isinstance(value, dict):
        raise InvalidInput("请求体必须是 JSON 对象 (the body must be a JSON object)", field="(body)")
    return value


def text_field(data: dict[str, Any], name: str, *, required: bool = False, default: str = "",
               max_length: int | None = None) -> str:
    """Return a string field of a JSON body.

    Raises: InvalidInput
    """
    value = data.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, str):
        raise InvalidInput(f"{name} 必须是字符串 (must be a string)", field=name)
    if required and not value.strip():
        raise InvalidInput(f"{name} 不能为空 (required)", field=name)
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(f"{name} 不能超过 {max_length} 个字符 (at most {max_length} characters)", field=name)
    return value

