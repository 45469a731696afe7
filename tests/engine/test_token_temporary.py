"""A token of a person whose password is a temporary one an administrator set: refused by the token check itself
(tokens.authenticate_scoped), whatever set the mark — a reset from before resets revoked tokens, a seed, a script —
and revoked when they change it. Not while single sign-on keeps that password from opening a login."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from engine import org
from engine.audit.models import AuditEvent
from engine.errors import PasswordChangeRequired
from engine.org import oidc, tokens
from engine.org.actors import Actor, actor_for
from engine.org.models import User
from engine.org.token_models import ApiToken


def _user(s: Session, username: str) -> User:
    found = s.scalar(select(User).where(User.username == username))
    assert found is not None, username
    return found


def _temporary(s: Session, username: str) -> None:
    """Mark a password temporary the way a reset before `bda9686` left it: the mark set, the tokens live."""
    s.execute(update(User).where(User.username == username).values(must_change_password=True))
    s.commit()


def _sso_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"JZFLOW_OIDC_ISSUER": "https://sso.example.test", "JZFLOW_OIDC_CLIENT_ID": "jzflow",
                        "JZFLOW_OIDC_LOCAL_LOGINS": "admin"}.items():
        monkeypatch.setenv(name, value)
    oidc.METADATA.clear()


def test_a_live_token_is_refused_while_its_owners_password_is_temporary(
        session: Session, review_org: dict[str, Actor]) -> None:
    fg, boss = tokens.issue(session, _user(session, "fg"), "接口"), tokens.issue(session, _user(session, "boss"), "领导")
    session.commit()
    _temporary(session, "fg")
    with pytest.raises(PasswordChangeRequired) as refused:
        tokens.authenticate_scoped(session, fg)
    assert refused.value.http_status == 401 and refused.value.details["username"] == "fg"
    assert "修改密码" in refused.value.message and "change the password" in refused.value.message
    used = session.scalar(select(ApiToken.last_used_at).where(ApiToken.prefix == fg[:12]))
    assert tokens.authenticate(session, boss) == review_org["boss"]  # another's token lives on
    session.commit()
    assert session.scalar(select(ApiToken.last_used_at).where(ApiToken.prefix == fg[:12])) == used  # not "used"


def test_changing_the_temporary_password_revokes_the_tokens_it_held_back(
        session: Session, review_org: dict[str, Actor]) -> None:
    """The reset may have followed a compromise: a token taken before it does not come back with the change."""
    old = tokens.issue(session, _user(session, "fg"), "接口")
    session.commit()
    _temporary(session, "fg")
    fg = _user(session, "fg")
    fg.password_hash = generate_password_hash("Temp-pass-123")  # the temporary one, as a reset set it
    session.commit()
    org.change_password(session, user_id=fg.id, current="Temp-pass-123", new="my-own-pass-1",
                        actor=actor_for(session, "fg"))
    session.commit()
    assert tokens.authenticate(session, old) is None  # revoked: as unknown, not as "change the password"
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "org.user.password"))
    assert event.after == {"sessions_ended": True, "tokens_revoked": 1}
    assert tokens.authenticate(session, tokens.issue(session, _user(session, "fg"), "新")) == review_org["fg"]


def test_an_ordinary_password_change_revokes_no_token(session: Session, review_org: dict[str, Actor]) -> None:
    live = tokens.issue(session, _user(session, "fg"), "接口")
    _user(session, "fg").password_hash = generate_password_hash("Own-pass-123")
    session.commit()
    org.change_password(session, user_id=_user(session, "fg").id, current="Own-pass-123", new="my-own-pass-1",
                        actor=actor_for(session, "fg"))
    session.commit()
    assert tokens.authenticate(session, live) == review_org["fg"]
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "org.user.password"))
    assert event.after == {"sessions_ended": True}


def test_with_single_sign_on_the_temporary_password_opens_no_login_and_the_token_stands(
        session: Session, review_org: dict[str, Actor], monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule the issue follows (tokens.temporary): with SSO on, fg's password is no way in; admin's still is."""
    fg, admin = tokens.issue(session, _user(session, "fg"), "接口"), tokens.issue(session, _user(session, "admin"), "管")
    session.commit()
    _temporary(session, "fg")
    _temporary(session, "admin")
    _sso_on(monkeypatch)
    assert tokens.authenticate(session, fg) == review_org["fg"]
    with pytest.raises(PasswordChangeRequired):
        tokens.authenticate(session, admin)  # a local login (JZFLOW_OIDC_LOCAL_LOGINS): its password opens one
    monkeypatch.delenv("JZFLOW_OIDC_ISSUER")  # SSO off again: fg's temporary password opens a login
    with pytest.raises(PasswordChangeRequired):
        tokens.authenticate(session, fg)
