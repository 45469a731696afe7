"""A write to a task decided from a read of it never overwrites a change committed since (lost update).

Each test runs an operation in one session and, between its read of the task and its write, another operation in
its own session and thread: it either commits (the first then writes over a row it did not read) or waits for a lock
the first holds (and then works on what the first wrote). PostgreSQL only: SQLite starts every transaction with
BEGIN IMMEDIATE, so there the second cannot even begin before the first has committed.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, runtime, tasks
from engine.errors import ConcurrentModification, EngineError
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import projection
from engine.tasks import handover, lookup, operations, people, sendback
from engine.tasks.models import HumanTask
from plan import supervision
from tests import access_world
from tests.engine.conftest import waits_for_a_lock
from tests.engine.test_operations import THREE_STEPS

Work = Callable[[Session], Any]


class Meanwhile:
    """Run `other` in its own session and thread, the first time `owner.name` is called in this thread: until it has
    committed (or failed), or waits for a lock this thread holds; then go on with the call."""

    def __init__(self, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
        self.factory, self.monkeypatch = factory, monkeypatch
        self.outcome: list[object] = []
        self.thread: threading.Thread | None = None

    def at(self, owner: Any, name: str, other: Work, *, after: bool = False) -> None:
        original = getattr(owner, name)
        me = threading.get_ident()

        def hooked(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != me or self.thread is not None:
                return original(*args, **kwargs)
            if not after:
                self._run(other)
                return original(*args, **kwargs)
            result = original(*args, **kwargs)
            self._run(other)
            return result

        self.monkeypatch.setattr(owner, name, hooked)

    def _run(self, other: Work) -> None:
        started = threading.Event()
        pid: list[int] = []

        def work() -> None:
            with self.factory() as s:
                pid.append(int(s.execute(text("SELECT pg_backend_pid()")).scalar() or 0))
                started.set()
                try:
                    other(s)
                    s.commit()
                    self.outcome.append("done")
                except EngineError as exc:
                    s.rollback()
                    self.outcome.append(exc)

        self.thread = threading.Thread(target=work)
        self.thread.start()
        started.wait(10)
        for _ in range(400):
            if not self.thread.is_alive() or waits_for_a_lock(self.factory, pid[0]):
                return
            time.sleep(0.025)
        raise AssertionError("the other work neither finished nor waited for a lock")

    def join(self) -> list[object]:
        if self.thread is not None:
            self.thread.join(30)
            assert not self.thread.is_alive(), "the other work hung"
        return self.outcome


@pytest.fixture
def meanwhile(db_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> Iterator[Meanwhile]:
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer: BEGIN IMMEDIATE)")
    m = Meanwhile(factory, monkeypatch)
    yield m
    m.join()


def _situation(session: Session, relation: str, *, cosigner_after: bool = True,
               bpmn: str | None = None) -> access_world.Situation:
    """The review in `relation` to its actor; without `cosigner_after` a submission completes it (is not held);
    `bpmn`: a later version of three_steps the instance runs."""
    access_world.prepare(session)
    if bpmn is not None:
        deploy.deploy(session, {"three_steps.bpmn": bpmn.encode()}, actor=SYSTEM)
        session.commit()
    where = access_world.build(session, relation)
    if not cosigner_after:
        session.execute(update(HumanTask).where(HumanTask.id == where.removable_id).values(state="cancelled"))
        session.commit()
    session.close()
    return where


def _act(factory: sessionmaker[Session], work: Callable[[Session, Callable[[str], Actor]], Any]) -> object:
    """Run the first operation in its own session; return "done" or the domain error it raised."""
    with factory() as s:
        try:
            work(s, lambda name: actor_for(s, name))
            s.commit()
            return "done"
        except EngineError as exc:
            s.rollback()
            return exc


def _row(factory: sessionmaker[Session], task_id: int) -> HumanTask:
    with factory() as s:
        row = s.get(HumanTask, task_id)
        assert row is not None
        s.expunge(row)
        return row


def _user_id(factory: sessionmaker[Session], name: str) -> int:
    with factory() as s:
        return int(actor_for(s, name).user_id or 0)


def _complete(task_id: int, who: str = "fg") -> Work:
    return lambda s: tasks.complete(s, task_id=task_id, actor=actor_for(s, who), data={}, opinion="同意")


def test_unclaim_does_not_release_a_task_completed_since_it_was_read(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile) -> None:
    where = _situation(session, "holder", cosigner_after=False)  # fg holds the review
    meanwhile.at(tasks.core.task_access, "require", _complete(where.task_id))
    outcome = _act(factory, lambda s, a: tasks.unclaim(s, task_id=where.task_id, actor=a("admin")))
    assert meanwhile.join() == ["done"]
    assert isinstance(outcome, lookup.TaskAlreadyDone), outcome
    row = _row(factory, where.task_id)
    assert row.state == "completed" and row.assignee_id == _user_id(factory, "fg")


def test_unclaim_does_not_release_a_task_handed_to_someone_else_since(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile) -> None:
    where = _situation(session, "holder")
    meanwhile.at(tasks.core.task_access, "require", lambda s: operations.transfer(
        s, task_id=where.task_id, actor=actor_for(s, "fg"), to_username="head"))
    outcome = _act(factory, lambda s, a: tasks.unclaim(s, task_id=where.task_id, actor=a("admin")))
    assert meanwhile.join() == ["done"]
    assert isinstance(outcome, lookup.TaskChanged), outcome
    assert "办理人（assignee）刚被他人改动" in outcome.message
    assert _row(factory, where.task_id).assignee_id == _user_id(factory, "head")


@pytest.mark.parametrize("operation", ["transfer", "delegate"])
def test_a_holder_no_longer_holding_the_task_hands_nothing_on(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile,
        operation: str) -> None:
    """fg transfers (or delegates) the review while an administrator releases it (取消认领)."""
    where = _situation(session, "holder")
    meanwhile.at(people, "require_in_scope", lambda s: tasks.unclaim(s, task_id=where.task_id,
                                                                     actor=actor_for(s, "admin")))
    call = getattr(operations, operation)
    outcome = _act(factory, lambda s, a: call(s, task_id=where.task_id, actor=a("fg"), to_username="head"))
    assert meanwhile.join() == ["done"]
    assert isinstance(outcome, lookup.TaskChanged), outcome
    row = _row(factory, where.task_id)
    assert row.assignee_id is None and row.delegation_state is None


def test_a_delegate_resolving_does_not_undo_a_release_committed_since(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile) -> None:
    where = _situation(session, "delegate")  # fg delegated the review to zr
    meanwhile.at(tasks.core.task_access, "require", lambda s: tasks.unclaim(s, task_id=where.task_id,
                                                                            actor=actor_for(s, "admin")))
    outcome = _act(factory, lambda s, a: operations.resolve_delegation(s, task_id=where.task_id, actor=a("zr"),
                                                                       opinion="建议同意"))
    assert meanwhile.join() == ["done"]
    assert isinstance(outcome, lookup.TaskChanged), outcome
    row = _row(factory, where.task_id)
    assert row.assignee_id is None and row.delegation_state is None


def test_reassign_does_not_hand_on_a_task_completed_since_it_was_read(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile) -> None:
    """督办 改派 by an administrator while the holder completes the task."""
    where = _situation(session, "holder", cosigner_after=False)
    meanwhile.at(supervision.actions, "_give_task", _complete(where.task_id))
    outcome = _act(factory, lambda s, a: supervision.reassign(s, seen=None, actor=a("admin"), object_type="task",
                                                              object_id=where.task_id, to_username="head"))
    assert meanwhile.join() == ["done"]
    assert isinstance(outcome, lookup.TaskAlreadyDone), outcome
    row = _row(factory, where.task_id)
    assert row.state == "completed" and row.assignee_id == _user_id(factory, "fg") and row.owner_id is None


def test_a_person_leaving_does_not_take_back_a_task_they_handed_on_since(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile) -> None:
    """退回单位候选人 of fg's tasks while fg transfers the review to head: head keeps it."""
    where = _situation(session, "holder")
    with factory() as s:
        unit_id = s.scalar(text("SELECT id FROM org_unit WHERE code = 'fgj'"))
    transfer: Work = lambda s: operations.transfer(s, task_id=where.task_id, actor=actor_for(s, "fg"),  # noqa: E731
                                                   to_username="head")

    def work(s: Session, a: Callable[[str], Actor]) -> None:
        fg, admin = a("fg"), a("admin")
        meanwhile.at(s, "scalars", transfer, after=True)  # after the read of fg's tasks
        handover.hand_over(s, user_id=int(fg.user_id or 0), unit_id=unit_id, actor=admin, reason="调离")

    assert _act(factory, work) == "done"
    [transferred] = meanwhile.join()
    row = _row(factory, where.task_id)
    if transferred == "done":  # it waited for the release, then handed on what it read afresh
        assert row.assignee_id == _user_id(factory, "head")
    else:  # it read fg's hold before the release: refused, the release stands
        assert isinstance(transferred, lookup.TaskChanged), transferred
        assert row.assignee_id is None


def test_the_last_co_signer_signing_does_not_unblock_a_task_given_a_new_co_signer_since(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile) -> None:
    """boss, the one co-signer before fg, signs while fg adds another (head): the review waits for head."""
    where = _situation(session, "cosigner")  # boss co-signs the review before its holder fg

    add: Work = lambda s: operations.add_cosigners(s, task_id=where.parent_id, actor=actor_for(s, "fg"),  # noqa: E731
                                                   usernames=["head"], position="before")
    meanwhile.at(operations, "_cosigns", add, after=True)  # after boss's sign read the parent's ready co-signers
    outcome = _act(factory, lambda s, a: tasks.complete(s, task_id=where.task_id, actor=a("boss"), data={},
                                                        opinion="同意"))
    assert outcome == "done"
    assert meanwhile.join() == ["done"]
    parent = _row(factory, where.parent_id)
    with factory() as s:
        waiting = s.scalars(select(HumanTask.assignee_id).where(HumanTask.parent_task_id == where.parent_id,
                                                                HumanTask.state == "ready")).all()
    assert waiting == [_user_id(factory, "head")]
    assert parent.blocked, "the review went on without head's signature"


def _instance_lock_version(factory: sessionmaker[Session], task_id: int) -> int:
    with factory() as s:
        return int(s.scalar(text("SELECT p.lock_version FROM process_instance p JOIN human_task h"
                                 " ON h.instance_id = p.id WHERE h.id = :t"), {"t": task_id}) or 0)


HANDING_ON: dict[str, Callable[[int], Work]] = {  # who holds fg's review changes: 取消认领, 督办's 改派, fg's 转办
    "unclaim": lambda t: lambda s: tasks.unclaim(s, task_id=t, actor=actor_for(s, "admin")),
    "reassign": lambda t: lambda s: supervision.reassign(s, seen=None, actor=actor_for(s, "admin"), object_type="task",
                                                         object_id=t, to_username="head"),
    "transfer": lambda t: lambda s: operations.transfer(s, task_id=t, actor=actor_for(s, "fg"), to_username="head"),
}


@pytest.mark.parametrize("save", ["statement", "flush"])
@pytest.mark.parametrize("change", list(HANDING_ON))
def test_a_submission_does_not_complete_a_task_handed_on_since_it_was_read(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile,
        monkeypatch: pytest.MonkeyPatch, change: str, save: str) -> None:
    """fg submits the review they hold; between the read and the save it is released, reassigned or handed on
    (in another tab): the submission is refused and writes nothing, the change stands. Both saves: the one statement,
    and the flush an assignment problem falls back to (projection.claim_now)."""
    if save == "flush":
        monkeypatch.setattr(runtime.core, "is_postgres", lambda _s: False)
    where = _situation(session, "holder", cosigner_after=False)
    version = _instance_lock_version(factory, where.task_id)
    meanwhile.at(tasks.core.task_access, "require", HANDING_ON[change](where.task_id))
    outcome = _act(factory, lambda s, a: tasks.complete(s, task_id=where.task_id, actor=a("fg"), data={},
                                                        opinion="同意"))
    assert meanwhile.join() == ["done"]
    assert isinstance(outcome, lookup.TaskChanged), outcome
    row = _row(factory, where.task_id)
    assert row.state == "ready" and row.completed_by_id is None
    assert row.assignee_id == (None if change == "unclaim" else _user_id(factory, "head"))
    assert _instance_lock_version(factory, where.task_id) == version


def test_a_submission_waiting_for_a_release_in_flight_is_refused_once_it_commits(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile) -> None:
    """An administrator releases fg's review (取消认领), and before that commits fg's submission reaches its save:
    the save waits for the row, then sees it released and writes nothing."""
    where = _situation(session, "holder", cosigner_after=False)
    version = _instance_lock_version(factory, where.task_id)
    meanwhile.at(tasks.core, "_audit", _complete(where.task_id))  # after the release's write, before its commit
    assert _act(factory, lambda s, a: tasks.unclaim(s, task_id=where.task_id, actor=a("admin"))) == "done"
    [submitted] = meanwhile.join()
    assert isinstance(submitted, lookup.TaskChanged), submitted
    row = _row(factory, where.task_id)
    assert row.state == "ready" and row.assignee_id is None and row.completed_by_id is None
    assert _instance_lock_version(factory, where.task_id) == version


def _add_cosigner(task_id: int, position: str) -> Work:
    return lambda s: operations.add_cosigners(s, task_id=task_id, actor=actor_for(s, "fg"), usernames=["head"],
                                              position=position)


def _cosigner_states(factory: sessionmaker[Session], parent_id: int) -> list[str]:
    with factory() as s:
        return list(s.scalars(select(HumanTask.state).where(HumanTask.parent_task_id == parent_id,
                                                            HumanTask.assignee_id == _user_id(factory, "head"))))


def _refused_for_the_co_signer(factory: sessionmaker[Session], outcome: object, where: access_world.Situation,
                               position: str, version: int) -> None:
    """The submission was refused and wrote nothing; head's co-sign waits (after: for the submission)."""
    if position == "before":
        assert isinstance(outcome, lookup.TaskBlocked), outcome
    else:
        assert isinstance(outcome, lookup.TaskChanged), outcome
        assert "加签" in outcome.message
    row = _row(factory, where.task_id)
    assert row.state == "ready" and row.completed_by_id is None and row.pending_data is None
    assert _instance_lock_version(factory, where.task_id) == version
    assert _cosigner_states(factory, where.task_id) == ["ready" if position == "before" else "pending"]


@pytest.mark.parametrize("save", ["statement", "flush"])
@pytest.mark.parametrize("position", ["after", "before"])
def test_a_submission_does_not_go_on_without_a_co_signer_added_since_it_was_read(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile,
        monkeypatch: pytest.MonkeyPatch, position: str, save: str) -> None:
    """fg adds a co-signer (head, 加签) in another tab between the read of the review and the save of fg's
    submission: the submission is refused; sent again, it waits for head's signature."""
    if save == "flush":
        monkeypatch.setattr(runtime.core, "is_postgres", lambda _s: False)
    where = _situation(session, "holder", cosigner_after=False)
    version = _instance_lock_version(factory, where.task_id)
    meanwhile.at(tasks.core.task_access, "require", _add_cosigner(where.task_id, position))
    outcome = _act(factory, lambda s, a: tasks.complete(s, task_id=where.task_id, actor=a("fg"), data={},
                                                        opinion="同意"))
    assert meanwhile.join() == ["done"]
    _refused_for_the_co_signer(factory, outcome, where, position, version)
    if position == "after":
        assert _act(factory, lambda s, a: tasks.complete(s, task_id=where.task_id, actor=a("fg"), data={})) == "done"
        assert _row(factory, where.task_id).blocked and _cosigner_states(factory, where.task_id) == ["ready"]


@pytest.mark.parametrize("position", ["after", "before"])
def test_a_submission_waiting_for_a_co_signer_being_added_is_refused_once_it_commits(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile,
        position: str) -> None:
    """fg adds head (加签) and, before that commits, fg's submission from another tab reaches its save: the save
    waits for the review's row, then sees the co-signer and writes nothing."""
    where = _situation(session, "holder", cosigner_after=False)
    version = _instance_lock_version(factory, where.task_id)
    meanwhile.at(people, "require_in_scope", _complete(where.task_id))  # in 加签, the review's row locked
    assert _act(factory, lambda s, a: _add_cosigner(where.task_id, position)(s)) == "done"
    [submitted] = meanwhile.join()
    _refused_for_the_co_signer(factory, submitted, where, position, version)


def _held_for_co_signers(factory: sessionmaker[Session], session: Session,
                         bpmn: str | None = None) -> tuple[access_world.Situation, list[int]]:
    """fg's review with two co-signers after fg (cs, boss) and fg's submission held for them: their co-sign ids."""
    where = _situation(session, "holder", bpmn=bpmn)  # cs co-signs after fg
    with factory() as s:
        fg = actor_for(s, "fg")
        operations.add_cosigners(s, task_id=where.task_id, actor=fg, usernames=["boss"], position="after")
        tasks.complete(s, task_id=where.task_id, actor=fg, data={"fg_says": "同意"})
        s.commit()
        ids = list(s.scalars(select(HumanTask.id).where(HumanTask.parent_task_id == where.task_id,
                                                        HumanTask.state == "ready").order_by(HumanTask.id)))
    assert _row(factory, where.task_id).blocked and len(ids) == 2
    return where, ids


def _sign(task_id: int, who: str) -> Work:
    return lambda s: tasks.complete(s, task_id=task_id, actor=actor_for(s, who), data={}, opinion=f"{who}：同意")


def _completions(factory: sessionmaker[Session], where: access_world.Situation) -> int:
    with factory() as s:
        return int(s.scalar(text("SELECT count(*) FROM audit_event e JOIN human_task h ON h.id = :t"
                                 " WHERE e.stream = 'instance:' || h.instance_id AND e.action = 'task.complete'"),
                            {"t": where.task_id}) or 0)


@pytest.mark.parametrize("other", ["sign", "remove"])
def test_the_last_signature_goes_on_with_the_held_submission_exactly_once(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile,
        other: str) -> None:
    """cs signs while boss, the other co-signer after fg, signs too (or fg removes boss, 减签), once cs has read that
    boss has not signed: they take turns on the review's row, and the second one goes on with fg's submission."""
    where, (cs_task, boss_task) = _held_for_co_signers(factory, session)
    completed = _completions(factory, where)
    second: Work = _sign(boss_task, "boss") if other == "sign" else lambda s: operations.remove_cosigner(
        s, cosign_task_id=boss_task, actor=actor_for(s, "fg"))
    meanwhile.at(operations, "_cosigns", second, after=True)  # cs's sign has read the ready co-signers
    assert _act(factory, lambda s, a: _sign(cs_task, "cs")(s)) == "done"
    assert meanwhile.join() == ["done"]
    review = _row(factory, where.task_id)
    assert review.state == "completed" and review.completed_by_id == _user_id(factory, "fg") and not review.blocked
    assert _completions(factory, where) == completed + 1
    assert [_row(factory, t).state for t in (cs_task, boss_task)] == \
        ["completed", "completed" if other == "sign" else "cancelled"]


@pytest.mark.parametrize("when", ["reading", "signed"])
def test_a_send_back_and_a_co_signer_signing_at_that_moment_lose_no_signature(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile,
        monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """boss co-signs the review before fg while fg sends it back (退回): boss signing while the 退回's save cancels
    the co-signers with the review waits for it and then finds the co-sign cancelled; boss having signed once the 退回 has
    read the review keeps the signature."""
    where = _situation(session, "cosigner")  # boss co-signs before fg
    sign = _sign(where.task_id, "boss")
    if when == "reading":  # the save that cancels the co-signers with the review (its statement) about to run
        meanwhile.at(projection, "write_postgres", sign)
    else:
        meanwhile.at(sendback, "cancelled_by", sign)  # the 退回 has read the review and where it goes
    assert _act(factory, lambda s, a: sendback.send_back(s, task_id=where.parent_id, actor=a("fg"),
                                                         reason="材料不全")) == "done"
    [signed] = meanwhile.join()
    cosign = _row(factory, where.task_id)
    if when == "reading":
        assert isinstance(signed, lookup.TaskAlreadyDone), signed
        assert cosign.state == "cancelled" and cosign.completed_by_id is None
    else:
        assert signed == "done"
        assert cosign.state == "completed" and cosign.completed_by_id == _user_id(factory, "boss")
    assert _row(factory, where.parent_id).state == "cancelled"


@pytest.mark.parametrize("fill", ["initiator", "lane"])
def test_a_send_back_and_the_last_signature_going_on_with_the_submission_take_turns(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile,
        fill: str) -> None:
    """cs and boss sign fg's held submission; boss has signed, cs signs last (the review's row locked, the
    submission about to go on, saving the instance) while fg sends the review back (退回, saving it too) to the
    first step: its applicant named by a property (read from the users) or only by its lane."""
    by_lane = THREE_STEPS.replace('<spiffworkflow:property name="assignee" value="initiator" />', "")
    where, (cs_task, boss_task) = _held_for_co_signers(factory, session, by_lane if fill == "lane" else None)
    assert _act(factory, lambda s, a: _sign(boss_task, "boss")(s)) == "done"
    meanwhile.at(operations, "_cosigns", lambda s: sendback.send_back(s, task_id=where.task_id,
                                                                      actor=actor_for(s, "fg"), reason="材料不全"))
    assert _act(factory, lambda s, a: _sign(cs_task, "cs")(s)) == "done"
    [sent_back] = meanwhile.join()
    assert isinstance(sent_back, ConcurrentModification), sent_back  # the review went on, or the instance did
    review = _row(factory, where.task_id)
    assert review.state == "completed" and review.completed_by_id == _user_id(factory, "fg")


@pytest.mark.parametrize("change", ["unclaim", "reassign"])
def test_a_send_back_does_not_close_a_task_handed_on_since_it_was_read(
        factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor], meanwhile: Meanwhile,
        change: str) -> None:
    """fg sends the review back (退回) while an administrator releases or reassigns it (改派): refused, nothing
    reopened, the change stands."""
    where = _situation(session, "holder", cosigner_after=False)
    version = _instance_lock_version(factory, where.task_id)
    meanwhile.at(sendback.task_access, "require", HANDING_ON[change](where.task_id))
    outcome = _act(factory, lambda s, a: sendback.send_back(s, task_id=where.task_id, actor=a("fg"),
                                                            reason="材料不全"))
    assert meanwhile.join() == ["done"]
    assert isinstance(outcome, lookup.TaskChanged), outcome
    row = _row(factory, where.task_id)
    assert row.state == "ready" and row.assignee_id == (None if change == "unclaim" else _user_id(factory, "head"))
    assert _instance_lock_version(factory, where.task_id) == version
