"""统一身份认证退出 (RP-initiated logout) against the real OpenID Connect provider on loopback.

After an OIDC login, POST /logout ends the local session and sends the browser to the provider's
end_session_endpoint with the login's ID token as `id_token_hint`, `client_id` and the configured login page as
`post_logout_redirect_uri`; the provider confirms and sends it back. Hostile: a forged, foreign or absent
token in the session, an open redirect through `next` / `post_logout_redirect_uri`, a forged `id_token_hint`
in the request, logout by GET, a provider without end_session_endpoint, and the provider down at logout.
"""
from __future__ import annotations

import base64
import json
import zlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from engine.org import oidc, oidc_logout
from tests.oidc_provider import CLIENT_ID, Provider, configure, running
from tests.web.conftest import PASSWORD, app_on, csrf_of
from tests.web.test_sso_login import _logged_in, _sign_in

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:authlib.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:oidc_provider_mock.*")]


def _signed_in(client: FlaskClient, provider: Provider, sub: str = "sub-out") -> None:
    provider.set_user(sub, {"preferred_username": f"user-{sub}", "name": "退出测试", "email": "out@example.cn",
                            "unit": "fgj"})
    assert _sign_in(client, provider, sub).status_code == 302 and _logged_in(client)


def _logout(client: FlaskClient, query: str = "", **form: str) -> Any:
    return client.post("/logout" + query, data={"csrf_token": csrf_of(client, "/inbox"), **form})


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def _cookie_text(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    data = cookie.value.split(".")[1] if cookie.value.startswith(".") else cookie.value.split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return (zlib.decompress(raw) if cookie.value.startswith(".") else raw).decode()


def test_logout_ends_the_providers_session_too(sso_app: Flask, provider: Provider) -> None:
    client = sso_app.test_client()
    _signed_in(client, provider)
    text = _cookie_text(client)  # the browser holds the token sealed: no claim, no token readable
    assert "out@example.cn" not in text and "sub-out" not in text
    response = _logout(client)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith(provider.issuer + "/oauth2/end_session?")
    query = parse_qs(urlsplit(location).query)
    assert query["client_id"] == [CLIENT_ID] and query["post_logout_redirect_uri"] == ["http://localhost/login"]
    hint = query["id_token_hint"][0]
    claims = _claims(hint)
    assert claims["sub"] == "sub-out" and claims["aud"] in (CLIENT_ID, [CLIENT_ID])
    assert hint.split(".")[1] not in text and hint.split(".")[2] not in text  # it was never readable in the cookie
    assert not _logged_in(client)  # the local session is over before the browser leaves
    assert provider.end_session(location) == "http://localhost/login"  # and the provider sends it back
    assert "已退出登录" in client.get("/login").get_data(as_text=True)


def test_the_way_back_is_the_configured_public_address(sso_app: Flask, provider: Provider,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    client = sso_app.test_client()
    _signed_in(client, provider)
    monkeypatch.setenv("JZFLOW_OIDC_REDIRECT_URL", "https://jz.example.cn/flow/login/sso/callback")
    query = parse_qs(urlsplit(_logout(client).headers["Location"]).query)
    assert query["post_logout_redirect_uri"] == ["https://jz.example.cn/flow/login"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
def test_no_request_parameter_chooses_the_way_back_or_the_hint(sso_app: Flask, provider: Provider, target: str) -> None:
    client = sso_app.test_client()
    _signed_in(client, provider)
    hostile = f"?next={target}&post_logout_redirect_uri={target}&id_token_hint=forged"
    response = _logout(client, hostile, next=target, post_logout_redirect_uri=target, id_token_hint="forged.x.y")
    location = response.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert response.status_code == 303 and "evil" not in location and "forged" not in location
    assert query["post_logout_redirect_uri"] == ["http://localhost/login"] and _claims(query["id_token_hint"][0])


def _other_seal(app: Flask, provider: Provider) -> dict[str, str]:
    genuine = provider.id_token(sub="sub-other", client_id=CLIENT_ID, nonce="n")
    return {"garbage": "not-a-jwe", "raw_token": genuine,
            "another_users": oidc_logout.seal(genuine, user_id=-1, secret=app.secret_key or "") or "",
            "another_key": oidc_logout.seal(genuine, user_id=1, secret="another secret") or "", "absent": ""}


@pytest.mark.parametrize("kind", ["garbage", "raw_token", "another_users", "another_key", "absent"])
def test_a_forged_or_absent_token_is_never_a_hint(sso_app: Flask, provider: Provider, kind: str) -> None:
    client = sso_app.test_client()
    _signed_in(client, provider)
    forged = _other_seal(sso_app, provider)[kind]
    with client.session_transaction() as sess:  # (a signed cookie: only someone with the app's secret could)
        sess["oidc_logout"] = forged
    response = _logout(client)
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert response.status_code == 303 and "id_token_hint" not in query  # the provider asks the person instead
    assert query["client_id"] == [CLIENT_ID] and not _logged_in(client)


def test_logout_by_get_is_refused(sso_app: Flask, provider: Provider) -> None:
    client = sso_app.test_client()
    _signed_in(client, provider)
    assert client.get("/logout").status_code == 405 and _logged_in(client)
    assert client.post("/logout").status_code == 400 and _logged_in(client)  # no CSRF token


def test_a_password_login_gets_the_local_logout(sso_app: Flask) -> None:
    admin = sso_app.test_client()
    admin.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": csrf_of(admin)})
    assert _logged_in(admin)
    response = _logout(admin)
    assert response.status_code == 302 and response.headers["Location"] == "/login" and not _logged_in(admin)


def test_every_page_lets_the_logout_form_reach_the_provider(sso_app: Flask, provider: Provider) -> None:
    client = sso_app.test_client()
    _signed_in(client, provider)
    policy = client.get("/inbox").headers["Content-Security-Policy"]
    assert f"form-action 'self' {provider.issuer};" in policy and "default-src 'self'" in policy


def test_a_provider_without_end_session_gets_the_local_logout(db_url: str, session: Session,
                                                              review_org: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with running(end_session=False) as plain:
        configure(monkeypatch, plain.issuer)
        for app in app_on(db_url, session):
            client = app.test_client()
            _signed_in(client, plain, "sub-plain")
            response = _logout(client)
            assert response.status_code == 302 and response.headers["Location"] == "/login"
            assert not _logged_in(client)


def test_the_provider_down_at_logout_still_logs_out_locally(db_url: str, session: Session, review_org: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with running() as gone:
        configure(monkeypatch, gone.issuer)
        apps = app_on(db_url, session)
        app = next(apps)
        client, english = app.test_client(), app.test_client()
        _signed_in(client, gone, "sub-gone")
        english.get("/lang/en")
        _signed_in(english, gone, "sub-gone-en")
    oidc.METADATA.clear()  # nothing cached: the provider has to be asked, and it is gone
    response = _logout(client)
    assert response.status_code == 302 and response.headers["Location"] == "/login" and not _logged_in(client)
    page = client.get("/login").get_data(as_text=True)
    assert "已退出登录" in page and "无法连接统一身份认证服务" in page
    assert _logout(english).headers["Location"] == "/login"
    assert "the unified identity service could not be reached" in english.get("/login").get_data(as_text=True)
    for _rest in apps:
        pass


def test_the_seal_is_bound_to_user_and_secret_and_size() -> None:
    sealed = oidc_logout.seal("a.b.c", user_id=7, secret="k")
    assert sealed and oidc_logout.unseal(sealed, user_id=7, secret="k") == "a.b.c"
    assert oidc_logout.unseal(sealed, user_id=8, secret="k") is None
    assert oidc_logout.unseal(sealed, user_id=7, secret="k2") is None
    assert oidc_logout.unseal(sealed[:-3] + "AAA", user_id=7, secret="k") is None
    assert oidc_logout.seal("x" * 3000 + "".join(chr(0x4e00 + i) for i in range(3000)), user_id=7, secret="k") is None
