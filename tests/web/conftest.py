"""Web fixtures: an app on the test database, clients logged in as the people of review_org."""
from __future__ import annotations

import html as markup
import re
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


def form_at(client: FlaskClient, page: str, action: str) -> dict[str, Any]:
    """The fields of the form posting to `action` on `page`, as a browser would send them untouched."""
    html = client.get(page).get_data(as_text=True)
    found = re.search(rf'<form method="post" action="{re.escape(action)}"[^>]*>(.*?)</form>', html, re.S)
    assert found, (action, html[:2000])
    body = found.group(1)
    fields: dict[str, Any] = {}
    for tag in re.findall(r"<input [^>]*>", body):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name is None or ('type="checkbox"' in tag and "checked" not in tag):
            continue
        text = markup.unescape(value.group(1)) if value else ""
        if 'type="checkbox"' in tag:
            fields.setdefault(name.group(1), []).append(text)
        else:
            fields[name.group(1)] = text
    for name, options in re.findall(r'<select name="([^"]+)">(.*?)</select>', body, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', options) or re.search(r'<option value="([^"]*)"',
                                                                                       options)
        fields[name] = chosen.group(1) if chosen else ""
    for name, text in re.findall(r'<textarea name="([^"]+)"[^>]*>(.*?)</textarea>', body, re.S):
        fields[name] = markup.unescape(text)
    return fields


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
