"""A comment, a file or a 抄送 on a step, and 撤回 or a submission closing that step at once (PostgreSQL: row locks).

They took no lock on the step's row and never looked at it again: a comment, a file or a 抄送 made while a 撤回 or a
submission closed the step was kept on the closed step (a trace on a dead step, and a 撤回 that undid what the next
handler had started), whichever came first. Now each takes the instance's row (FOR KEY SHARE, as a submission) and
then the step's (FOR SHARE), and reads the step again under them: one of the two wins whole, the other is refused
cleanly (409) and writes nothing — no comment, no file, no 抄送, no notice, no audit event.
"""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, tasks
from engine.audit.models import AuditEvent
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor, actor_for
from engine.runtime import projection
from engine.tasks import access, collab, lookup
from engine.tasks.collab_models import Attachment, CarbonCopy, Comment
from tests.engine.test_lock_order import _race, _verified
from tests.engine.test_task_lost_updates import Meanwhile, Work, _act, meanwhile  # noqa: F401 (its fixture)
from tests.engine.test_withdraw_lock_order import (  # noqa: F401 (deployed: its fixture)
    HANDLED,
    WITHDRAWN,
    _refused_as_handled,
    _steps,
    _withdraw,
    deployed,
    start,
)


def _comment(instance_id: int, review: int) -> Work:
    """fg, a handler of the review (one of its candidates), comments on it: acting on it, as far as 撤回 is concerned."""
    return lambda s: collab.add_comment(s, instance_id=instance_id, actor=actor_for(s, "fg"), body="材料在看",
                                        task_id=review)


def _upload(instance_id: int, review: int) -> Work:
    return lambda s: collab.attach(s, instance_id=instance_id, actor=actor_for(s, "fg"), name="审查意见.docx",
                                   content=b"doc", content_type="text/plain", task_id=review)


def _cc(instance_id: int, review: int) -> Work:
    """An administrator (督办) copies the review to the leader."""
    return lambda s: collab.carbon_copy(s, instance_id=instance_id, actor=actor_for(s, "admin"), usernames=["boss"],
                                        note="请领导知悉", task_id=review)


def _complete(review: int) -> Work:
    return lambda s: tasks.complete(s, task_id=review, actor=actor_for(s, "fg"), data={}, opinion="同意")


TRACES = {"comment": _comment, "upload": _upload}


def _traces(factory: sessionmaker[Session], instance_id: int) -> dict[str, int]:
    """What a comment, an upload or a 抄送 leaves: its rows, its notices and its audit events."""
    with factory() as s:
        def count(statement: object) -> int:
            return int(s.scalar(statement) or 0)  # type: ignore[call-overload]
        return {
            "comment": count(select(func.count()).select_from(Comment).where(
                Comment.instance_id == instance_id, Comment.kind == "comment")),
            "upload": count(select(func.count()).select_from(Attachment).where(Attachment.instance_id == instance_id)),
            "cc": count(select(func.count()).select_from(CarbonCopy).where(CarbonCopy.instance_id == instance_id)),
            "cc_notice": count(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.payload["kind"].as_string() == "cc",
                OutboxMessage.payload["link"].as_string() == f"/instances/{instance_id}")),
            "events": count(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.stream == f"instance:{instance_id}",
                AuditEvent.action.in_(["instance.comment", "instance.attach", "instance.cc"]))),
        }


NOTHING = {"comment": 0, "upload": 0, "cc": 0, "cc_notice": 0, "events": 0}


def _one(what: str) -> dict[str, int]:
    """The traces of one `what` (comment, upload, cc) made."""
    return {**NOTHING, what: 1, "events": 1, **({"cc_notice": 1} if what == "cc" else {})}


def _refused_as_closed(outcome: object, what: str) -> None:
    """The refusal of a trace on a step that closed meanwhile: 409, saying so in both languages, naming the trace."""
    assert isinstance(outcome, lookup.TaskAlreadyDone), outcome
    assert outcome.http_status == 409 and outcome.code == "task_already_done"
    assert "此步骤已结束" in str(outcome) and "closed" in str(outcome), outcome
    assert {"comment": "评论", "upload": "附件", "cc": "抄送"}[what] in str(outcome), outcome


# --- 撤回 and the next handler's comment or file ---------------------------------------------------------------------


@pytest.mark.parametrize("what", list(TRACES))
def test_a_trace_made_while_a_withdrawal_is_under_way_waits_and_is_refused(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],  # noqa: F811
        meanwhile: Meanwhile, what: str) -> None:  # noqa: F811
    """The 撤回 holds the instance and the review's row when fg comments (uploads): fg waits, then finds the review
    closed (409) and nothing is kept (was: the comment waited for the instance and was kept on the cancelled review)."""
    instance_id, fill, review = start(session, deployed)
    meanwhile.at(projection, "write_postgres", TRACES[what](instance_id, review))
    assert _act(factory, lambda s, a: _withdraw(fill)(s)) == "done"
    [traced] = meanwhile.join()
    _refused_as_closed(traced, what)
    assert _steps(factory, instance_id) == WITHDRAWN
    assert _traces(factory, instance_id) == NOTHING
    _verified(factory)


@pytest.mark.parametrize("what", list(TRACES))
def test_a_trace_on_a_step_withdrawn_since_it_was_read_is_refused(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],  # noqa: F811
        meanwhile: Meanwhile, what: str) -> None:  # noqa: F811
    """The 撤回 commits after fg's comment (upload) has checked who may see the instance, before it writes: the review
    is gone, the comment is refused (was: kept on the cancelled review, the 撤回 standing as well)."""
    instance_id, fill, review = start(session, deployed)
    meanwhile.at(access, "require_view", _withdraw(fill), after=True)
    traced = _act(factory, lambda s, a: TRACES[what](instance_id, review)(s))
    assert meanwhile.join() == ["done"]
    _refused_as_closed(traced, what)
    assert _steps(factory, instance_id) == WITHDRAWN
    assert _traces(factory, instance_id) == NOTHING
    _verified(factory)


@pytest.mark.parametrize("what", list(TRACES))
def test_a_withdrawal_made_while_the_next_handler_comments_waits_and_is_refused(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],  # noqa: F811
        meanwhile: Meanwhile, what: str) -> None:  # noqa: F811
    """fg's comment (upload) holds the review when the 撤回 comes: the 撤回 waits, then sees that fg has acted (409)."""
    instance_id, fill, review = start(session, deployed)
    meanwhile.at(audit, "record", _withdraw(fill))
    assert _act(factory, lambda s, a: TRACES[what](instance_id, review)(s)) == "done"
    [withdrawn] = meanwhile.join()
    _refused_as_handled(withdrawn)
    assert _steps(factory, instance_id) == ("running", [("fill", "completed", True), ("review", "ready", False)])
    assert _traces(factory, instance_id) == _one(what)
    _verified(factory)


# --- a submission and a 抄送 of its step -------------------------------------------------------------------------------


def test_a_copy_made_while_the_step_is_being_submitted_waits_and_is_refused(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],  # noqa: F811
        meanwhile: Meanwhile) -> None:  # noqa: F811
    """fg's submission holds the review's row when the 抄送 comes: it waits, then finds the review done (409)."""
    instance_id, _fill, review = start(session, deployed)
    meanwhile.at(projection, "write_postgres", _cc(instance_id, review), after=True)
    assert _act(factory, lambda s, a: _complete(review)(s)) == "done"
    [copied] = meanwhile.join()
    _refused_as_closed(copied, "cc")
    assert _steps(factory, instance_id) == HANDLED["complete"]
    assert _traces(factory, instance_id) == NOTHING
    _verified(factory)


def test_a_copy_of_a_step_submitted_since_it_was_read_is_refused(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],  # noqa: F811
        meanwhile: Meanwhile) -> None:  # noqa: F811
    """The submission commits after the 抄送 has checked who may see the instance: the 抄送 is refused (was: kept on the
    completed review, and the leader told of it)."""
    instance_id, _fill, review = start(session, deployed)
    meanwhile.at(access, "require_view", _complete(review), after=True)
    copied = _act(factory, lambda s, a: _cc(instance_id, review)(s))
    assert meanwhile.join() == ["done"]
    _refused_as_closed(copied, "cc")
    assert _steps(factory, instance_id) == HANDLED["complete"]
    assert _traces(factory, instance_id) == NOTHING
    _verified(factory)


def test_a_submission_made_while_its_step_is_being_copied_waits_and_goes_on(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],  # noqa: F811
        meanwhile: Meanwhile) -> None:  # noqa: F811
    """The 抄送 holds the review when fg submits: the submission waits for it and then completes; the 抄送 was made
    on an open step and stands (a copy is no reason to refuse a decision)."""
    instance_id, _fill, review = start(session, deployed)
    meanwhile.at(audit, "record", _complete(review))
    assert _act(factory, lambda s, a: _cc(instance_id, review)(s)) == "done"
    assert meanwhile.join() == ["done"]
    assert _steps(factory, instance_id) == HANDLED["complete"]
    assert _traces(factory, instance_id) == _one("cc")
    _verified(factory)


# --- at once, both orders ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("what", list(TRACES))
def test_a_withdrawal_and_the_next_handlers_comment_at_once_never_both_win(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],  # noqa: F811
        meanwhile: Meanwhile, what: str) -> None:  # noqa: F811 (its fixture: PostgreSQL only)
    """Started at once, a few times over, in both orders: never a deadlock, never both; the loser is refused (409)
    and leaves nothing, the winner's result stands."""
    for round_ in range(4):
        instance_id, fill, review = start(session, deployed)
        pair = [_withdraw(fill), TRACES[what](instance_id, review)]
        works = pair if round_ % 2 else pair[::-1]
        outcomes = _race(factory, works)
        assert not any(isinstance(o, OperationalError) for o in outcomes), outcomes
        assert outcomes.count("done") == 1, outcomes
        withdrawn, traced = (outcomes[0], outcomes[1]) if round_ % 2 else (outcomes[1], outcomes[0])
        if withdrawn == "done":
            _refused_as_closed(traced, what)
            assert _steps(factory, instance_id) == WITHDRAWN
            assert _traces(factory, instance_id) == NOTHING
        else:
            _refused_as_handled(withdrawn)
            assert _traces(factory, instance_id) == _one(what)
    _verified(factory)


def test_a_submission_and_a_copy_of_its_step_at_once_never_leave_a_copy_on_a_closed_step(
        session: Session, factory: sessionmaker[Session], deployed: dict[str, Actor],  # noqa: F811
        meanwhile: Meanwhile) -> None:  # noqa: F811 (its fixture: PostgreSQL only)
    """Started at once, a few times over, in both orders: never a deadlock; the submission always completes, and the
    抄送 either went first (on the open step; it stands) or is refused (409) and leaves nothing."""
    for round_ in range(4):
        instance_id, _fill, review = start(session, deployed)
        pair = [_complete(review), _cc(instance_id, review)]
        works = pair if round_ % 2 else pair[::-1]
        outcomes = _race(factory, works)
        assert not any(isinstance(o, OperationalError) for o in outcomes), outcomes
        completed, copied = (0, 1) if round_ % 2 else (1, 0)
        assert outcomes[completed] == "done", outcomes
        assert _steps(factory, instance_id) == HANDLED["complete"]
        if outcomes[copied] == "done":  # it held the step first: the submission waited for it (the test above)
            assert _traces(factory, instance_id) == _one("cc")
        else:
            _refused_as_closed(outcomes[copied], "cc")
            assert _traces(factory, instance_id) == NOTHING
    _verified(factory)
