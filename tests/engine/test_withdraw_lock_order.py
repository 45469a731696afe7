"""撤回 and the next handler acting at once on one instance (PostgreSQL: row locks; SQLite has one writer).

A 撤回 checked that no one after it had acted (claimed, completed or commented on the next step) in plain reads, then
took the instance (FOR UPDATE) and reopened the step without looking again: a claim or a submission of the next step
committed in between was undone with it (the claim closed under its holder, the decision thrown away, the step after
it cancelled). Now the check is made again under the locks, the instance's first and then the later steps' rows, on
the rows as they are then: one of the two wins whole, the other is refused with its usual error (409).
"""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, tasks
from engine.errors import Conflict
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances, projection
from engine.runtime.models import ProcessInstance
from engine.tasks import sendback
from engine.tasks.models import HumanTask
from tests.engine.test_lock_order import _race, _refused, _verified
from tests.engine.test_operations import THREE_STEPS
from tests.engine.test_task_lost_updates import Meanwhile, Work, _act, meanwhile  # noqa: F401 (its fixture)


@pytest.fixture
def deployed(session: Session, review_org: dict[str, Actor]) -> dict[str, Actor]:
    deploy.deploy(session, {"three_steps.bpmn": THREE_STEPS.encode()}, actor=SYSTEM)
    session.commit()
    return review_org


def start(session: Session, org: dict[str, Actor]) -> tuple[int, int, int]:
    """Start one and let the applicant fill it (commits, closes): its id, the fill's, the (unclaimed) review's."""
    row = instances.start(session, process_key="three_steps", actor=org["applicant"])
    session.commit()

    def open_(bpmn_id: str) -> int:
        return session.scalars(select(HumanTask.id).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == bpmn_id,
                                                          HumanTask.state == "ready")).one()
    fill = open_("fill")
    tasks.complete(session, task_id=fill, actor=org["applicant"], data={"project": "胶州湾新材料项目"})
    session.commit()
    ids = row.id, fill, open_("review")
    session.close()
    return ids


def _withdraw(fill: int) -> Work:
    return lambda s: sendback.withdraw(s, task_id=fill, actor=actor_for(s, "applicant"), reason="填错了")


def _handle(action: str, review: int) -> Work:
    """fg takes the review (认领) or decides it (提交, claiming it with the submission)."""
    if action == "claim":
        return lambda s: tasks.claim(s, task_id=review, actor=actor_for(s, "fg"))
    return lambda s: tasks.complete(s, task_id=review, actor=actor_for(s, "fg"), data={}, opinion="同意")


def _steps(factory: sessionmaker[Session], instance_id: int) -> tuple[str, list[tuple[str, str, bool]]]:
    """The instance's status and its steps in order: bpmn id, state, whether someone holds it."""
    with factory() as s:
        row = s.get(ProcessInstance, instance_id)
        assert row is not None
        return row.status, [(t.bpmn_id, t.state, t.assignee_id is not None) for t in s.scalars(
            select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.kind == "bpmn")
            .order_by(HumanTask.id))]


# fg's action stands: the review held by fg, or decided and the leader's sign-off open
HANDLED = {"claim": ("running", [("fill", "completed", True), ("review", "ready", True)]),
           "complete": ("running", [("fill", "completed", True), ("review", "completed", True),
                                    ("sign_off", "ready", False)])}
# the 撤回 won: the review cancelled unclaimed, the applicant's step open again (theirs)
WITHDRAWN = ("running", [("fill", "completed", True), ("review", "cancelled", False), ("fill", "ready", True)])


def _refused_as_handled(outcome: object) -> None:
    """The 撤回's refusal when the next handler had acted before it looked: 409, saying so."""
    assert isinstance(outcome, Conflict), outcome
    assert outcome.http_status == 409 and outcome.code == "conflict"
    assert "下一步已有人处理" in str(outcome), outcome


@pytest.mark.parametrize("action", ["claim", "complete"])
def test_a_withdrawal_after_its_check_does_not_undo_what_the_next_handler_did_meanwhile(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],
        meanwhile: Meanwhile, action: str) -> None:  # noqa: F811
    """fg claims (or decides) the review after the 撤回 has checked that no one had, before it takes the instance: the
    撤回 looks again under its locks and is refused as if fg had acted first (was: it went on, closed fg's claimed
    review, or threw fg's decision away and cancelled the sign-off it had opened)."""
    instance_id, fill, review = start(session, deployed)
    meanwhile.at(sendback, "withdraw_refusal", _handle(action, review), after=True)
    withdrawn = _act(factory, lambda s, a: _withdraw(fill)(s))
    assert meanwhile.join() == ["done"]
    _refused_as_handled(withdrawn)
    assert _steps(factory, instance_id) == HANDLED[action]
    _verified(factory)


@pytest.mark.parametrize("action", ["claim", "complete"])
def test_the_next_handler_acting_while_a_withdrawal_is_under_way_waits_and_finds_the_step_gone(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],
        meanwhile: Meanwhile, action: str) -> None:  # noqa: F811
    """The 撤回 holds the instance and the review's row when fg claims (or decides) the review: fg waits, then finds
    the review closed (409), and the 撤回 stands whole."""
    instance_id, fill, review = start(session, deployed)
    meanwhile.at(projection, "write_postgres", _handle(action, review))
    assert _act(factory, lambda s, a: _withdraw(fill)(s)) == "done"
    [handled] = meanwhile.join()
    _refused(handled)
    assert _steps(factory, instance_id) == WITHDRAWN
    _verified(factory)


@pytest.mark.parametrize("rival", ["claim", "complete", "withdraw"])
def test_a_withdrawal_and_the_next_handler_at_once_never_both_win(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],
        meanwhile: Meanwhile, rival: str) -> None:  # noqa: F811 (its fixture: PostgreSQL only)
    """Started at once, a few times over, in both orders (and two 撤回 of one step, a double click): never a deadlock,
    never both; the loser is refused cleanly (409) and the winner's result stands."""
    for round_ in range(4):
        instance_id, fill, review = start(session, deployed)
        other = _withdraw(fill) if rival == "withdraw" else _handle(rival, review)
        works = [_withdraw(fill), other] if round_ % 2 else [other, _withdraw(fill)]
        outcomes = _race(factory, works)
        assert not any(isinstance(o, OperationalError) for o in outcomes), outcomes
        assert outcomes.count("done") == 1, outcomes
        withdrawn, handled = (outcomes[0], outcomes[1]) if round_ % 2 else (outcomes[1], outcomes[0])
        if rival == "withdraw":
            lost = handled if withdrawn == "done" else withdrawn
            assert isinstance(lost, Conflict) and lost.http_status == 409, outcomes
            assert _steps(factory, instance_id) == WITHDRAWN
        elif withdrawn == "done":
            _refused(handled)
            assert _steps(factory, instance_id) == WITHDRAWN
        else:
            _refused_as_handled(withdrawn)
            assert _steps(factory, instance_id) == HANDLED[rival]
    _verified(factory)

