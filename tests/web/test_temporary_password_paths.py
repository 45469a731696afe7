"""A person logged in with the temporary password an administrator set reaches 修改密码 and nothing else, whatever
their request carries: an `Authorization` header (a bearer token, made up or not) on a page that is not the API
loads the cookie's person all the same, so it does not let them past the change either."""
from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from engine.org.models import User
from tests.web.conftest import csrf_of
from tests.web.flows import db, token_for

Login = Callable[[str], FlaskClient]


@pytest.mark.parametrize("header", ["Bearer jzf_made-up", "Bearer ", "Basic Zm9vOmJhcg==", "own"])
def test_an_authorization_header_does_not_take_a_temporary_password_past_the_change(
        app: Flask, login: Login, header: str) -> None:
    fg = login("fg")
    own = token_for(app, "fg")  # a token of their own, taken before the reset
    with db(app) as s:
        s.execute(update(User).where(User.username == "fg").values(must_change_password=True))
    sent = {"Authorization": f"Bearer {own}" if header == "own" else header}
    page = fg.get("/inbox", headers=sent)
    assert page.status_code == 302 and page.headers["Location"].endswith("/account/password")
    csrf = csrf_of(fg, "/account/password")
    posted = fg.post("/notifications/read-all", data={"csrf_token": csrf}, headers=sent)
    assert posted.status_code == 403
    assert fg.get("/api/tasks", headers=sent).status_code == 401  # the API: the header decides alone, as before
