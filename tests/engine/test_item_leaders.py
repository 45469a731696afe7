"""Setting the 责任领导 of a 问题台账 issue or a 招商线索 by hand (plan.item_leaders), on SQLite and PostgreSQL.

Who may: admins, 市级领导 (who 包挂 by the city's appointment) and the head (负责人) of the item's unit. Whom: an active
leader — a holder of the `leader` or `city_leader` role, or a unit's responsible leader. An issue 已销号 or a lead
finished (已转项目 / 未形成项目) keeps its leader (history). One audit event per change, on the item's own stream, the
item's row locked while it changes. Hostile: staff of the unit, another unit's head, an unknown, deactivated or
non-leader user, a stale page, two people at once, and a 停用 of the chosen leader racing the change.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from engine import org
from engine.audit.models import AuditEvent
from engine.errors import Conflict, Forbidden, InvalidInput
from engine.org import leaving
from engine.org.actors import Actor, actor_for
from engine.org.models import User
from plan import item_leaders
from plan.leads.models import InvestmentLead
from plan.ledger.models import LedgerIssue
from tests.engine.conftest import waits_for_a_lock
from tests.engine.test_deactivate_leaders import _issue, _lead, _leader, _unit, people  # noqa: F401


@pytest.fixture
def leaders(session: Session, people: dict[str, Actor]) -> dict[str, Actor]:  # noqa: F811
    """people (tests.engine.test_deactivate_leaders) and: li, a 责任领导 by role; he, responsible leader of 开发区
    without a role; wu, a deactivated 市级领导; an auditor; 开发区's head ma."""
    org.add_role(session, code="leader", name="责任领导")
    org.add_role(session, code="auditor", name="审计督查")
    org.add_unit(session, code="kfq", name="经济技术开发区")
    org.add_user(session, username="ma", display_name="开发区马主任", unit_codes=["kfq"], is_head=True)
    org.add_user(session, username="li", display_name="李主任", role_codes=["leader"])
    org.add_user(session, username="he", display_name="何书记")
    org.add_user(session, username="wu", display_name="吴副市长", role_codes=["city_leader"])
    org.add_user(session, username="audit", display_name="审计", role_codes=["auditor"])
    _unit(session, "kfq").responsible_leader_id = session.scalar(select(User.id).where(User.username == "he"))
    session.flush()
    wu = session.scalar(select(User).where(User.username == "wu"))
    assert wu is not None
    wu.is_active = False
    session.commit()
    return {**people, **{u: actor_for(session, u) for u in ("ma", "li", "he", "audit")}}


def _events(s: Session, stream: str) -> list[AuditEvent]:
    return list(s.scalars(select(AuditEvent).where(AuditEvent.stream == stream,
                                                   AuditEvent.action.in_(["ledger.leader", "lead.leader"]))
                          .order_by(AuditEvent.seq)))


def _id(s: Session, username: str) -> int:
    found = s.scalar(select(User.id).where(User.username == username))
    assert found is not None
    return found


def test_a_city_leader_sets_changes_and_clears_an_issues_leader_one_event_per_change(
        session: Session, leaders: dict[str, Actor]) -> None:
    issue = _issue(session, "WT-2025-0001", leaders["zhao"])
    sun = leaders["sun"]
    assert item_leaders.set_leader(session, "issue", issue, actor=sun, username="qian", seen=None)
    session.commit()
    assert _leader(session, LedgerIssue, issue) == leaders["qian"].user_id
    assert item_leaders.set_leader(session, "issue", issue, actor=sun, username="", seen=None)  # 清除
    session.commit()
    assert _leader(session, LedgerIssue, issue) is None
    assert not item_leaders.set_leader(session, "issue", issue, actor=sun, username="  ", seen=None)  # no change
    session.commit()
    first, second = _events(session, f"ledger_issue:{issue}")
    assert first.actor_id == sun.user_id and first.object_type == "ledger_issue"
    assert first.before == {"responsible_leader_id": leaders["zhao"].user_id, "leader": "zhao"}
    assert first.after is not None and first.after["leader"] == "qian" and first.after["code"] == "WT-2025-0001"
    assert second.after is not None and second.after["leader"] is None


def test_the_unit_head_and_admins_may_set_it_staff_other_heads_and_auditors_may_not(
        session: Session, leaders: dict[str, Actor]) -> None:
    lead = _lead(session, "ZS-2025-0001", leaders["zhao"])  # of 工信局, headed by zhou
    assert item_leaders.set_leader(session, "lead", lead, actor=leaders["zhou"], username="he", seen=None)
    session.commit()
    assert _leader(session, InvestmentLead, lead) == leaders["he"].user_id  # a unit's responsible leader, no role
    assert item_leaders.set_leader(session, "lead", lead, actor=leaders["admin"], username="li", seen=None)
    session.commit()
    for who in ("zhang", "ma", "li", "audit"):  # staff of the unit, another unit's head, a 责任领导, 督查
        with pytest.raises(Forbidden):
            item_leaders.set_leader(session, "lead", lead, actor=leaders[who], username="zhao", seen=None)
        session.rollback()
    assert _leader(session, InvestmentLead, lead) == leaders["li"].user_id
    assert len(_events(session, f"investment_lead:{lead}")) == 2


@pytest.mark.parametrize(("username", "words"), [("nobody", "用户不存在"), ("wu", "已停用"), ("zhang", "不是领导"),
                                                 ("x\x00y", "用户不存在"), ("长" * 200, "用户不存在")])
def test_a_leader_who_is_unknown_inactive_or_no_leader_is_refused_naming_the_field(
        session: Session, leaders: dict[str, Actor], username: str, words: str) -> None:
    issue = _issue(session, "WT-2025-0001", leaders["zhao"])
    with pytest.raises(InvalidInput) as refused:
        item_leaders.set_leader(session, "issue", issue, actor=leaders["admin"], username=username, seen=None)
    session.rollback()
    assert refused.value.details["field"] == "leader" and words in refused.value.message
    assert "责任领导" in refused.value.message
    assert _leader(session, LedgerIssue, issue) == leaders["zhao"].user_id
    assert _events(session, f"ledger_issue:{issue}") == []


@pytest.mark.parametrize(("kind", "status"), [("issue", "closed"), ("lead", "project"), ("lead", "dropped")])
def test_a_closed_issue_or_finished_lead_keeps_its_leader(session: Session, leaders: dict[str, Actor], kind: str,
                                                          status: str) -> None:
    row = (_issue if kind == "issue" else _lead)(session, "X-2025-0001", leaders["zhao"], status=status)
    with pytest.raises(Conflict) as refused:
        item_leaders.set_leader(session, kind, row, actor=leaders["admin"], username="qian", seen=None)
    session.rollback()
    assert refused.value.details["field"] == "leader" and "不能更改责任领导" in refused.value.message
    assert _leader(session, LedgerIssue if kind == "issue" else InvestmentLead, row) == leaders["zhao"].user_id


def test_a_page_that_saw_another_leader_is_refused_and_one_that_saw_none_is_too(
        session: Session, leaders: dict[str, Actor]) -> None:
    issue = _issue(session, "WT-2025-0001", leaders["zhao"])
    row = session.get(LedgerIssue, issue)
    assert row is not None
    seen = item_leaders.leader_version(row)
    item_leaders.set_leader(session, "issue", issue, actor=leaders["sun"], username="qian", seen=seen)
    session.commit()
    for stale in (seen, ""):
        with pytest.raises(Conflict) as refused:
            item_leaders.set_leader(session, "issue", issue, actor=leaders["admin"], username="li", seen=stale)
        session.rollback()
        assert refused.value.details["field"] == "seen"
    item_leaders.set_leader(session, "issue", issue, actor=leaders["admin"], username="qian", seen=seen)  # same: ok
    assert _leader(session, LedgerIssue, issue) == leaders["qian"].user_id


def test_the_choices_are_the_active_leaders(session: Session, leaders: dict[str, Actor]) -> None:
    names = [u for u, _name in item_leaders.leaders(session)]
    assert names == sorted(names) and len(names) == len(set(names))
    assert {"zhao", "qian", "sun", "li", "he"} <= set(names)
    assert not {"wu", "zhang", "zhou", "ma", "admin", "audit"} & set(names)


def test_an_unknown_item_is_not_found(session: Session, leaders: dict[str, Actor]) -> None:
    from engine.errors import NotFound
    with pytest.raises(NotFound):
        item_leaders.set_leader(session, "issue", 987654, actor=leaders["admin"], username="qian", seen=None)


# -- at once (PostgreSQL: two connections; SQLite serialises every writer at BEGIN) ------------------------------------

def _hold_then(factory: sessionmaker[Session], first: Any, second: Any) -> BaseException | None:
    """Run `first` in a transaction left open, start `second` in a thread until it waits for a lock the first holds,
    commit the first, and return what the second raised."""
    one, two = factory(), factory()
    outcome: dict[str, BaseException] = {}

    def run_second() -> None:
        try:
            second(two)
            two.commit()
        except BaseException as exc:  # reported to the test
            two.rollback()
            outcome["error"] = exc

    try:
        first(one)
        pid = two.execute(text("SELECT pg_backend_pid()")).scalar()
        thread = threading.Thread(target=run_second)
        thread.start()
        waited = False
        for _ in range(1000):
            if waits_for_a_lock(factory, int(pid or 0)):
                waited = True
                break
            if not thread.is_alive():
                break
            time.sleep(0.01)
        one.commit()
        thread.join(30)
        assert not thread.is_alive()
        assert waited, "the second did not wait for the first's lock"
    finally:
        one.close()
        two.close()
    return outcome.get("error")


def _postgres(session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("two writers at once: PostgreSQL")


def test_two_people_setting_different_leaders_at_once_take_turns_the_last_stays(
        factory: sessionmaker[Session], session: Session, leaders: dict[str, Actor]) -> None:
    _postgres(session)
    issue = _issue(session, "WT-2025-0001", leaders["zhao"])
    session.close()
    error = _hold_then(
        factory, lambda s: item_leaders.set_leader(s, "issue", issue, actor=actor_for(s, "sun"), username="qian",
                                                   seen=None),
        lambda s: item_leaders.set_leader(s, "issue", issue, actor=actor_for(s, "admin"), username="li", seen=None))
    assert error is None
    with factory() as s:
        first, second = _events(s, f"ledger_issue:{issue}")
        assert first.after is not None and first.after["leader"] == "qian"
        assert second.before == {"responsible_leader_id": _id(s, "qian"), "leader": "qian"}  # read after the first
        assert second.after is not None and second.after["leader"] == "li"
        assert _leader(s, LedgerIssue, issue) == _id(s, "li")


def test_two_pages_that_saw_the_same_leader_take_turns_and_the_second_is_told_it_is_stale(
        factory: sessionmaker[Session], session: Session, leaders: dict[str, Actor]) -> None:
    _postgres(session)
    lead = _lead(session, "ZS-2025-0001", leaders["zhao"])
    row = session.get(InvestmentLead, lead)
    assert row is not None
    seen = item_leaders.leader_version(row)
    session.close()
    error = _hold_then(
        factory, lambda s: item_leaders.set_leader(s, "lead", lead, actor=actor_for(s, "sun"), username="qian",
                                                   seen=seen),
        lambda s: item_leaders.set_leader(s, "lead", lead, actor=actor_for(s, "admin"), username="li", seen=seen))
    assert isinstance(error, Conflict)
    with factory() as s:
        assert len(_events(s, f"investment_lead:{lead}")) == 1
        assert _leader(s, InvestmentLead, lead) == _id(s, "qian")


def _deactivate(username: str) -> Any:
    return lambda s: leaving.deactivate_user(s, user_id=_id(s, username), actor=actor_for(s, "admin2"))


@pytest.mark.parametrize("kind", ["issue", "lead"])
def test_a_deactivation_of_the_chosen_leader_after_the_change_hands_the_item_over(
        factory: sessionmaker[Session], session: Session, leaders: dict[str, Actor], kind: str) -> None:
    _postgres(session)
    row = (_issue if kind == "issue" else _lead)(session, "X-2025-0001", leaders["zhao"])
    session.close()
    error = _hold_then(factory, lambda s: item_leaders.set_leader(s, kind, row, actor=actor_for(s, "admin"),
                                                                  username="sun", seen=None), _deactivate("sun"))
    assert error is None
    with factory() as s:
        now = _leader(s, LedgerIssue if kind == "issue" else InvestmentLead, row)
        assert now == _id(s, "zhao")  # the ladder: 工信局's responsible leader
        user = s.get(User, now)
        assert user is not None and user.is_active


@pytest.mark.parametrize("kind", ["issue", "lead"])
def test_a_change_to_a_leader_being_deactivated_waits_and_is_refused(
        factory: sessionmaker[Session], session: Session, leaders: dict[str, Actor], kind: str) -> None:
    _postgres(session)
    row = (_issue if kind == "issue" else _lead)(session, "X-2025-0001", leaders["zhao"])
    session.close()
    error = _hold_then(factory, _deactivate("sun"), lambda s: item_leaders.set_leader(
        s, kind, row, actor=actor_for(s, "admin"), username="sun", seen=None))
    assert isinstance(error, InvalidInput) and error.details["field"] == "leader" and "已停用" in error.message
    with factory() as s:
        assert _leader(s, LedgerIssue if kind == "issue" else InvestmentLead, row) == _id(s, "zhao")
