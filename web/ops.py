"""Operations endpoints: /healthz (up), /readyz (database, schema; broker: degraded), /metrics (Prometheus), request ids.

/metrics is not public: it answers a bearer token (JZFLOW_METRICS_TOKEN) or an address on the allow-list
(JZFLOW_METRICS_ALLOW, addresses or networks); with neither configured it answers nobody. /healthz and
/readyz are public (load balancers ask them) and name only which check failed, never a host or an error text.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from engine import config
from engine.ops import health, logs, metrics

bp = Blueprint("ops", __name__)
log = logging.getLogger("jzflow.web.request")
QUIET = frozenset({"ops.healthz", "ops.readyz", "ops.metrics", "static"})  # not logged per request at INFO


def _networks(values: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Parse JZFLOW_METRICS_ALLOW.

    Raises: ValueError naming the setting and the bad entry
    """
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"JZFLOW_METRICS_ALLOW: {value!r} is not an address or network "
                             "(e.g. 10.0.0.0/8, 127.0.0.1)") from None
    return tuple(nets)


def _queue_names() -> list[str]:
    from engine.celery_app import celery
    names = {str(celery.conf.task_default_queue or "celery")}
    routes = celery.conf.task_routes
    if isinstance(routes, dict):
        names.update(str(r["queue"]) for r in routes.values() if isinstance(r, dict) and r.get("queue"))
    return sorted(names)


def _metrics_allowed() -> Response | None:
    """None when the caller may read /metrics, else the refusal."""
    settings: config.Settings = current_app.extensions["jzflow.settings"]
    token = current_app.config.get("METRICS_TOKEN", settings.metrics_token)
    nets = current_app.extensions["jzflow.metrics_allow"]
    if nets and request.remote_addr:
        try:
            address = ipaddress.ip_address(request.remote_addr)
        except ValueError:
            address = None
        if address is not None and any(address in net for net in nets):
            return None
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        refusal = Response("需要指标令牌 (a valid metrics bearer token is required)\n", 401, mimetype="text/plain")
        refusal.headers["WWW-Authenticate"] = 'Bearer realm="jzflow-metrics"'
        return refusal
    message = ("指标未对此地址开放 (metrics are not open to this address)\n" if nets else
               "指标未开放：请设置 JZFLOW_METRICS_TOKEN 或 JZFLOW_METRICS_ALLOW "
               "(metrics are not enabled: set JZFLOW_METRICS_TOKEN or JZFLOW_METRICS_ALLOW)\n")
    return Response(message, 403, mimetype="text/plain")


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is up and answers (asks nothing of the database or the broker)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready for traffic: the database answers and the schema is what this code needs (no broker: 200, degraded)."""
    settings: config.Settings = current_app.extensions["jzflow.settings"]
    checks = health.readiness(current_app.extensions["jzflow.engine"], settings.broker_url)
    failed = [c for c in checks if not c.ok and c.required]
    degraded = [c for c in checks if not c.ok and not c.required]  # still serving: the outbox waits for the broker
    for check in failed + degraded:
        log.warning("readiness check %s failed: %s", check.name, check.detail)
    body: dict[str, object] = {"status": "unavailable" if failed else "degraded" if degraded else "ok",
                               "checks": {c.name: "ok" if c.ok else "failed" for c in checks}}
    if failed:
        body["failed"] = [c.name for c in failed]
    if degraded:
        body["degraded"] = [c.name for c in degraded]
    response = jsonify(body)
    response.status_code = 503 if failed else 200
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metrics", endpoint="metrics")
def metrics_view() -> ResponseReturnValue:
    """Prometheus metrics (token or allow-list only)."""
    refusal = _metrics_allowed()
    if refusal is not None:
        return refusal
    settings: config.Settings = current_app.extensions["jzflow.settings"]
    state = metrics.StateCollector(current_app.extensions["jzflow.sessionmaker"], settings.broker_url, _queue_names())
    response = Response(metrics.render(state), mimetype="text/plain")
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    response.headers["Cache-Control"] = "no-store"
    return response


def _start() -> None:
    incoming = logs.sane_request_id(request.headers.get("X-Request-ID"))
    g.request_id = incoming or logs.new_request_id()
    g.request_token = logs.bind_request_id(g.request_id)
    g.request_started = time.perf_counter()


def _finish(response: Any) -> Any:
    rid = g.get("request_id")
    if rid:
        response.headers["X-Request-ID"] = rid
    started = g.get("request_started")
    if started is not None:
        seconds = time.perf_counter() - started
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        method = request.method if request.method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD") else "OTHER"
        metrics.REQUEST_SECONDS.labels(route=route, method=method, status=str(response.status_code)).observe(seconds)
        level = logging.DEBUG if request.endpoint in QUIET else logging.INFO
        log.log(level, "%s %s %s %.1f ms", method, route, response.status_code, seconds * 1000,
                extra={"route": route, "method": method, "status": response.status_code,
                       "duration_ms": round(seconds * 1000, 1)})
    return response


def _teardown(_exc: BaseException | None) -> None:
    token = g.pop("request_token", None)
    if token is not None:
        try:
            logs.reset_request_id(token)
        except ValueError:  # set in another context (a test client reusing the app context): just clear it
            logs.bind_request_id(None)


def init_app(app: Flask) -> None:
    """Request ids and latency on every request; the settings /metrics needs, checked at start."""
    settings = config.load()
    app.extensions["jzflow.settings"] = settings
    app.extensions["jzflow.metrics_allow"] = _networks(tuple(app.config.get("METRICS_ALLOW", settings.metrics_allow)))
    app.before_request_funcs.setdefault(None, []).insert(0, _start)  # first: a guard's refusal is timed too
    app.after_request(_finish)
    app.teardown_request(_teardown)
