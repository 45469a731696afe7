"""The app factory: health check, security headers, engine errors translated once."""
from __future__ import annotations

from pathlib import Path

from web import create_app


def test_health_and_headers(db_url: str, tmp_path: Path) -> None:
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    client = app.test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json is not None and response.json["status"] == "ok"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    app.extensions["jzflow.sessionmaker"].kw["bind"].dispose()
