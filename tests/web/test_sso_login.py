"""统一身份认证登录 against a real OpenID Connect provider on loopback (tests/oidc_provider.py).

The whole code flow runs: our /login/sso → the provider's authorization endpoint (its login form, submitted
as the person would) → our callback → the provider's token endpoint → the ID token verified against the
provider's JWKS. Hostile: a wrong state, a replayed code, a token for another audience, an expired token, a
tampered signature, an unsigned token, an unknown unit, a deactivated user, an open redirect in `next`, and
password logins once SSO is on.
"""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import clock
from engine.audit.models import AuditEvent
from engine.org import leaving, oidc, sso_users
from engine.org.models import Membership, OrgUnit, Role, User
from tests.engine.conftest import at_once
from tests.oidc_provider import CLIENT_ID, Provider, configure
from tests.web.conftest import PASSWORD, app_on, csrf_of

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:authlib.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:oidc_provider_mock.*")]


@pytest.fixture
def sso_app(db_url: str, session: Session, review_org: dict[str, Any], provider: Provider,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    configure(monkeypatch, provider.issuer, JZFLOW_OIDC_ROLE_MAP="审批=reviewer, 领导=leader")
    yield from app_on(db_url, session)
    oidc.METADATA.clear()


def _start(client: FlaskClient, next_path: str = "/inbox") -> str:
    response = client.get("/login/sso", query_string={"next": next_path})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def _callback_path(location: str) -> str:
    parts = urlsplit(location)
    assert parts.path == "/login/sso/callback", location
    return f"{parts.path}?{parts.query}"


def _sign_in(client: FlaskClient, provider: Provider, sub: str, next_path: str = "/inbox") -> Any:
    location = provider.authorize(_start(client, next_path), sub)
    return client.get(_callback_path(location))


def _count(app: Flask, model: Any) -> int:
    with app.extensions["jzflow.sessionmaker"]() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _user(app: Flask, username: str) -> User | None:
    with app.extensions["jzflow.sessionmaker"]() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is not None:
            s.expunge(user)
        return user


def linked(app: Flask, username: str, sub: str) -> None:
    """An administrator links an existing account to its owner's subject (jzflow sso-link), before its first SSO login."""
    with app.extensions["jzflow.sessionmaker"]() as s:
        sso_users.link(s, oidc.load_settings(), username=username, subject=sub)
        s.commit()


def _logged_in(client: FlaskClient) -> bool:
    response = client.get("/inbox")
    return response.status_code == 200


def test_the_login_page_offers_sso_and_the_flow_creates_the_user_from_claims(sso_app: Flask,
                                                                              provider: Provider) -> None:
    provider.set_user("sub-zhou", {"preferred_username": "zhoujie", "name": "周杰", "email": "zj@example.cn",
                                   "unit": "fgj", "roles": ["审批", "不认识的角色"]})
    client = sso_app.test_client()
    assert "统一身份认证登录" in client.get("/login").get_data(as_text=True)
    authorize = _start(client, "/inbox?list=done")
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(provider.issuer + "/oauth2/authorize")
    assert query["client_id"] == [CLIENT_ID] and query["code_challenge_method"] == ["S256"]
    with client.session_transaction() as sess:  # PKCE: the challenge is the verifier kept in this browser only
        pending = sess["oidc_pending"]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(pending["verifier"].encode()).digest()).rstrip(b"=").decode()
    assert query["code_challenge"] == [challenge] and "verifier" not in authorize
    assert query["state"] == [pending["state"]] and query["nonce"] == [pending["nonce"]]
    response = client.get(_callback_path(provider.authorize(authorize, "sub-zhou")))
    assert response.status_code == 302 and response.headers["Location"] == "/inbox?list=done"
    assert _logged_in(client)
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        user = s.scalar(select(User).where(User.username == "zhoujie"))
        assert user is not None and user.display_name == "周杰" and user.source == "oidc"
        assert user.external_id == "sub-zhou" and user.password_hash is None
        units = s.scalars(select(OrgUnit.code).join(Membership, Membership.org_unit_id == OrgUnit.id)
                          .where(Membership.user_id == user.id)).all()
        roles = s.scalars(select(Role.code).join(Membership, Membership.role_id == Role.id)
                          .where(Membership.user_id == user.id)).all()
        assert units == ["fgj"] and roles == ["reviewer"]
        assert s.scalar(select(AuditEvent.action).where(AuditEvent.stream == f"user:{user.id}")
                        .order_by(AuditEvent.id.desc()).limit(1)) == "auth.login"


def test_a_second_login_updates_unit_and_roles_from_the_claims(sso_app: Flask, provider: Provider) -> None:
    with sso_app.extensions["jzflow.sessionmaker"]() as s:  # a role an administrator gave, not the provider's
        applicant = s.scalar(select(Role).where(Role.code == "applicant"))
        fg = s.scalar(select(User).where(User.username == "fg"))
        assert applicant is not None and fg is not None
        s.add(Membership(user_id=fg.id, role_id=applicant.id))
        s.commit()
    linked(sso_app, "fg", "sub-fg")
    provider.set_user("sub-fg", {"preferred_username": "fg", "name": "发改王五(新)", "unit": "zrzy", "roles": ["领导"]})
    assert _sign_in(sso_app.test_client(), provider, "sub-fg").status_code == 302
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        user = s.scalar(select(User).where(User.username == "fg"))
        assert user is not None and user.display_name == "发改王五(新)"
        codes = set(s.scalars(select(OrgUnit.code).join(Membership, Membership.org_unit_id == OrgUnit.id)
                              .where(Membership.user_id == user.id)))
        roles = set(s.scalars(select(Role.code).join(Membership, Membership.role_id == Role.id)
                              .where(Membership.user_id == user.id)))
        assert codes == {"zrzy"} and roles == {"leader", "applicant"}  # reviewer (mapped) gone, applicant kept


def test_the_sso_texts_have_english(sso_app: Flask, provider: Provider) -> None:
    client = sso_app.test_client()
    client.get("/lang/en")
    assert "Sign in with the city's unified identity" in client.get("/login").get_data(as_text=True)
    provider.set_user("sub-en", {"preferred_username": "englishy", "unit": "不存在的局"})
    assert "Single sign-on did not succeed" in _sign_in(client, provider, "sub-en").get_data(as_text=True)


def test_a_wrong_state_is_refused_and_logs_nobody_in(sso_app: Flask, provider: Provider) -> None:
    provider.set_user("sub-s", {"preferred_username": "statey", "unit": "fgj"})
    client = sso_app.test_client()
    location = provider.authorize(_start(client), "sub-s")
    forged = location.replace("state=", "state=x")
    response = client.get(_callback_path(forged))
    assert response.status_code == 400 and "state" in response.get_data(as_text=True)
    assert not _logged_in(client) and _user(sso_app, "statey") is None
    # the pending login is gone too: the genuine answer arriving after the forged one is refused as well
    assert client.get(_callback_path(location)).status_code == 400 and _user(sso_app, "statey") is None


def test_a_replayed_code_is_refused(sso_app: Flask, provider: Provider) -> None:
    provider.set_user("sub-r", {"preferred_username": "replayer", "unit": "fgj"})
    client = sso_app.test_client()
    location = provider.authorize(_start(client), "sub-r")
    with client.session_transaction() as sess:
        copied = dict(sess)  # an attacker with a copy of the cookie and the callback URL
    assert client.get(_callback_path(location)).status_code == 302
    again = client.get(_callback_path(location))  # the same browser: no pending login left
    assert again.status_code in (302, 400)
    thief = sso_app.test_client()
    with thief.session_transaction() as sess:
        sess.update(copied)
    response = thief.get(_callback_path(location))  # the state matches; the provider redeems a code only once
    assert response.status_code == 400 and "授权码" in response.get_data(as_text=True)
    assert not _logged_in(thief)


def test_an_expired_id_token_is_refused(sso_app: Flask, provider: Provider) -> None:
    provider.set_user("sub-e", {"preferred_username": "late", "unit": "fgj"})
    client = sso_app.test_client()
    location = provider.authorize(_start(client), "sub-e")
    clock.freeze(clock.now() + timedelta(hours=3))  # the provider's tokens live one hour
    response = client.get(_callback_path(location))
    assert response.status_code == 400 and "exp" in response.get_data(as_text=True)
    assert not _logged_in(client) and _user(sso_app, "late") is None


def test_an_unknown_unit_gets_a_chinese_refusal_and_nothing_is_created(sso_app: Flask, provider: Provider) -> None:
    provider.set_user("sub-u", {"preferred_username": "stranger", "name": "外单位", "unit": "不存在的局"})
    users, audit = _count(sso_app, User), _count(sso_app, AuditEvent)
    client = sso_app.test_client()
    response = _sign_in(client, provider, "sub-u")
    body = response.get_data(as_text=True)
    assert response.status_code == 403 and "尚未在本系统登记" in body and "不存在的局" in body
    assert _count(sso_app, User) == users and _count(sso_app, AuditEvent) == audit and not _logged_in(client)


def test_a_deactivated_user_is_refused(sso_app: Flask, provider: Provider) -> None:
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        user = s.scalar(select(User).where(User.username == "zr"))
        assert user is not None
        user.is_active = False
        s.commit()
    linked(sso_app, "zr", "sub-zr")
    provider.set_user("sub-zr", {"preferred_username": "zr", "unit": "zrzy"})
    client = sso_app.test_client()
    response = _sign_in(client, provider, "sub-zr")
    assert response.status_code == 403 and "已停用" in response.get_data(as_text=True)
    assert not _logged_in(client)


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "/in\r\nbox"])
def test_next_never_leaves_the_site(sso_app: Flask, provider: Provider, target: str) -> None:
    provider.set_user("sub-n", {"preferred_username": "nexty", "unit": "fgj"})
    response = _sign_in(sso_app.test_client(), provider, "sub-n", next_path=target)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/") and not location.startswith("//") and "evil" not in location


def test_a_next_too_long_for_the_pending_cookie_lands_on_the_inbox(sso_app: Flask, provider: Provider) -> None:
    """A `next` of several KB went into the pending login's cookie, which the browser then dropped (over 4 KB): that
    login could not finish. A path longer than MAX_NEXT is not kept; the login lands on the inbox."""
    provider.set_user("sub-long", {"preferred_username": "longnext", "unit": "fgj"})
    client = sso_app.test_client()
    response = _sign_in(client, provider, "sub-long", next_path="/inbox?q=" + "x" * 6000)
    assert response.status_code == 302 and response.headers["Location"] == "/inbox"
    assert _logged_in(client)
    kept = "/inbox?q=" + "x" * 100
    assert _sign_in(sso_app.test_client(), provider, "sub-long", next_path=kept).headers["Location"] == kept


def test_with_sso_on_only_listed_accounts_log_in_with_a_password(sso_app: Flask) -> None:
    client = sso_app.test_client()
    response = client.post("/login", data={"username": "fg", "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert response.status_code == 401 and "统一身份认证" in response.get_data(as_text=True)
    assert not _logged_in(client)
    admin = sso_app.test_client()
    response = admin.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": csrf_of(admin)})
    assert response.status_code == 302 and _logged_in(admin)


def test_the_emergency_account_is_named_in_any_case(sso_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """JZFLOW_OIDC_LOCAL_LOGINS="ADMIN" kept the provider away from "admin" (sso_users compares in any case) but also
    refused its password: the account kept for when single sign-on is down could not log in at all."""
    monkeypatch.setenv("JZFLOW_OIDC_LOCAL_LOGINS", "ADMIN")
    admin = sso_app.test_client()
    response = admin.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": csrf_of(admin)})
    assert response.status_code == 302 and _logged_in(admin)


def test_the_same_first_login_in_two_tabs_at_once_makes_one_account(sso_app: Flask, provider: Provider) -> None:
    provider.set_user("sub-twice", {"preferred_username": "twice", "name": "两次", "unit": "fgj"})
    clients = [sso_app.test_client(), sso_app.test_client()]
    paths = [_callback_path(provider.authorize(_start(c), "sub-twice")) for c in clients]
    answers: list[int] = [0, 0]

    def finish(i: int) -> None:
        answers[i] = clients[i].get(paths[i]).status_code

    assert at_once(2, finish) == [None, None]
    assert answers == [302, 302] and all(_logged_in(c) for c in clients)
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        assert s.scalar(select(func.count()).select_from(User).where(User.username == "twice")) == 1


def test_no_provider_speaks_for_the_emergency_account(sso_app: Flask, provider: Provider) -> None:
    provider.set_user("sub-admin", {"preferred_username": "admin", "unit": "fgj", "roles": ["领导"]})
    client = sso_app.test_client()
    response = _sign_in(client, provider, "sub-admin")
    assert response.status_code == 403 and "应急账号" in response.get_data(as_text=True) and not _logged_in(client)
    admin = _user(sso_app, "admin")
    assert admin is not None and admin.source is None


def test_a_username_the_provider_spells_in_other_letters_is_the_same_account(sso_app: Flask, provider: Provider,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory and an identity provider may disagree on case ("FG", "fg"): the provider's spelling named a new,
    second account beside the person's own, and "ADMIN" was not the emergency account it names."""
    monkeypatch.setenv("JZFLOW_OIDC_LINK", "username")  # the provider's usernames are trusted to link accounts
    provider.set_user("sub-fg", {"preferred_username": "FG", "name": "发改王五", "unit": "fgj"})
    client = sso_app.test_client()
    assert _sign_in(client, provider, "sub-fg").status_code == 302 and _logged_in(client)
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        assert s.scalars(select(User.username).where(func.lower(User.username) == "fg")).all() == ["fg"]
    provider.set_user("sub-admin", {"preferred_username": "ADMIN", "unit": "fgj", "roles": ["领导"]})
    other = sso_app.test_client()
    response = _sign_in(other, provider, "sub-admin")
    assert response.status_code == 403 and "应急账号" in response.get_data(as_text=True) and not _logged_in(other)
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        assert s.scalars(select(User.username).where(func.lower(User.username) == "admin")).all() == ["admin"]


def test_another_subject_with_the_same_username_is_not_the_account(sso_app: Flask, provider: Provider) -> None:
    """OpenID Connect names a person by `sub`; preferred_username may be reassigned or chosen by the person. A second
    subject whose token said the username of an account an earlier SSO login made was let into that account (and
    renamed it); now the account stays its subject's and the other is refused, with nothing written."""
    provider.set_user("sub-first", {"preferred_username": "samename", "name": "第一人", "unit": "fgj", "roles": ["领导"]})
    assert _sign_in(sso_app.test_client(), provider, "sub-first").status_code == 302
    provider.set_user("sub-second", {"preferred_username": "SameName", "name": "第二人", "unit": "zrzy"})
    intruder = sso_app.test_client()
    audit = _count(sso_app, AuditEvent)
    response = _sign_in(intruder, provider, "sub-second")
    assert response.status_code == 403 and "另一身份" in response.get_data(as_text=True) and not _logged_in(intruder)
    user = _user(sso_app, "samename")
    assert user is not None and user.external_id == "sub-first" and user.display_name == "第一人"
    assert _count(sso_app, AuditEvent) == audit
    owner = sso_app.test_client()
    assert _sign_in(owner, provider, "sub-first").status_code == 302 and _logged_in(owner)


def test_an_account_made_here_is_bound_to_the_subject_of_its_first_sso_login(sso_app: Flask, provider: Provider,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An account made here (source None) took whichever subject named its username, at every login; the first SSO
    login (where the provider's usernames are trusted) now binds it to that subject, in the audit trail, and a second
    subject naming it is refused."""
    monkeypatch.setenv("JZFLOW_OIDC_LINK", "username")
    provider.set_user("sub-window", {"preferred_username": "window", "name": "窗口李四", "unit": "window"})
    assert _sign_in(sso_app.test_client(), provider, "sub-window").status_code == 302
    user = _user(sso_app, "window")
    assert user is not None and (user.source, user.external_id, user.sso_subject) == ("oidc", "sub-window", "sub-window")
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "org.user.sso_update",
                                                   AuditEvent.stream == f"user:{user.id}")).one()
        assert (event.before["source"], event.after["source"]) == (None, "oidc")
    provider.set_user("sub-other", {"preferred_username": "window", "name": "冒名", "unit": "window"})
    intruder = sso_app.test_client()
    assert _sign_in(intruder, provider, "sub-other").status_code == 403 and not _logged_in(intruder)


def test_an_sso_session_ends_with_deactivation_like_any_other(sso_app: Flask, provider: Provider) -> None:
    provider.set_user("sub-epoch", {"preferred_username": "epochy", "unit": "fgj"})
    client = sso_app.test_client()
    assert _sign_in(client, provider, "sub-epoch").status_code == 302 and _logged_in(client)
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        user = s.scalar(select(User).where(User.username == "epochy"))
        assert user is not None
        leaving.deactivate_user(s, user_id=user.id)
        s.commit()
    assert not _logged_in(client)
    assert _sign_in(sso_app.test_client(), provider, "sub-epoch").status_code == 403  # and cannot come back by SSO


@pytest.mark.parametrize("query", ["code=%00&state=%00", "code=" + "x" * 5000 + "&state=y", "error=access_denied",
                                   "state=a&state=b&code=c", "code=a&state=%0d%0aSet-Cookie:x"])
def test_hostile_callbacks_are_refused_with_a_message(sso_app: Flask, provider: Provider, query: str) -> None:
    client = sso_app.test_client()
    _start(client)
    response = client.get("/login/sso/callback?" + query)
    body = response.get_data(as_text=True)  # (a NUL byte is refused by the app's input guard before the view)
    assert response.status_code == 400 and ("统一身份认证登录未成功" in body or "NUL" in body)
    assert not _logged_in(client)


def test_a_misconfigured_sso_stops_the_app_at_start(db_url: str, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_OIDC_ISSUER", "http://idp.example.cn")
    monkeypatch.setenv("JZFLOW_OIDC_CLIENT_ID", "x")
    with pytest.raises(oidc.SsoError, match="https"):
        next(app_on(db_url, session))


def test_a_provider_that_is_down_gets_a_message_not_a_500(db_url: str, session: Session, review_org: dict[str, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    monkeypatch.setenv("JZFLOW_OIDC_ISSUER", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("JZFLOW_OIDC_CLIENT_ID", CLIENT_ID)
    oidc.METADATA.clear()
    for app in app_on(db_url, session):
        client = app.test_client()
        response = client.get("/login/sso")
        assert response.status_code == 400 and "无法连接统一身份认证服务" in response.get_data(as_text=True)
        password = client.post("/login", data={"username": "admin", "password": PASSWORD,
                                                "csrf_token": csrf_of(client)})
        assert password.status_code == 302  # the emergency account still gets in


def test_a_callback_without_a_login_in_progress_is_refused(sso_app: Flask) -> None:
    response = sso_app.test_client().get("/login/sso/callback?code=abc&state=def")
    assert response.status_code == 400 and "重新登录" in response.get_data(as_text=True)


def test_sso_routes_are_absent_while_sso_is_off(app: Flask) -> None:
    client = app.test_client()
    assert "统一身份认证登录" not in client.get("/login").get_data(as_text=True)
    assert client.get("/login/sso").status_code == 404
    assert client.get("/login/sso/callback?code=a&state=b").status_code == 404


# --- the ID token itself, with tokens the real provider signed -------------------------------------------------

def _settings(provider: Provider, client_id: str = CLIENT_ID) -> oidc.Settings:
    return oidc.Settings(issuer=provider.issuer, client_id=client_id)


def test_a_genuine_token_verifies(provider: Provider) -> None:
    oidc.METADATA.clear()
    token = provider.id_token(sub="v1", client_id=CLIENT_ID, nonce="n-1")
    assert oidc.verify_id_token(_settings(provider), token, nonce="n-1")["sub"] == "v1"


def test_a_token_for_another_audience_is_refused(provider: Provider) -> None:
    token = provider.id_token(sub="v1", client_id="another-app", nonce="n-1")
    with pytest.raises(oidc.SsoError, match="aud"):
        oidc.verify_id_token(_settings(provider), token, nonce="n-1")


def test_a_token_another_party_was_authorised_for_is_refused_even_with_our_audience_alone(provider: Provider) -> None:
    # OpenID Connect Core 3.1.3.7: when azp is present it must be our client id, whatever aud holds.
    def signed(**claims: object) -> str:
        return provider.logout_token(client_id=CLIENT_ID, sub="v1", nonce="n-1", events=None, jti=None, **claims)

    oidc.METADATA.clear()
    with pytest.raises(oidc.SsoError, match="azp"):
        oidc.verify_id_token(_settings(provider), signed(azp="another-app"), nonce="n-1")
    with pytest.raises(oidc.SsoError, match="azp"):
        oidc.verify_id_token(_settings(provider), signed(aud=[CLIENT_ID, "another-app"]), nonce="n-1")
    assert oidc.verify_id_token(_settings(provider), signed(azp=CLIENT_ID), nonce="n-1")["sub"] == "v1"
    assert oidc.verify_id_token(_settings(provider), signed(), nonce="n-1")["sub"] == "v1"


def test_a_tampered_token_is_refused(provider: Provider) -> None:
    token = provider.id_token(sub="v1", client_id=CLIENT_ID, nonce="n-1")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["preferred_username"] = "admin"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    for forged in (f"{header}.{forged_payload}.{signature}", f"{header}.{payload}.{flipped}"):
        with pytest.raises(oidc.SsoError, match="签名"):
            oidc.verify_id_token(_settings(provider), forged, nonce="n-1")
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    with pytest.raises(oidc.SsoError):
        oidc.verify_id_token(_settings(provider), f"{unsigned}.{payload}.", nonce="n-1")


def test_a_token_with_another_nonce_or_from_another_issuer_is_refused(provider: Provider) -> None:
    token = provider.id_token(sub="v1", client_id=CLIENT_ID, nonce="n-1")
    with pytest.raises(oidc.SsoError, match="nonce"):
        oidc.verify_id_token(_settings(provider), token, nonce="n-2")
    expired_now = int(clock.now().timestamp()) + 2 * 3600
    with pytest.raises(oidc.SsoError, match="exp"):
        oidc.verify_id_token(_settings(provider), token, nonce="n-1", now=lambda: expired_now)


def test_settings_refuse_plain_http_off_loopback_and_a_missing_client_id() -> None:
    with pytest.raises(oidc.SsoError, match="https"):
        oidc.load_settings({"JZFLOW_OIDC_ISSUER": "http://idp.example.cn", "JZFLOW_OIDC_CLIENT_ID": "x"})
    with pytest.raises(oidc.SsoError, match="CLIENT_ID"):
        oidc.load_settings({"JZFLOW_OIDC_ISSUER": "https://idp.example.cn"})
    settings = oidc.load_settings({"JZFLOW_OIDC_ISSUER": "https://idp.example.cn/", "JZFLOW_OIDC_CLIENT_ID": "x",
                                   "JZFLOW_OIDC_LOCAL_LOGINS": "admin, ops", "JZFLOW_OIDC_ROLE_MAP": "a=b,c=d"})
    assert settings.issuer == "https://idp.example.cn" and settings.local_logins == ("admin", "ops")
    assert dict(settings.role_map) == {"a": "b", "c": "d"} and not settings.allows_password("fg")
    assert oidc.load_settings({}).allows_password("fg")


def test_a_temporary_password_does_not_trap_a_single_sign_on_login(sso_app: Flask, provider: Provider) -> None:
    """An administrator reset the password of a person who logs in by SSO (管理 → 编辑人员): the SSO login is not a
    login with that password, and is not sent to 修改密码 (which asks for the current password they never typed)."""
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        fg = s.scalar(select(User).where(User.username == "fg"))
        assert fg is not None
        fg.must_change_password = True
        s.commit()
    linked(sso_app, "fg", "sub-fg")
    provider.set_user("sub-fg", {"preferred_username": "fg", "name": "发改王五", "unit": "fgj"})
    client = sso_app.test_client()
    assert _sign_in(client, provider, "sub-fg").status_code == 302
    assert client.get("/inbox").status_code == 200
    # Nor kept from API tokens: with SSO on, that password opens no login of theirs, so it is no way in.
    made = client.post("/admin/tokens", data={"name": "接口", "csrf_token": csrf_of(client, "/admin/tokens")})
    assert made.status_code == 201, made.get_data(as_text=True)[:400]
