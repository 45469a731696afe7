"""API tokens in a busy office, on PostgreSQL: two revoking one token at once, an issue during a 停用.

Read first and written after, both revocations found the token live: both wrote `revoked_at` (the later one moving
the time on) and both recorded an `api_token.revoke`, so the audit trail said the token was revoked twice, by two
people, one of them after it was already dead. And a token issued while its owner was being deactivated (停用 locks
the owner's row; the issue read it without a lock) was made for an inactive user, against "the owner of a new token
must be active".
"""
from __future__ import annotations

import threading

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import org
from engine.audit.models import AuditEvent
from engine.errors import InvalidInput
from engine.org import leaving, tokens
from engine.org.actors import actor_for
from engine.org.token_models import ApiToken


def test_the_same_token_revoked_twice_at_once_is_revoked_and_audited_once(pg_factory: sessionmaker[Session]) -> None:
    with pg_factory() as s:
        fg = org.add_user(s, username="fg", display_name="发改")
        org.add_user(s, username="admin", display_name="管理员", is_admin=True)
        s.commit()
        tokens.issue(s, fg, "接口")
        s.commit()
        token_id = s.scalar(select(ApiToken.id))
        assert token_id is not None
    first = pg_factory()
    tokens.revoke(first, token_id=token_id, actor=actor_for(first, "fg"))  # holds the token's row until it commits
    outcome: list[BaseException | None] = [None]

    def admin_revokes() -> None:
        with pg_factory() as second:
            try:
                tokens.revoke(second, token_id=token_id, actor=actor_for(second, "admin"))
                second.commit()
            except BaseException as exc:  # handed to the test
                outcome[0] = exc

    thread = threading.Thread(target=admin_revokes)
    thread.start()
    thread.join(1.0)  # the admin's revocation waits for the owner's
    first.commit()
    first.close()
    thread.join(30)
    assert outcome[0] is None
    with pg_factory() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "api_token.revoke")) == 1
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "api_token.revoke"))
        assert event is not None and event.actor_id == actor_for(s, "fg").user_id


def test_a_token_issued_while_its_owner_is_deactivated_is_refused(pg_factory: sessionmaker[Session]) -> None:
    with pg_factory() as s:
        org.add_user(s, username="fg", display_name="发改")
        org.add_user(s, username="admin", display_name="管理员", is_admin=True)
        s.commit()
    first = pg_factory()
    fg_id = actor_for(first, "fg").user_id
    assert fg_id is not None
    leaving.deactivate_user(first, user_id=fg_id, actor=actor_for(first, "admin"))  # holds fg's row until it commits
    outcome: list[BaseException | None] = [None]

    def admin_issues() -> None:
        with pg_factory() as second:
            try:
                owner = tokens.owner(second, "fg")  # read while fg is still active
                tokens.issue(second, owner, "接口", actor=actor_for(second, "admin"))
                second.commit()
            except BaseException as exc:  # handed to the test
                outcome[0] = exc

    thread = threading.Thread(target=admin_issues)
    thread.start()
    thread.join(1.0)
    first.commit()
    first.close()
    thread.join(30)
    assert isinstance(outcome[0], InvalidInput) and outcome[0].details.get("field") == "user"
    with pg_factory() as s:
        assert s.scalar(select(func.count()).select_from(ApiToken)) == 0
