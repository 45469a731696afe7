"""Trust I hole 7: sessions end server-side; failed logins (never successes) are limited per account and address."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from engine import audit, config, org
from engine.audit.models import AuditEvent
from engine.org import core as org_core
from engine.org import tokens
from engine.org.token_models import ApiToken
from tests.engine.conftest import at_once
from tests.web.conftest import PASSWORD, PASSWORD_HASH, csrf_of
from tests.web.flows import db
from web import auth, create_app


def _post_login(client: FlaskClient, username: str, password: str, address: str = "10.0.0.1",
                **headers: str) -> Any:
    token = csrf_of(client)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": address}, headers=headers)


def _replay(app: Flask, cookie: str) -> int:
    """Present a captured session cookie from another machine; return the inbox's status."""
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    return thief.get("/inbox").status_code


def _slow_checks(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[str]:
    """Make the module's password check slow and return the list of the passwords it is asked to check."""
    checked: list[str] = []
    real = module.check_password_hash

    def slow_check(pwhash: str, password: str) -> bool:
        checked.append(password)
        time.sleep(0.3)  # the hash's cost, long enough for every other guess to arrive meanwhile
        return bool(real(pwhash, password))

    monkeypatch.setattr(module, "check_password_hash", slow_check)
    return checked


def _cookie(client: FlaskClient) -> str:
    found = client.get_cookie("session")
    assert found is not None
    return found.value


def test_hole7_cookie_captured_before_logout_stops_working(app: Flask, login: Callable[[str], FlaskClient]) -> None:
    client = login("window")
    captured = _cookie(client)
    assert _replay(app, captured) == 200
    token = csrf_of(client, "/inbox")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert _replay(app, captured) == 302  # back to the login page: the session ended server-side


def test_hole7_logout_ends_the_sessions_on_other_devices_too(app: Flask, login: Callable[[str], FlaskClient]) -> None:
    laptop, phone = login("window"), login("window")
    laptop.post("/logout", data={"csrf_token": csrf_of(laptop, "/inbox")})
    assert phone.get("/inbox").status_code == 302


def test_a_logout_is_in_the_audit_trail_with_its_address(app: Flask, login: Callable[[str], FlaskClient]) -> None:
    client = login("window")
    response = client.post("/logout", data={"csrf_token": csrf_of(client, "/inbox")},
                           environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert response.status_code == 302
    with db(app) as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.logout")).one()
        assert (event.actor_name, event.stream, event.after) == (
            "window", f"user:{event.actor_id}", {"ip": "10.0.0.9", "single_sign_out": False})
        assert audit.verify(s).ok
    assert client.post("/logout", data={"csrf_token": "x"}).status_code in (302, 400)  # already out: nothing more
    with db(app) as s:
        assert len(s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.logout")).all()) == 1


def test_hole7_password_change_ends_every_other_session(app: Flask, login: Callable[[str], FlaskClient]) -> None:
    here, elsewhere = login("window"), login("window")
    captured = _cookie(elsewhere)
    token = csrf_of(here, "/account/password")
    response = here.post("/account/password", data={"csrf_token": token, "current_password": PASSWORD,
                                                     "new_password": "a-new-Passw0rd", "confirm_password":
                                                     "a-new-Passw0rd"})
    assert response.status_code == 302
    assert here.get("/inbox").status_code == 200  # this session goes on
    assert elsewhere.get("/inbox").status_code == 302
    assert _replay(app, captured) == 302
    assert _post_login(app.test_client(), "window", PASSWORD).status_code == 401
    assert _post_login(app.test_client(), "window", "a-new-Passw0rd").status_code == 302


def test_hole7_password_change_needs_the_current_password(app: Flask, login: Callable[[str], FlaskClient]) -> None:
    client = login("window")
    token = csrf_of(client, "/account/password")
    response = client.post("/account/password", data={"csrf_token": token, "current_password": "guess",
                                                       "new_password": "a-new-Passw0rd",
                                                       "confirm_password": "a-new-Passw0rd"},
                           headers={"Accept": "application/json"})
    assert response.status_code == 422 and "current_password" in response.get_data(as_text=True)
    assert _post_login(app.test_client(), "window", PASSWORD).status_code == 302  # unchanged


def test_guessing_the_current_password_from_an_open_session_is_limited_like_logins(
        app: Flask, login: Callable[[str], FlaskClient]) -> None:
    """Whoever finds a session left open could guess the current password on 修改密码 without end (and take the
    account); those guesses now count against the account like failed logins, and stop at the same limit."""
    client = login("window")

    def change(current: str) -> Any:
        return client.post("/account/password", data={
            "csrf_token": csrf_of(client, "/account/password"), "current_password": current,
            "new_password": "a-new-Passw0rd", "confirm_password": "a-new-Passw0rd"}, headers={"Accept": "application/json"})

    for i in range(10):
        assert change(f"guess-{i}").status_code == 422
    refused = change(PASSWORD)  # the right one, too late: refused before it is looked at
    assert refused.status_code == 429 and "current_password" in refused.get_data(as_text=True)
    assert _post_login(app.test_client(), "window", PASSWORD, address="10.3.0.1").status_code == 429
    assert _post_login(app.test_client(), "fg", PASSWORD, address="10.3.0.1").status_code == 302  # others log in
    with db(app) as s:  # the guess that locked the account is audited once, like a login's
        locks = s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.lockout")).all()
        assert [(e.object_id, e.after["username"]) for e in locks] == [("account", "window")]


def test_current_passwords_guessed_at_once_get_no_more_tries_than_the_limit(
        app: Flask, login: Callable[[str], FlaskClient], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_LOGIN_ACCOUNT_FAILURES", "3")
    client = login("window")
    checked = _slow_checks(monkeypatch, org_core)
    token = csrf_of(client, "/account/password")

    def guess(i: int) -> None:
        client.post("/account/password", data={"csrf_token": token, "current_password": f"guess-{i}",
                                               "new_password": "a-new-Passw0rd", "confirm_password": "a-new-Passw0rd"},
                    headers={"Accept": "application/json"})

    assert at_once(6, guess) == [None] * 6
    assert len(checked) == 3


def test_an_auditor_changes_their_own_password_and_revokes_their_own_token(
        app: Flask, login: Callable[[str], FlaskClient]) -> None:
    """Auditors change nothing — but their own credentials are not the records they audit: 修改密码 and revoking
    their own API token were refused (403), so an auditor whose password or token leaked could not shut it out."""
    with db(app) as s:
        org.add_role(s, code="auditor", name="审计督查")
        user = org.add_user(s, username="auditor", display_name="审计员", role_codes=["auditor"])
        user.password_hash = PASSWORD_HASH
        tokens.issue(s, user, "审计导出")
        token_id = s.scalars(select(ApiToken.id).where(ApiToken.user_id == user.id)).one()
    client = login("auditor")
    response = client.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(client, "/admin/tokens")})
    assert response.status_code == 302
    response = client.post("/account/password", data={"csrf_token": csrf_of(client, "/account/password"),
                                                       "current_password": PASSWORD, "new_password": "a-new-Passw0rd",
                                                       "confirm_password": "a-new-Passw0rd"})
    assert response.status_code == 302 and client.get("/inbox").status_code == 200
    with db(app) as s:
        assert s.get(ApiToken, token_id).revoked_at is not None  # type: ignore[union-attr]
    assert _post_login(app.test_client(), "auditor", "a-new-Passw0rd").status_code == 302
    response = client.post("/inbox/filters", data={"csrf_token": csrf_of(client, "/inbox"), "name": "x", "q": "x"})
    assert response.status_code == 403  # and otherwise still read-only


def test_hole7_deactivation_ends_every_session(app: Flask, login: Callable[[str], FlaskClient]) -> None:
    victim, admin = login("window"), login("admin")
    captured = _cookie(victim)
    from engine.org.models import User
    with app.extensions["jzflow.sessionmaker"]() as s:
        user_id = s.query(User.id).filter(User.username == "window").scalar()
    admin.post(f"/admin/users/{user_id}/deactivate", data={"csrf_token": csrf_of(admin, "/admin")})
    assert victim.get("/inbox").status_code == 302
    assert _replay(app, captured) == 302


def test_hole7_successful_logins_from_one_address_are_never_limited(app: Flask) -> None:
    # An office behind one NAT address: 60 people log in within the hour (main allowed 10 a minute, 50 an hour).
    for _ in range(60):
        assert _post_login(app.test_client(), "window", PASSWORD).status_code == 302


def test_hole7_failures_are_limited_per_account(app: Flask) -> None:
    for i in range(10):  # from ten different addresses: the account is what is being guessed
        assert _post_login(app.test_client(), "window", "wrong", address=f"10.1.0.{i}").status_code == 401
    refused = _post_login(app.test_client(), "window", PASSWORD, address="10.2.0.1")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    page = refused.get_data(as_text=True)
    assert "登录失败次数过多" in page and "分钟后再试" in page  # in Chinese
    assert _post_login(app.test_client(), "fg", PASSWORD, address="10.1.0.1").status_code == 302  # others log in


def test_guesses_sent_at_once_get_no_more_tries_than_one_after_another(app: Flask,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit was read before the password was checked and the failure written after: guesses sent together all
    read a count under the limit, so each was checked (a burst got as many tries as it had requests). Now each try
    is counted before its password is looked at, and only the limit's worth are ever looked at."""
    monkeypatch.setenv("JZFLOW_LOGIN_ACCOUNT_FAILURES", "3")
    real = auth.check_password_hash
    checked = _slow_checks(monkeypatch, auth)
    clients = [app.test_client() for _ in range(8)]
    tokens = [csrf_of(c) for c in clients]
    answers: list[int] = [0] * 8

    def guess(i: int) -> None:
        answers[i] = clients[i].post("/login", data={"username": "window", "password": f"guess-{i}",
                                                     "csrf_token": tokens[i]},
                                     environ_base={"REMOTE_ADDR": f"10.4.0.{i}"}).status_code

    assert at_once(8, guess) == [None] * 8
    assert len(checked) == 3 and sorted(answers) == [401] * 3 + [429] * 5
    monkeypatch.setattr(auth, "check_password_hash", real)
    assert _post_login(app.test_client(), "window", PASSWORD, address="10.4.1.1").status_code == 429


def test_hole7_failures_are_limited_per_address(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_LOGIN_ADDRESS_FAILURES", "12")
    users = ["window", "fg", "zr", "st", "boss", "admin"]
    for i in range(12):  # two wrong guesses per account: no account reaches its own limit
        assert _post_login(app.test_client(), users[i % 6], "wrong", address="10.9.9.9").status_code == 401
    assert _post_login(app.test_client(), "applicant", PASSWORD, address="10.9.9.9").status_code == 429
    assert _post_login(app.test_client(), "applicant", PASSWORD, address="10.9.9.10").status_code == 302


def test_hole7_failures_count_across_processes_and_expire(app: Flask, db_url: str, frozen: Any) -> None:
    other = create_app({"DATABASE_URL": db_url, "TESTING": True, "SECRET_KEY": "test-secret"})  # another worker
    try:
        for i in range(10):
            chosen = app if i % 2 else other
            assert _post_login(chosen.test_client(), "window", "wrong").status_code == 401
        assert _post_login(other.test_client(), "window", PASSWORD).status_code == 429
        assert _post_login(app.test_client(), "window", PASSWORD).status_code == 429
        frozen.advance(timedelta(seconds=config.load().login_window_seconds + 1))
        assert _post_login(app.test_client(), "window", PASSWORD).status_code == 302
    finally:
        other.extensions["jzflow.engine"].dispose()


def test_hole7_redis_outage_does_not_fall_back_to_per_process_memory(db_url: str, app: Flask) -> None:
    # Redis down (nothing listens on port 1): failures are still counted in the database, across processes,
    # and people who know their password still get in.
    apps = [create_app({"DATABASE_URL": db_url, "TESTING": True, "SECRET_KEY": "test-secret",
                        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1/0"}) for _ in range(2)]
    try:
        for i in range(19):
            status = _post_login(apps[i % 2].test_client(), "window", "wrong").status_code
            assert status == (401 if i < 10 else 429), i
        assert _post_login(apps[1].test_client(), "fg", PASSWORD).status_code == 302
    finally:
        for a in apps:
            a.extensions["jzflow.engine"].dispose()


def test_hole7_trusted_proxy_count_decides_the_client_address(db_url: str, app: Flask,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_LOGIN_ADDRESS_FAILURES", "3")
    # No proxy configured: X-Forwarded-For is the client's own claim and is ignored (no bypass by spoofing it).
    for i in range(3):
        _post_login(app.test_client(), ["fg", "zr", "st"][i], "wrong", address="10.5.5.5",
                    **{"X-Forwarded-For": f"192.0.2.{i}"})
    assert _post_login(app.test_client(), "boss", PASSWORD, address="10.5.5.5",
                       **{"X-Forwarded-For": "192.0.2.77"}).status_code == 429
    # Behind one trusted reverse proxy: users are told apart by the address the proxy saw.
    monkeypatch.setenv("JZFLOW_TRUSTED_PROXIES", "1")
    proxied = create_app({"DATABASE_URL": db_url, "TESTING": True, "SECRET_KEY": "test-secret"})
    try:
        for i in range(3):
            _post_login(proxied.test_client(), ["fg", "zr", "st"][i], "wrong", address="10.0.0.254",
                        **{"X-Forwarded-For": "198.51.100.1"})
        assert _post_login(proxied.test_client(), "boss", PASSWORD, address="10.0.0.254",
                           **{"X-Forwarded-For": "198.51.100.1"}).status_code == 429
        assert _post_login(proxied.test_client(), "boss", PASSWORD, address="10.0.0.254",
                           **{"X-Forwarded-For": "198.51.100.2"}).status_code == 302
    finally:
        proxied.extensions["jzflow.engine"].dispose()


def test_an_ipv6_guesser_cannot_escape_the_address_limit_by_rotating_through_its_64(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_LOGIN_ADDRESS_FAILURES", "3")
    for i, username in enumerate(["fg", "zr", "st"]):  # a new address of the same /64 for every guess
        assert _post_login(app.test_client(), username, "wrong", address=f"2001:db8:42:1::{i + 1:x}").status_code == 401
    assert _post_login(app.test_client(), "boss", PASSWORD, address="2001:db8:42:1:abcd::9").status_code == 429
    assert _post_login(app.test_client(), "boss", PASSWORD, address="2001:db8:42:2::1").status_code == 302


def test_hole7_hsts_only_when_cookies_are_secure(db_url: str, app: Flask) -> None:
    assert "Strict-Transport-Security" not in app.test_client().get("/login").headers
    secure = create_app({"DATABASE_URL": db_url, "TESTING": True, "SECRET_KEY": "test-secret",
                         "SESSION_COOKIE_SECURE": True})
    try:
        assert "max-age=" in secure.test_client().get("/login").headers["Strict-Transport-Security"]
    finally:
        secure.extensions["jzflow.engine"].dispose()


def test_hole7_authenticated_pages_are_not_stored(app: Flask, login: Callable[[str], FlaskClient]) -> None:
    client = login("window")
    assert client.get("/inbox").headers.get("Cache-Control") == "no-store"
    assert "no-store" not in (app.test_client().get("/login").headers.get("Cache-Control") or "")


def test_hole7_server_database_refuses_the_development_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JZFLOW_INSTANCE_DIR", str(tmp_path))
    monkeypatch.delenv("JZFLOW_SECRET_KEY", raising=False)
    server = "postgresql+psycopg://postgres@127.0.0.1:1/none"  # never connected to: refused before
    with pytest.raises(config.InsecureConfiguration, match="JZFLOW_SECRET_KEY"):
        create_app({"DATABASE_URL": server})
    monkeypatch.setenv("JZFLOW_SECRET_KEY", config.DEV_SECRET_KEY)
    with pytest.raises(config.InsecureConfiguration):
        create_app({"DATABASE_URL": server})


def test_hole7_embedded_default_keeps_its_own_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     sqlite_template: Path) -> None:
    monkeypatch.setenv("JZFLOW_INSTANCE_DIR", str(tmp_path))
    monkeypatch.delenv("JZFLOW_SECRET_KEY", raising=False)
    url = f"sqlite:///{tmp_path / 'jzflow.sqlite'}"
    (tmp_path / "jzflow.sqlite").write_bytes(sqlite_template.read_bytes())
    first, second = create_app({"DATABASE_URL": url}), create_app({"DATABASE_URL": url})
    try:
        key = first.config["SECRET_KEY"]
        assert len(key) >= 64 and key != config.DEV_SECRET_KEY and second.config["SECRET_KEY"] == key
        assert (tmp_path / "secret.key").read_text().strip() == key
    finally:
        first.extensions["jzflow.engine"].dispose()
        second.extensions["jzflow.engine"].dispose()


def test_every_failed_or_refused_login_is_logged_with_its_name_and_address(
        app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    """A failed login was recorded nowhere (only counted): 等保 asks for failures in the record. They go to the log —
    not the audit trail, whose writes only for existing accounts would tell usernames apart by timing, and whose
    chains a flood of guesses would fill. The name is shown as sent, cut and printable."""
    with caplog.at_level(logging.WARNING, logger="jzflow.auth"):
        assert _post_login(app.test_client(), "window", "wrong", address="10.3.0.1").status_code == 401
        assert _post_login(app.test_client(), "nobody\x1b[2J", "wrong", address="10.3.0.2").status_code == 401
        for i in range(11):  # the 11th is past the account's limit
            _post_login(app.test_client(), "fg", "wrong", address=f"10.4.0.{i}")
        assert _post_login(app.test_client(), "window", PASSWORD, address="10.3.0.3").status_code == 302
    lines = [(r.getMessage(), getattr(r, "username", None), getattr(r, "address", None), getattr(r, "outcome", None))
             for r in caplog.records if r.name == "jzflow.auth"]
    assert ("登录失败 (login failed): failed user='window' address=10.3.0.1", "window", "10.3.0.1", "failed") in lines
    assert ("登录失败 (login failed): failed user='nobody\ufffd[2J' address=10.3.0.2", "nobody\ufffd[2J", "10.3.0.2",
            "failed") in lines
    assert ("登录失败 (login failed): refused user='fg' address=10.4.0.10", "fg", "10.4.0.10",
            "refused") in lines  # past the limit: refused before the password is looked at, still logged
    assert all(r[2] != "10.3.0.3" for r in lines)  # a success is the audit trail's (auth.login)


def test_an_account_or_address_locked_by_failures_is_in_the_audit_trail_once_per_window(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """等保 asks that login failures be audited; single guesses stay in the log (a flood would fill the chains, and a
    write only for existing accounts would tell usernames apart), but a lock is an event an auditor must see: the
    failure that locks an account or an address is recorded once per window, for a name that exists or not alike."""
    monkeypatch.setenv("JZFLOW_LOGIN_ADDRESS_FAILURES", "6")

    def lockouts() -> list[tuple[str, str, Any]]:
        with db(app) as s:
            events = s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.lockout")
                               .order_by(AuditEvent.id)).all()
            assert audit.verify(s).ok
            return [(e.actor_name, e.object_id, e.after) for e in events]

    for i in range(12):  # the 10th locks the account; the 11th and 12th are refused unlooked-at: no second record
        _post_login(app.test_client(), "window", "wrong", address=f"10.5.0.{i}")
    assert lockouts() == [("system", "account", {"username": "window", "ip": "10.5.0.9", "minutes": 15})]
    for i in range(10):  # a name nobody has is recorded alike
        _post_login(app.test_client(), "nobody\x1b", "wrong", address=f"10.6.0.{i}")
    assert lockouts()[1:] == [("system", "account", {"username": "nobody\ufffd", "ip": "10.6.0.9", "minutes": 15})]
    for name in ("a1", "a2", "a3", "a4", "a5", "a6", "a7"):  # six failures lock the address
        _post_login(app.test_client(), name, "wrong", address="10.7.7.7")
    assert lockouts()[2:] == [("system", "address", {"username": "a6", "ip": "10.7.7.7", "minutes": 15})]
    assert _post_login(app.test_client(), "fg", PASSWORD, address="10.8.0.1").status_code == 302
    assert len(lockouts()) == 3  # a success records auth.login, never a lockout
