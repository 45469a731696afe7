"""申请延期 to a date already past: the form comes back naming the date, nothing is kept (was: granted, or an incident).

Today is 2025-09-01 (frozen); the issue is due 2025-09-12. A handler asking for a date not after today or the current
deadline, and a leader granting a date not after today, have their submission refused by the ledger's service naming
the field (requested_due_date / new_due_date). On SQLite and PostgreSQL.
"""
from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.orm import Session

from engine import tasks
from engine.errors import InvalidInput, SubmissionRefused
from engine.org.actors import Actor
from plan import supervision
from tests.processes.test_issue_ledger import REGISTRATION, assert_row, by_hand, deployed, dispatch, issue_of, people
from tests.steps import do, kept, names, only_task

__all__ = ["by_hand", "deployed", "people"]


@pytest.fixture
def handling(session: Session, by_hand: int, people: dict[str, Actor]) -> int:
    dispatch(session, by_hand, people["officer"], "gxj", due_date="2025-09-12")
    do(session, only_task(session, by_hand, "respond"), people["gx_zhang"], {"response": "accept"})
    return by_hand


@pytest.mark.parametrize(("day", "says"), [("2025-08-20", "今天"), ("2025-09-01", "今天"), ("2025-09-12", "现有期限")])
def test_asking_for_a_date_not_after_today_or_the_deadline_is_refused(
        session: Session, handling: int, people: dict[str, Actor], day: str, says: str) -> None:
    iid, zhang = handling, people["gx_zhang"]
    handle = only_task(session, iid, "handle")
    before = kept(session, iid)
    with pytest.raises(SubmissionRefused) as refused:
        tasks.complete(session, task_id=handle.id, actor=zhang,
                       data={"action": "extension", "requested_due_date": day, "extension_reason": "跨国庆假期"})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["requested_due_date"] and says in refused.value.errors[0].message
    assert refused.value.bpmn_id == "check_extension"
    assert kept(session, iid) == before and names(session, iid) == ["handle"]
    do(session, handle, zhang, {"action": "extension", "requested_due_date": "2025-09-30", "extension_reason": "跨国庆"})
    assert names(session, iid) == ["decide_extension"]


@pytest.mark.parametrize("day", ["2025-08-31", "2025-09-01"])
def test_granting_a_date_already_past_is_refused_naming_the_date(
        session: Session, handling: int, people: dict[str, Actor], day: str) -> None:
    """The leader's grant of a past date was kept: the issue's deadline moved into the past, red at once."""
    iid, zhang, sun = handling, people["gx_zhang"], people["leader_sun"]
    do(session, only_task(session, iid, "handle"), zhang,
       {"action": "extension", "requested_due_date": "2025-09-30", "extension_reason": "跨国庆假期"})
    decide = only_task(session, iid, "decide_extension")
    tasks.claim(session, task_id=decide.id, actor=sun)
    session.commit()
    before = kept(session, iid)
    with pytest.raises(SubmissionRefused) as refused:
        tasks.complete(session, task_id=decide.id, actor=sun,
                       data={"extension_decision": "grant", "new_due_date": day, "leader_opinion": "同意"})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["new_due_date"] and "今天" in refused.value.errors[0].message
    assert kept(session, iid) == before
    assert_row(session, iid, "accepted", unit="gxj", handler="gx_zhang", due=date(2025, 9, 12))
    do(session, decide, sun, {"extension_decision": "grant", "new_due_date": "2025-09-26", "leader_opinion": "同意"})
    assert_row(session, iid, "accepted", unit="gxj", handler="gx_zhang", due=date(2025, 9, 26))


def test_dispatching_to_a_unit_the_city_does_not_have_is_refused_naming_it(
        session: Session, by_hand: int, people: dict[str, Actor]) -> None:
    """The form lists every unit of the plan; one not (yet) in the organisation stopped the issue on an incident."""
    task = only_task(session, by_hand, "dispatch")
    tasks.claim(session, task_id=task.id, actor=people["officer"])
    session.commit()
    before = kept(session, by_hand)
    with pytest.raises(SubmissionRefused) as refused:
        tasks.complete(session, task_id=task.id, actor=people["officer"],
                       data={"unit_code": "fgj", "deadline_kind": "working_days", "working_days": 5})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["unit_code"] and refused.value.bpmn_id == "record_dispatch"
    assert kept(session, by_hand) == before
    assert_row(session, by_hand, "registered", unit="gxj")


def test_granting_today_through_supervision_is_refused_naming_the_date(
        session: Session, handling: int, people: dict[str, Actor]) -> None:
    """督办's 批准延期 of an issue completes its decide_extension step: refused before it, on 督办's own field."""
    iid = handling
    do(session, only_task(session, iid, "handle"), people["gx_zhang"],
       {"action": "extension", "requested_due_date": "2025-09-30", "extension_reason": "跨国庆假期"})
    issue = issue_of(session, iid)
    before = kept(session, iid)
    with pytest.raises(InvalidInput) as refused:
        supervision.decide_extension(session, actor=people["leader_sun"], object_type="issue", object_id=issue.id,
                                     grant=True, due_date=date(2025, 9, 1), opinion="同意")
    session.rollback()
    assert refused.value.details["field"] == "due_date"
    assert kept(session, iid) == before


def test_dispatching_with_a_deadline_already_past_is_refused_naming_the_date(
        session: Session, by_hand: int, people: dict[str, Actor]) -> None:
    """派单 by date kept a deadline years past (a slip of the year: 2020 for 2026): the issue red at once and the whole
    督办 ladder, up to the city leader, told the same minute. Today (2025-09-01) is still a deadline one may give."""
    task = only_task(session, by_hand, "dispatch")
    tasks.claim(session, task_id=task.id, actor=people["officer"])
    session.commit()
    before = kept(session, by_hand)
    with pytest.raises(SubmissionRefused) as refused:
        tasks.complete(session, task_id=task.id, actor=people["officer"],
                       data={"unit_code": "gxj", "deadline_kind": "date", "due_date": "2020-01-01"})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["due_date"] and "今天" in refused.value.errors[0].message
    assert refused.value.bpmn_id == "record_dispatch"
    assert kept(session, by_hand) == before
    assert_row(session, by_hand, "registered", unit="gxj")
    dispatch(session, by_hand, people["officer"], "gxj", due_date="2025-09-01")
    assert_row(session, by_hand, "dispatched", unit="gxj", due=date(2025, 9, 1))


def test_registering_a_requested_date_already_past_is_refused_naming_it(
        session: Session, deployed: None, people: dict[str, Actor]) -> None:
    """登记's 要求完成日期 in the past was kept as the issue's deadline: red before anyone had it."""
    from engine.runtime import instances
    row = instances.start(session, process_key="issue_ledger", actor=people["officer"], title="问题台账")
    session.commit()
    task = only_task(session, row.id, "register_issue")
    with pytest.raises(SubmissionRefused) as refused:
        tasks.complete(session, task_id=task.id, actor=people["officer"],
                       data={**REGISTRATION, "due_date": "2025-08-31"})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["due_date"] and "今天" in refused.value.errors[0].message
    assert names(session, row.id) == ["register_issue"]
