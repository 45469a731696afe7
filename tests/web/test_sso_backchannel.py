"""统一身份认证后台退出: OpenID Connect Back-Channel Logout 1.0 against the real provider on loopback.

Logging out, or being disabled, at the city's identity provider did not end a jzflow session: it went on for up to
eight hours. The provider now POSTs a signed logout token to /login/sso/backchannel-logout (server to server: no
session, no CSRF token) and the person's browser sessions end — the one the token's `sid` names when the login
recorded it, else every session of the account bound to its `sub`; API tokens are not sessions and stay. Hostile:
a replayed token, the wrong audience or issuer, no event, a nonce (an ID token passed off as a logout token), an
unsigned token, HS256 signed with the public key, a stale or future `iat`, garbage and oversized bodies: 400 with
the claim named, and nothing changes.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import RSAKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from engine import clock
from engine.audit.models import AuditEvent
from engine.org import core, oidc
from engine.org.models import User
from engine.org.sso_models import SsoLogoutToken, SsoSession
from tests.engine.conftest import at_once
from tests.oidc_provider import CLIENT_ID, LOGOUT_EVENT, Provider, configure, running
from tests.web.conftest import app_on, csrf_of
from tests.web.flows import Api, statements, token_for
from tests.web.test_sso_login import _logged_in, _sign_in, linked
from web.auth.sso import LOGOUT_HINT
from web.common import SSO_SESSION

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:authlib.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:oidc_provider_mock.*")]
URL = "/login/sso/backchannel-logout"


def _signed_in(app: Flask, provider: Provider, sub: str, sid: str | None = None) -> FlaskClient:
    claims = {"preferred_username": f"u-{sub}", "name": "后台退出", "unit": "fgj", **({"sid": sid} if sid else {})}
    provider.set_user(sub, claims)
    client = app.test_client()
    assert _sign_in(client, provider, sub).status_code == 302 and _logged_in(client)
    return client


def _sent_to_login(client: FlaskClient) -> bool:
    response = client.get("/inbox")
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def _deliver(app: Flask, token: str) -> Any:
    """POST the token as the provider does: a form body, no cookie, no CSRF token."""
    return app.test_client().post(URL, data={"logout_token": token})


def _state(app: Flask) -> dict[str, Any]:
    with app.extensions["jzflow.sessionmaker"]() as s:
        return {"epochs": s.execute(select(User.id, User.session_epoch).order_by(User.id)).all(),
                "audit": s.scalar(select(func.count()).select_from(AuditEvent)),
                "tokens": s.scalar(select(func.count()).select_from(SsoLogoutToken)),
                "sessions": s.execute(select(SsoSession.id, SsoSession.ended_at).order_by(SsoSession.id)).all()}


def test_a_logout_token_ends_the_browser_session_and_not_the_api_token(sso_app: Flask, provider: Provider) -> None:
    client = _signed_in(sso_app, provider, "sub-bc")
    api = Api(sso_app, token_for(sso_app, "u-sub-bc"))
    assert api.get("/api/tasks").status_code == 200
    response = _deliver(sso_app, provider.logout_token(client_id=CLIENT_ID, sub="sub-bc"))
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers
    assert _sent_to_login(client)  # the next request of the browser goes to the login page
    assert api.get("/api/tasks").status_code == 200  # a token is not a session: the provider does not speak for it
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.backchannel_logout")).one()
        assert event.after == {"sid": None, "sessions": "all"}
    assert _logged_in(_signed_in(sso_app, provider, "sub-bc"))  # and a new login is a new session


def test_a_token_for_another_subject_ends_only_that_persons_sessions(sso_app: Flask, provider: Provider) -> None:
    mine, other = _signed_in(sso_app, provider, "sub-mine"), _signed_in(sso_app, provider, "sub-other")
    assert _deliver(sso_app, provider.logout_token(client_id=CLIENT_ID, sub="sub-other")).status_code == 200
    assert _sent_to_login(other) and _logged_in(mine)
    nobody = _deliver(sso_app, provider.logout_token(client_id=CLIENT_ID, sub="sub-never-logged-in"))
    assert nobody.status_code == 200 and _logged_in(mine)  # nobody here to log out: done


def test_the_sid_of_a_login_ends_that_session_only(sso_app: Flask, provider: Provider) -> None:
    office = _signed_in(sso_app, provider, "sub-two", sid="sid-office")
    phone = _signed_in(sso_app, provider, "sub-two", sid="sid-phone")
    token = provider.logout_token(client_id=CLIENT_ID, sub="sub-two", sid="sid-office")
    assert _deliver(sso_app, token).status_code == 200
    assert _sent_to_login(office) and _logged_in(phone)
    # a sid alone (backchannel_logout_session_required without sub) names the session too
    assert _deliver(sso_app, provider.logout_token(client_id=CLIENT_ID, sid="sid-phone")).status_code == 200
    assert _sent_to_login(phone)


def test_a_sid_with_another_subject_ends_nothing(sso_app: Flask, provider: Provider) -> None:
    office = _signed_in(sso_app, provider, "sub-sid", sid="sid-x")
    assert _deliver(sso_app, provider.logout_token(client_id=CLIENT_ID, sub="sub-else", sid="sid-x")).status_code == 200
    assert _logged_in(office)


def _directory_user(app: Flask, sub: str, *, password: str | None = None) -> int:
    """An account the LDAP sync made (source "ldap", external_id its DN), linked by an administrator to its owner's
    subject, who then signs in to it by SSO: it stays the directory's (engine/org/sso_users.py)."""
    with app.extensions["jzflow.sessionmaker"]() as s:
        user = core.add_user(s, username=f"u-{sub}", display_name="目录用户", unit_codes=["fgj"])
        user.source, user.external_id = "ldap", f"uid=u-{sub},ou=people,dc=jiaozhou,dc=gov,dc=cn"
        user.password_hash = generate_password_hash(password) if password else None
        s.commit()
    linked(app, f"u-{sub}", sub)
    return user.id


def test_a_logout_token_ends_the_session_of_a_directory_synced_account(sso_app: Flask, provider: Provider) -> None:
    """The sub is the provider's, not the account's external_id (a DN): the login records it, the token finds it."""
    user_id = _directory_user(sso_app, "sub-dir")
    office = _signed_in(sso_app, provider, "sub-dir", sid="sid-dir-office")
    phone = _signed_in(sso_app, provider, "sub-dir", sid="sid-dir-phone")
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        assert s.get(User, user_id).source == "ldap"  # type: ignore[union-attr]
    token = provider.logout_token(client_id=CLIENT_ID, sub="sub-dir", sid="sid-dir-office")
    assert _deliver(sso_app, token).status_code == 200
    assert _sent_to_login(office) and _logged_in(phone)  # the sid's login only
    laptop = _signed_in(sso_app, provider, "sub-dir")  # an ID token without sid
    assert _deliver(sso_app, provider.logout_token(client_id=CLIENT_ID, sub="sub-dir")).status_code == 200
    assert _sent_to_login(phone) and _sent_to_login(laptop)  # a sub alone: every session of the person
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.backchannel_logout")
                           .order_by(AuditEvent.id)).all()
        assert [(e.object_id, e.after) for e in events] == [(str(user_id), {"sid": "sid-dir-office", "sessions": 1}),
                                                           (str(user_id), {"sid": None, "sessions": "all"})]


def test_a_sid_of_a_directory_synced_account_with_another_subject_ends_nothing(sso_app: Flask,
                                                                               provider: Provider) -> None:
    _directory_user(sso_app, "sub-dir2")
    client = _signed_in(sso_app, provider, "sub-dir2", sid="sid-dir2")
    assert _deliver(sso_app, provider.logout_token(client_id=CLIENT_ID, sub="sub-else", sid="sid-dir2")
                    ).status_code == 200
    assert _logged_in(client)


def _reads(app: Flask, client: FlaskClient, path: str) -> list[str]:
    with statements(app) as sent:
        assert client.get(path).status_code == 200
    return sent


def test_a_request_of_an_sso_login_reads_no_more_than_one_of_a_password_login(sso_app: Flask,
                                                                             provider: Provider) -> None:
    """The user loader checks the login's record in the same read as the user and what they hold."""
    client = _signed_in(sso_app, provider, "sub-reads", sid="sid-reads")
    _reads(sso_app, client, "/inbox")  # warm: caches of the first request
    sso = _reads(sso_app, client, "/inbox")
    with client.session_transaction() as cookie:
        cookie.pop(SSO_SESSION)
        cookie.pop(LOGOUT_HINT)  # the same person and page, as a password login sees it
    password = _reads(sso_app, client, "/inbox")
    assert len(sso) == len(password), [s for s in sso if s not in password]
    assert any("sso_session" in s for s in sso) and not any("sso_session" in s for s in password)


def test_a_password_change_keeps_the_sso_login_the_provider_can_end(sso_app: Flask, provider: Provider) -> None:
    _directory_user(sso_app, "sub-pw", password="old-password-1")
    client = _signed_in(sso_app, provider, "sub-pw", sid="sid-pw")
    response = client.post("/account/password", data={
        "csrf_token": csrf_of(client, "/account/password"), "current_password": "old-password-1",
        "new_password": "new-password-2", "confirm_password": "new-password-2"})
    assert response.status_code == 302 and _logged_in(client)
    with client.session_transaction() as cookie:
        assert SSO_SESSION in cookie and LOGOUT_HINT in cookie  # /logout still signs out at the provider too
    assert _deliver(sso_app, provider.logout_token(client_id=CLIENT_ID, sid="sid-pw")).status_code == 200
    assert _sent_to_login(client)


def test_a_session_that_recorded_a_sid_ends_with_the_session_lifetime(sso_app: Flask, provider: Provider) -> None:
    client = _signed_in(sso_app, provider, "sub-life", sid="sid-life")
    clock.freeze(clock.now() + timedelta(hours=8, minutes=1))  # its record is kept for the session's eight hours
    assert _sent_to_login(client)


def test_a_replayed_token_is_refused_and_changes_nothing(sso_app: Flask, provider: Provider) -> None:
    token = provider.logout_token(client_id=CLIENT_ID, sub="sub-replay")
    _signed_in(sso_app, provider, "sub-replay")
    assert _deliver(sso_app, token).status_code == 200
    again = _signed_in(sso_app, provider, "sub-replay")  # logged in again after the provider's logout
    before = _state(sso_app)
    response = _deliver(sso_app, token)
    assert response.status_code == 400 and response.get_json() == {"error": "invalid_request", "claim": "jti"}
    assert _logged_in(again) and _state(sso_app) == before


def test_the_same_token_twice_at_once_is_taken_once(sso_app: Flask, provider: Provider) -> None:
    _signed_in(sso_app, provider, "sub-race")
    token = provider.logout_token(client_id=CLIENT_ID, sub="sub-race")
    codes = [0, 0]

    def send(i: int) -> None:
        codes[i] = _deliver(sso_app, token).status_code

    assert at_once(2, send) == [None, None]
    assert sorted(codes) == [200, 400]


def _segment(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unsigned(provider: Provider, **claims: Any) -> str:
    genuine = provider.logout_token(client_id=CLIENT_ID, sub="sub-victim", **claims)
    return f"{_segment({'alg': 'none', 'typ': 'logout+jwt'})}.{genuine.split('.')[1]}."


def _hs256_with_the_public_key(provider: Provider) -> str:
    """The algorithm confusion attack: HMAC "signed" with the provider's public key, which anybody has."""
    jwk = provider.public_jwk()
    pem = RSAKey.import_key(jwk).get_op_key("verify").public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    genuine = provider.logout_token(client_id=CLIENT_ID, sub="sub-victim")
    signing_input = f"{_segment({'alg': 'HS256', 'kid': jwk['kid']})}.{genuine.split('.')[1]}"
    signature = base64.urlsafe_b64encode(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    return f"{signing_input}.{signature.rstrip(b'=').decode()}"


def _tampered(provider: Provider) -> str:
    header, _payload, signature = provider.logout_token(client_id=CLIENT_ID, sub="sub-somebody").split(".")
    return f"{header}.{provider.logout_token(client_id=CLIENT_ID, sub='sub-victim').split('.')[1]}.{signature}"


HOSTILE: dict[str, tuple[str, Any]] = {
    "wrong_audience": ("aud", lambda p: p.logout_token(client_id="another-app", sub="sub-victim")),
    "wrong_issuer": ("iss", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim", iss="https://idp.evil")),
    "no_events": ("events", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim", events=None)),
    "another_event": ("events", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim",
                                                         events={"http://schemas.openid.net/event/other": {}})),
    "event_not_an_object": ("events", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim",
                                                               events={LOGOUT_EVENT: "yes"})),
    "nonce_present": ("nonce", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim", nonce="n")),
    "alg_none": ("alg", _unsigned),
    "hs256_with_public_key": ("alg", _hs256_with_the_public_key),
    "tampered": ("signature", _tampered),
    "access_token_type": ("typ", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim",
                                                          header={"typ": "at+jwt"})),
    "stale_iat": ("iat", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim", iat=int(
        clock.now().timestamp()) - 3600)),
    "future_iat": ("iat", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim", iat=int(
        clock.now().timestamp()) + 3600, exp=int(clock.now().timestamp()) + 7200)),
    "no_iat": ("iat", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim", iat=None)),
    "expired": ("exp", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim", exp=int(
        clock.now().timestamp()) - 300)),
    "no_jti": ("jti", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim", jti=None)),
    "jti_not_a_string": ("jti", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim", jti=7)),
    "neither_sub_nor_sid": ("sub", lambda p: p.logout_token(client_id=CLIENT_ID)),
    "sid_not_a_string": ("sid", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim", sid=["a"])),
    "garbage": ("logout_token", lambda p: "garbage"),
    "three_garbage_parts": ("logout_token", lambda p: "a.b.c"),
    "oversized": ("logout_token", lambda p: p.logout_token(client_id=CLIENT_ID, sub="sub-victim",
                                                           padding="x" * 100_000)),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_bad_logout_token_is_refused_naming_the_claim_and_changes_nothing(sso_app: Flask, provider: Provider,
                                                                           case: str) -> None:
    victim = _signed_in(sso_app, provider, "sub-victim")
    claim, make = HOSTILE[case]
    token = make(provider)
    before = _state(sso_app)
    response = _deliver(sso_app, token)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json() == {"error": "invalid_request", "claim": claim}
    assert response.headers["Cache-Control"] == "no-store"
    assert _logged_in(victim) and _state(sso_app) == before


@pytest.mark.parametrize("body", [
    {"data": {}},
    {"data": {"logout_token": ["one", "two"]}},
    {"json": {"logout_token": "x.y.z"}},
    {"data": b"\xff\xfe" * 40, "content_type": "application/x-www-form-urlencoded"},
    {"data": {"logout_token": "x" * 30_000}},
    {"data": {"logout_token": "", "padding": "x" * 2_000_000}},
])
def test_a_body_that_carries_no_single_token_is_refused(sso_app: Flask, provider: Provider,
                                                        body: dict[str, Any]) -> None:
    victim = _signed_in(sso_app, provider, "sub-victim")
    before = _state(sso_app)
    response = sso_app.test_client().post(URL, **body)
    assert response.status_code == 400 and response.get_json() == {"error": "invalid_request", "claim": "logout_token"}
    assert _logged_in(victim) and _state(sso_app) == before


def test_a_signature_by_another_key_is_refused_and_asks_the_provider_at_most_once_a_minute(
        sso_app: Flask, provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key the provider does not publish makes jzflow fetch the key set again (rotation), but not for every
    request a stranger sends: the endpoint is public."""
    victim = _signed_in(sso_app, provider, "sub-victim")
    with running() as stranger:
        forged = [stranger.logout_token(client_id=CLIENT_ID, sub="sub-victim", iss=provider.issuer) for _ in range(3)]
    fetched: list[str] = []
    real_get = oidc.requests.get

    def counting_get(url: str, **kwargs: Any) -> Any:
        fetched.append(url)
        return real_get(url, **kwargs)

    monkeypatch.setattr(oidc.requests, "get", counting_get)
    for token in forged:
        response = _deliver(sso_app, token)
        assert response.status_code == 400 and response.get_json()["claim"] == "signature"
    assert len([u for u in fetched if u.endswith("/jwks")]) <= 1
    assert _logged_in(victim)


def test_the_endpoint_is_absent_while_sso_is_off(app: Flask) -> None:
    response = app.test_client().post(URL, data={"logout_token": "a.b.c"})
    assert response.status_code == 404


def test_the_operations_guide_says_what_to_register() -> None:
    from pathlib import Path
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "backchannel_logout_uri" in guide and URL in guide and "backchannel_logout_session_required" in guide


def test_the_input_sweep_with_sso_on_gets_400_with_a_message_and_changes_nothing(sso_app: Flask,
                                                                                provider: Provider) -> None:
    """The malformed-input sweep (test_malformed_input_sweep.py) meets this route with SSO off (404); here with it on."""
    from tests.web.test_malformed_input_sweep import DEEP, LONE, MIXED, VARIANTS
    victim = _signed_in(sso_app, provider, "sub-victim")
    before = _state(sso_app)
    client = sso_app.test_client()
    sent = [client.post(URL, data={"logout_token": value}) for value in [*VARIANTS.values(), *MIXED]]
    sent += [client.post(URL, data=DEEP, content_type="application/json"),
             client.post(URL, data=json.dumps({"logout_token": LONE}), content_type="application/json"),
             client.post(URL, query_string={"logout_token": "x\x00y"})]
    for response in sent:
        assert response.status_code == 400 and response.get_data(as_text=True).strip()
    assert _logged_in(victim) and _state(sso_app) == before


def test_a_provider_that_cannot_be_reached_for_its_keys_ends_nothing(db_url: str, session: Session,
                                                                      review_org: dict[str, Any],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with running() as gone:
        configure(monkeypatch, gone.issuer)
        apps = app_on(db_url, session)
        app = next(apps)
        client = _signed_in(app, gone, "sub-gone")
        token = gone.logout_token(client_id=CLIENT_ID, sub="sub-gone")
    oidc.METADATA.clear()  # nothing cached: the keys have to be fetched, and the provider is gone
    before = _state(app)
    response = _deliver(app, token)
    assert response.status_code == 400 and response.get_json() == {"error": "temporarily_unavailable"}
    assert _logged_in(client) and _state(app) == before
    for _rest in apps:
        pass
