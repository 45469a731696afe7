"""统一身份认证: claims a person chooses at the provider are data, and never break their own login or the lists.

A provider where people edit their own profile (or register themselves) lets them put anything in their name;
the directory sync refuses a name with control characters (the username stands in), the SSO login stored it as it
came: a NUL byte (PostgreSQL refuses it) failed every login of that person with a 500, and line breaks or bidi
overrides went into every list, 审批单 and notice that names them.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.org import oidc
from engine.org.models import User
from engine.org.sso_models import SsoSession
from tests.oidc_provider import Provider, configure
from tests.web.conftest import app_on

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:authlib.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:oidc_provider_mock.*")]


@pytest.fixture
def sso_app(db_url: str, session: Session, review_org: dict[str, Any], provider: Provider,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    configure(monkeypatch, provider.issuer)
    yield from app_on(db_url, session)
    oidc.METADATA.clear()


def _sign_in(client: FlaskClient, provider: Provider, sub: str) -> Any:
    start = client.get("/login/sso", query_string={"next": "/inbox"})
    assert start.status_code == 302
    parts = urlsplit(provider.authorize(start.headers["Location"], sub))
    return client.get(f"{parts.path}?{parts.query}")


@pytest.mark.parametrize("name", ["张三\x00", "张三\n管理员", "\u202e员理管", "张\x85三", "张三\u2028管理员"])
def test_a_name_with_control_characters_logs_in_under_the_username(sso_app: Flask, provider: Provider,
                                                                   name: str) -> None:
    provider.set_user("sub-ctl", {"preferred_username": "zhangsan", "name": name, "unit": "fgj"})
    client = sso_app.test_client()
    response = _sign_in(client, provider, "sub-ctl")
    assert response.status_code == 302 and response.headers["Location"] == "/inbox"
    assert client.get("/inbox").status_code == 200
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        user = s.scalar(select(User).where(User.username == "zhangsan"))
        assert user is not None and user.display_name == "zhangsan"
    provider.set_user("sub-ctl", {"preferred_username": "zhangsan", "name": "张三", "unit": "fgj"})
    assert _sign_in(sso_app.test_client(), provider, "sub-ctl").status_code == 302
    provider.set_user("sub-ctl", {"preferred_username": "zhangsan", "name": name, "unit": "fgj"})
    assert _sign_in(sso_app.test_client(), provider, "sub-ctl").status_code == 302  # a later login keeps the good name
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        user = s.scalar(select(User).where(User.username == "zhangsan"))
        assert user is not None and user.display_name == "张三"


def test_a_session_id_with_control_characters_is_not_recorded_and_the_login_goes_on(sso_app: Flask,
                                                                                     provider: Provider) -> None:
    provider.set_user("sub-sid", {"preferred_username": "lisi", "name": "李四", "unit": "fgj", "sid": "s\x00id"})
    client = sso_app.test_client()
    assert _sign_in(client, provider, "sub-sid").status_code == 302
    assert client.get("/inbox").status_code == 200
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        assert s.scalars(select(SsoSession.sid)).all() == [None]  # a logout token then names the person by sub
