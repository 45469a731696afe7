"""The app factory and login: security headers, CSRF, safe redirects, rate limit, language switch."""
from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response
from flask.testing import FlaskClient

from tests.web.conftest import PASSWORD, csrf_of
from web.extensions import SECURITY_HEADERS


def test_health_and_headers(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.json is not None and response.json["status"] == "ok"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    for name in SECURITY_HEADERS:  # each once
        assert len(response.headers.getlist(name)) == 1, name


def test_a_view_s_own_security_header_is_kept_whatever_its_case(app: Flask) -> None:
    @app.get("/_own_headers")
    def own() -> Response:
        answer = Response("x")
        answer.headers["content-security-policy"] = "sandbox"
        answer.headers["X-FRAME-OPTIONS"] = "SAMEORIGIN"
        return answer

    response = app.test_client().get("/_own_headers")
    assert response.headers.getlist("Content-Security-Policy") == ["sandbox"]
    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers["Referrer-Policy"] == "same-origin"  # the others added


def test_anonymous_is_sent_to_login(app: Flask) -> None:
    response = app.test_client().get("/inbox")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_login_logout_and_the_inbox(login: Callable[[str], FlaskClient]) -> None:
    client = login("fg")
    page = client.get("/inbox")
    assert page.status_code == 200 and "待办" in page.get_data(as_text=True)
    token = csrf_of(client, "/inbox")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/inbox").status_code == 302


def test_wrong_password_and_csrf_are_refused(app: Flask) -> None:
    client = app.test_client()
    token = csrf_of(client)
    wrong = client.post("/login", data={"username": "fg", "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "用户名或密码错误" in wrong.get_data(as_text=True)
    assert client.post("/login", data={"username": "fg", "password": PASSWORD}).status_code == 400


def test_login_never_redirects_off_site(app: Flask) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        client = app.test_client()
        token = csrf_of(client)
        response = client.post(f"/login?next={target}", data={"username": "fg", "password": PASSWORD,
                                                               "csrf_token": token})
        assert response.status_code == 302 and response.headers["Location"] == "/inbox", target


def test_login_is_rate_limited(app: Flask) -> None:
    client = app.test_client()
    token = csrf_of(client)
    codes = [client.post("/login", data={"username": "fg", "password": "x", "csrf_token": token}).status_code
             for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[-1] == 429


def test_english_is_a_switch(login: Callable[[str], FlaskClient]) -> None:
    client = login("fg")
    client.get("/lang/en")
    assert "Inbox" in client.get("/inbox").get_data(as_text=True)
    client.get("/lang/zh")
    assert "待办" in client.get("/inbox").get_data(as_text=True)
