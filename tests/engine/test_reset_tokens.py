"""`jzflow revoke-reset-tokens`: the API tokens an administrator's password reset made before resets revoked them left
live are revoked once, from the audit trail (engine.org.reset_tokens): those made before the reset, and those made
while its temporary password was in force; none of a person whose reset revoked their tokens already, nor of a person
never reset, nor one made after the change. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, cli, clock, org
from engine.audit.models import AuditEvent
from engine.org import core, oidc, reset_tokens, staffing, tokens
from engine.org.actors import actor_for
from engine.org.models import User
from engine.org.token_models import ApiToken


def _user(s: Session, username: str) -> User:
    found = s.scalar(select(User).where(User.username == username))
    assert found is not None, username
    return found


def _made(s: Session, user: User, name: str) -> str:
    """A token made as the code before the fix made it while a temporary password was in force (issue refuses now)."""
    plaintext = tokens.PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    s.add(ApiToken(user_id=user.id, name=name, token_hash=tokens.digest(plaintext), prefix=plaintext[:12],
                   created_by_id=user.id, created_at=now, expires_at=now + timedelta(days=90), scope="read_write"))
    s.flush()
    return plaintext


def _old_reset(s: Session, user: User) -> None:
    """重置密码 as the code before the fix did it: a temporary password, sessions ended, no token revoked."""
    user.must_change_password, user.session_epoch = True, user.session_epoch + 1
    s.flush()
    audit.record(s, actor_for(s, "root"), "org.user.password_reset", stream=f"user:{user.id}", object_type="app_user",
                 object_id=user.id, before={"must_change": False},
                 after={"sessions_ended": True, "generated": True, "must_change": True})


def _old_change(s: Session, user: User) -> None:
    """修改密码 as the code before the fix did it: the temporary mark cleared, every token kept."""
    user.must_change_password = False
    s.flush()
    audit.record(s, actor_for(s, user.username), "org.user.password", stream=f"user:{user.id}",
                 object_type="app_user", object_id=user.id, after={"sessions_ended": True})


@pytest.fixture
def history(factory: sessionmaker[Session], frozen: Any) -> Iterator[dict[str, str]]:
    """p: a token, an old reset, a token made under the temporary password, an old change, a token made since.
    q: reset and changed by today's code, a token since. r: never reset. Returns the plaintexts by name."""
    made: dict[str, str] = {}
    with factory() as s:
        org.add_user(s, username="root", display_name="管理员", is_admin=True)
        for name in ("p", "q", "r"):
            org.add_user(s, username=name, display_name=name, password="Old-pass-123")
        s.commit()
        made["p_before"] = tokens.issue(s, _user(s, "p"), "before")
        made["q_before"] = tokens.issue(s, _user(s, "q"), "before")
        made["r_token"] = tokens.issue(s, _user(s, "r"), "mine")
        s.commit()
        clock.advance(timedelta(hours=1))
        _old_reset(s, _user(s, "p"))
        q = _user(s, "q")
        staffing.reset_password(s, user_id=q.id, password="Temp-pass-123", seen=None, actor=actor_for(s, "root"))
        s.commit()
        clock.advance(timedelta(hours=1))
        made["p_during"] = _made(s, _user(s, "p"), "during")
        s.commit()
        clock.advance(timedelta(hours=1))
        _old_change(s, _user(s, "p"))
        core.change_password(s, user_id=q.id, current="Temp-pass-123", new="Mine-pass-456", actor=actor_for(s, "q"))
        s.commit()
        clock.advance(timedelta(hours=1))
        made["p_after"] = tokens.issue(s, _user(s, "p"), "after")
        made["q_after"] = tokens.issue(s, _user(s, "q"), "after")
        s.commit()
    yield made


def _live(factory: sessionmaker[Session], made: dict[str, str]) -> set[str]:
    with factory() as s:
        return {name for name, plaintext in made.items() if tokens.authenticate(s, plaintext) is not None}


def _cli(db_url: str, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.setenv("JZFLOW_DATABASE_URL", db_url)
    return CliRunner().invoke(cli.main, list(args))


def test_the_tokens_an_old_reset_left_are_revoked_once_and_audited(
        db_url: str, factory: sessionmaker[Session], history: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert _live(factory, history) == {"p_before", "p_during", "p_after", "q_after", "r_token"}
    listed = _cli(db_url, monkeypatch, "revoke-reset-tokens", "--dry-run")
    assert listed.exit_code == 0, listed.output
    assert "p\t" in listed.output and "before" in listed.output and "during" in listed.output
    assert "将吊销 (would revoke) 2 个令牌" in listed.output
    assert _live(factory, history) == {"p_before", "p_during", "p_after", "q_after", "r_token"}  # nothing changed
    done = _cli(db_url, monkeypatch, "revoke-reset-tokens")
    assert done.exit_code == 0, done.output
    assert "已吊销 (revoked) 2 个令牌" in done.output
    assert _live(factory, history) == {"p_after", "q_after", "r_token"}
    with factory() as s:
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "api_token.revoke")))
        assert len(events) == 2
        assert all(e.after["reason"] == reset_tokens.REASON and e.actor_name == "system" for e in events), \
            [(e.after, e.actor_name) for e in events]
    again = _cli(db_url, monkeypatch, "revoke-reset-tokens")
    assert again.exit_code == 0 and "已吊销 (revoked) 0 个令牌" in again.output, again.output


def test_a_person_still_on_the_old_temporary_password_loses_every_token_made_until_now(
        factory: sessionmaker[Session], frozen: Any) -> None:
    with factory() as s:
        org.add_user(s, username="root", display_name="管理员", is_admin=True)
        org.add_user(s, username="p", display_name="p", password="Old-pass-123")
        s.commit()
        before = tokens.issue(s, _user(s, "p"), "before")
        clock.advance(timedelta(hours=1))
        _old_reset(s, _user(s, "p"))
        clock.advance(timedelta(hours=1))
        during = _made(s, _user(s, "p"), "during")
        s.commit()
        assert [f.name for f in reset_tokens.revoke(s, actor=actor_for(s, "root"))] == ["before", "during"]
        s.commit()
        live = s.scalars(select(ApiToken.prefix).where(ApiToken.revoked_at.is_(None))).all()
        assert before[:12] not in live and during[:12] not in live


def test_with_single_sign_on_only_the_tokens_before_the_reset_go(
        factory: sessionmaker[Session], history: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A temporary password that opened no login (single sign-on): a token made meanwhile stands, as issue allows it."""
    monkeypatch.setenv("JZFLOW_OIDC_ISSUER", "https://sso.example.test")
    monkeypatch.setenv("JZFLOW_OIDC_CLIENT_ID", "jzflow")
    oidc.METADATA.clear()
    with factory() as s:
        assert [(f.username, f.name) for f in reset_tokens.revoke(s, actor=actor_for(s, "root"))] == [("p", "before")]
        s.commit()
    assert _live(factory, history) == {"p_during", "p_after", "q_after", "r_token"}
