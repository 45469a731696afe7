"""Flask app factory: configuration, one database session per request, errors translated once."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.orm import Session

from engine import config
from engine.db import make_engine, make_sessionmaker
from engine.errors import EngineError

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "object-src 'none'; base-uri 'self'; frame-ancestors 'none'",
}


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create the jzflow web application."""
    settings = config.load()
    app = Flask(__name__, instance_path=str(settings.instance_dir), instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        DATABASE_URL=settings.database_url,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    if test_config:
        app.config.from_mapping(test_config)
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["jzflow.sessionmaker"] = make_sessionmaker(engine)

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            session.rollback()  # anything not committed by the view is discarded
            session.close()

    @app.errorhandler(EngineError)
    def _engine_error(exc: EngineError) -> ResponseReturnValue:
        return jsonify(exc.to_dict()), exc.http_status

    @app.after_request
    def _headers(response: Any) -> Any:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        db_session().execute(text("select 1"))
        return jsonify(status="ok", database=engine.dialect.name, embedded=settings.is_embedded,
                       path=request.path)

    return app


def db_session() -> Session:
    """Return the request's database session (the view commits; teardown rolls back the rest)."""
    from flask import current_app
    if "db_session" not in g:
        g.db_session = current_app.extensions["jzflow.sessionmaker"]()
    session: Session = g.db_session
    return session
