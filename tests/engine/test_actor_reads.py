"""Who is acting, read in one statement: a bearer token's actor, a signed-in session's user and actor."""
from __future__ import annotations

from sqlalchemy import event, update
from sqlalchemy.orm import Session

from engine import clock, org
from engine.org import tokens
from engine.org.actors import actor_for, user_with_actor
from engine.org.token_models import ApiToken


def _selects(session: Session) -> list[str]:
    seen: list[str] = []
    event.listen(session.get_bind(), "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: seen.append(statement) if statement.lstrip().startswith("SELECT")
                 else None)
    return seen


def test_a_token_gives_the_same_actor_as_a_login_in_one_read(session: Session) -> None:
    org.add_unit(session, code="fgw", name="发改局")
    org.add_unit(session, code="zsj", name="招商局")
    org.add_role(session, code="leader", name="分管领导")
    member = org.add_user(session, username="many", display_name="多岗", unit_codes=["fgw", "zsj"],
                          role_codes=["leader"])
    loner = org.add_user(session, username="loner", display_name="无岗")  # no membership: the outer join
    plaintexts = {u.username: tokens.issue(session, u, "test") for u in (member, loner)}
    session.commit()
    for username, plaintext in plaintexts.items():
        expected = actor_for(session, username)
        session.commit()
        seen = _selects(session)
        assert tokens.authenticate(session, plaintext) == expected
        assert len(seen) == 1, seen
    assert len(actor_for(session, "many").org_unit_ids) == 2 and actor_for(session, "many").role_codes == {"leader"}


def test_revoked_unknown_and_deactivated_tokens_give_no_actor(session: Session) -> None:
    user = org.add_user(session, username="gone", display_name="离职")
    plaintext = tokens.issue(session, user, "test")
    session.commit()
    assert tokens.authenticate(session, plaintext) is not None
    assert tokens.authenticate(session, plaintext[:-1] + ("0" if plaintext[-1] != "0" else "1")) is None
    assert tokens.authenticate(session, "not-a-token") is None
    user.is_active = False
    session.commit()
    assert tokens.authenticate(session, plaintext) is None
    user.is_active = True
    session.execute(update(ApiToken).values(revoked_at=clock.now()))
    session.commit()
    assert tokens.authenticate(session, plaintext) is None


def test_a_session_user_comes_with_its_actor_in_one_read(session: Session) -> None:
    org.add_unit(session, code="fgw", name="发改局")
    org.add_role(session, code="leader", name="分管领导")
    member = org.add_user(session, username="many", display_name="多岗", unit_codes=["fgw"], role_codes=["leader"])
    loner = org.add_user(session, username="loner", display_name="无岗")
    session.commit()
    for user in (member, loner):
        expected = actor_for(session, user.username)
        session.commit()
        seen = _selects(session)
        found = user_with_actor(session, user.id)
        assert found is not None and found[0] is user and found[1] == expected
        assert len(seen) == 1, seen
    assert user_with_actor(session, 987654) is None
