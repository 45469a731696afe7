"""API tokens expire (chosen at issue, at most JZFLOW_TOKEN_MAX_DAYS), and an admin issues them only for
themself or for users who are not admins: a token for another admin would be impersonation over the API."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.errors import Forbidden, InvalidInput, TokenExpired
from engine.org import tokens
from engine.org.actors import Actor, actor_for
from engine.org.models import User
from engine.org.token_models import ApiToken


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None
    return user


def _token(session: Session, plaintext: str) -> ApiToken:
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == tokens.digest(plaintext)))
    assert token is not None
    return token


def test_a_token_expires_after_the_days_chosen_at_issue_default_90(
        session: Session, review_org: dict[str, Actor], frozen: Callable[..., Any]) -> None:
    issued_at = clock.now()
    fg = _user(session, "fg")
    default = tokens.issue(session, fg, "默认")
    month = tokens.issue(session, fg, "一个月", days=30)
    from_form = tokens.issue(session, fg, "表单", days=" 180 ")
    session.commit()
    assert clock.as_utc(_token(session, default).expires_at) == issued_at + timedelta(days=90)
    assert clock.as_utc(_token(session, month).expires_at) == issued_at + timedelta(days=30)
    assert clock.as_utc(_token(session, from_form).expires_at) == issued_at + timedelta(days=180)

    clock.advance(timedelta(days=30) - timedelta(seconds=1))
    assert tokens.authenticate(session, month) == review_org["fg"]
    session.commit()
    used = _token(session, month).last_used_at
    clock.advance(timedelta(seconds=1))  # the moment it expires
    with pytest.raises(TokenExpired) as refused:
        tokens.authenticate(session, month)
    assert "令牌已过期" in refused.value.message and "expired" in refused.value.message
    session.commit()
    assert _token(session, month).last_used_at == used  # an expired token is not "used"
    assert tokens.authenticate(session, default) == review_org["fg"]  # the others live on


def test_a_lifetime_beyond_the_maximum_or_not_a_whole_number_is_refused_naming_the_field(
        session: Session, review_org: dict[str, Actor], monkeypatch: pytest.MonkeyPatch) -> None:
    fg = _user(session, "fg")
    assert tokens.issue(session, fg, "一年", days=365)
    for days in (366, 0, -1, "abc", "1.5", "9" * 40, True):
        with pytest.raises(InvalidInput) as refused:
            tokens.issue(session, fg, "太久", days=days)  # type: ignore[arg-type]
        assert refused.value.details["field"] == "expires_in_days", days
        assert "expires_in_days" in refused.value.message
    monkeypatch.setenv("JZFLOW_TOKEN_MAX_DAYS", "30")
    with pytest.raises(InvalidInput, match="1–30"):
        tokens.issue(session, fg, "三个月", days=90)
    assert tokens.offered_days() == [30]
    short = tokens.issue(session, fg, "默认")  # the default is cut to the maximum
    assert clock.as_utc(_token(session, short).expires_at) - clock.as_utc(_token(session, short).created_at) \
        == timedelta(days=30)


def test_an_admin_issues_tokens_for_themself_and_non_admins_never_for_another_admin(
        session: Session, review_org: dict[str, Actor]) -> None:
    from engine import org
    org.add_user(session, username="admin2", display_name="另一位管理员", is_admin=True)
    session.commit()
    admin = review_org["admin"]
    with pytest.raises(Forbidden) as refused:
        tokens.issue(session, _user(session, "admin2"), "冒名", actor=admin)
    assert refused.value.details["field"] == "username" and "username" in refused.value.message
    assert session.scalar(select(ApiToken).where(ApiToken.user_id == _user(session, "admin2").id)) is None
    assert tokens.authenticate(session, tokens.issue(session, _user(session, "admin"), "自己", actor=admin)) == admin
    assert tokens.authenticate(session, tokens.issue(session, _user(session, "boss"), "看板", actor=admin)) \
        == review_org["boss"]
    # an admin's own tokens, issued by themself, are unaffected
    assert tokens.issue(session, _user(session, "admin2"), "自己的") and actor_for(session, "admin2").is_admin
