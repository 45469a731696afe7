"""Web fixtures: an app on the test database, clients logged in as the people of review_org."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from engine.org.models import User
from web import create_app

PASSWORD = "jz-test-Passw0rd"
# Hashed once, cheaply: the tests are about the app, not about the hash's cost.
PASSWORD_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


def app_on(db_url: str, session: Session, **config: Any) -> Iterator[Flask]:
    """An app on the test database whose users all have the test password (`config` overrides the defaults)."""
    for user in session.query(User):
        user.password_hash = PASSWORD_HASH
    session.commit()
    session.close()
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "WTF_CSRF_ENABLED": True,
                      "RATELIMIT_ENABLED": True, "SECRET_KEY": "test-secret", **config})
    yield app
    app.extensions["jzflow.engine"].dispose()


@pytest.fixture
def app(db_url: str, session: Session, review_org: dict[str, Any]) -> Iterator[Flask]:
    yield from app_on(db_url, session)


def csrf_of(client: FlaskClient, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


@pytest.fixture
def login(app: Flask) -> Callable[[str], FlaskClient]:
    def log_in(username: str) -> FlaskClient:
        client = app.test_client()
        token = csrf_of(client)
        response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
        assert response.status_code == 302, response.get_data(as_text=True)
        return client
    return log_in


@pytest.fixture(scope="module")
def provider() -> Iterator[Any]:
    """A test OpenID Connect provider on loopback, one per test module (tests/oidc_provider.py, imported by the
    modules that use it, under their filter of its dependencies' deprecation warnings)."""
    from tests.oidc_provider import running

    with running() as p:
        yield p


@pytest.fixture
def sso_app(db_url: str, session: Session, review_org: dict[str, Any], provider: Any,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The app with single sign-on at the test provider (a module may override it with settings of its own)."""
    from engine.org import oidc
    from tests.oidc_provider import configure

    configure(monkeypatch, provider.issuer)
    yield from app_on(db_url, session)
    oidc.METADATA.clear()
