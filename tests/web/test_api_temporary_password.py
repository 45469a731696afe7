"""Over the API: a token of a person whose password an administrator reset answers 401 password_change_required
until they change it, and the change revokes it; with single sign-on, that password opens no login and the token
stands (tokens.temporary)."""
from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import update

from engine import org
from engine.org import oidc
from engine.org.actors import actor_for
from engine.org.models import User
from tests.web.conftest import PASSWORD
from tests.web.flows import Api, db, token_for, user_id


def _temporary(app: Flask, username: str) -> None:
    with db(app) as s:
        s.execute(update(User).where(User.username == username).values(must_change_password=True))


def test_a_token_of_a_person_with_a_temporary_password_gets_a_401_that_says_change_it_first(app: Flask) -> None:
    api, other = Api(app, token_for(app, "fg")), Api(app, token_for(app, "st"))
    assert api.get("/api/tasks").status_code == 200
    _temporary(app, "fg")
    for response in (api.get("/api/tasks"), api.post("/api/processes/review_process/instances", {"title": "x"})):
        assert response.status_code == 401 and response.json is not None
        assert response.json["error"] == "password_change_required"
        assert "修改密码" in response.json["message"] and "change the password" in response.json["message"]
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert other.get("/api/tasks").status_code == 200
    with db(app) as s:
        org.change_password(s, user_id=user_id(app, "fg"), current=PASSWORD, new="my-own-pass-1",
                            actor=actor_for(s, "fg"))
    gone = api.get("/api/tasks")  # revoked by the change: as any revoked token
    assert gone.status_code == 401 and gone.json is not None and gone.json["error"] != "password_change_required"
    assert Api(app, token_for(app, "fg")).get("/api/tasks").status_code == 200


def test_with_single_sign_on_the_token_of_a_person_with_a_temporary_password_stands(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    api = Api(app, token_for(app, "fg"))
    _temporary(app, "fg")
    monkeypatch.setenv("JZFLOW_OIDC_ISSUER", "https://sso.example.test")
    monkeypatch.setenv("JZFLOW_OIDC_CLIENT_ID", "jzflow")
    oidc.METADATA.clear()
    assert api.get("/api/tasks").status_code == 200
