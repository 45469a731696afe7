"""停用 withdraws the 申请延期 the person asked and still pending (engine.deadlines.requests.withdraw, as a move does
for the steps it gives back): audited, nobody told — the asker is gone. A leader deciding one at the same moment
takes turns on the request's row. On SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, org
from engine.audit.models import AuditEvent
from engine.deadlines.models import ExtensionRequest
from engine.errors import Conflict
from engine.org import leaving
from engine.org.actors import actor_for
from plan.supervision import actions
from tests.engine.conftest import at_once
from tests.engine.test_mover_marks import _asked, _told, _user
from tests.engine.test_moves import _claimed_and_named


def _later() -> date:
    return (clock.now() + timedelta(days=20)).date()


def _cancels(s: Session) -> list[AuditEvent]:
    return list(s.scalars(select(AuditEvent).where(AuditEvent.action == "supervision.extension_cancel")))


def test_a_deactivated_persons_pending_extensions_are_withdrawn_audited_and_they_are_not_told(
        factory: sessionmaker[Session]) -> None:
    claimed, named = _claimed_and_named(factory)
    first, second = _asked(factory, claimed), _asked(factory, named)
    with factory() as s:
        org.add_user(s, username="root", display_name="管理员", is_admin=True)
        s.commit()
        u0 = _user(s, "u0").id
        left = leaving.deactivate_user(s, user_id=u0, actor=actor_for(s, "root"), successor="u1")
        s.commit()
        assert sorted(left.cancelled) == sorted([first, second])
    with factory() as s:
        for request_id in (first, second):
            request = s.get(ExtensionRequest, request_id)
            assert request is not None and request.status == "cancelled" and request.decided_by_id is None
        events = _cancels(s)
        assert sorted(int(e.object_id or 0) for e in events) == sorted([claimed, named])
        assert all((e.after or {})["reason"] == "deactivated" and (e.before or {})["requested_by_id"] == u0
                   for e in events)
        assert not any("延期申请" in t for t in _told(s, u0))  # a deactivated person is told nothing
        with pytest.raises(Conflict):  # a leader finds nothing left to decide
            actions.decide_extension(s, actor=actor_for(s, "u1"), object_type="task", object_id=claimed, grant=False,
                                     opinion="不同意")


@pytest.mark.parametrize("grant", [False, True])
def test_a_deactivation_and_a_decision_at_once_leave_the_request_either_decided_or_cancelled(
        factory: sessionmaker[Session], grant: bool) -> None:
    """A grant moves the step's deadline too: the request row is taken before the task rows on both sides."""
    claimed, _named = _claimed_and_named(factory)
    asked = _asked(factory, claimed)
    with factory() as s:
        org.add_user(s, username="root", display_name="管理员", is_admin=True)
        s.commit()
        u0 = _user(s, "u0").id

    def work(i: int) -> None:
        with factory() as s:
            if i == 0:
                leaving.deactivate_user(s, user_id=u0, actor=actor_for(s, "root"), successor="u1")
            else:
                actions.decide_extension(s, actor=actor_for(s, "u1"), object_type="task", object_id=claimed,
                                         grant=grant, opinion="同意" if grant else "不同意",
                                         due_date=_later() if grant else None)
            s.commit()

    outcomes = at_once(2, work)
    with factory() as s:
        request = s.get(ExtensionRequest, asked)
        assert request is not None
        assert outcomes[0] is None  # the 停用 always goes through
        assert not _user(s, "u0").is_active
        if request.status in ("granted", "refused"):  # decided first: nothing to withdraw
            assert outcomes[1] is None and not _cancels(s)
        else:
            assert request.status == "cancelled" and isinstance(outcomes[1], Conflict)
            assert len(_cancels(s)) == 1
