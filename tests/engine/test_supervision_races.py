"""督办 at once: two leaders (or one leader clicking twice) act on one object at the same moment; it happens once.

Each race runs its works in threads, each in its own session, and holds every worker at its first audit.record
(after its checks and writes, before its commit) until the other has got there too or is waiting for a lock: a
check nothing serialises is then passed by both, and a lock taken before the check makes the second wait for the
first's commit, then see what it wrote. SQLite starts every transaction with BEGIN IMMEDIATE, so there the second
waits at its BEGIN.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.orm import Session, sessionmaker

import engine.audit as audit_pkg
from engine.audit.models import AuditEvent
from engine.deadlines.models import DeadlineAction, ExtensionRequest
from engine.errors import Conflict, RateLimited
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor
from engine.tasks import operations
from engine.tasks.collab_models import Comment
from plan import supervision
from tests.engine import test_escalation
from tests.engine.test_escalation import _task

people, make_issue = test_escalation.people, test_escalation.make_issue  # its fixtures: 工信局's people, an issue

Work = Callable[[Session], Any]
Race = Callable[..., list[BaseException | None]]
PATIENCE = 20.0  # seconds a worker waits for the other before giving up (only ever reached when something hangs)


@pytest.fixture
def race(factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> Iterator[Race]:
    """Run works at once, each in its own session committed at the end; return what each raised."""
    engine: Engine = factory.kw["bind"]
    postgres = engine.dialect.name == "postgresql"
    local = threading.local()
    state: dict[str, list[Any]] = {}

    def arrived(j: int) -> bool:
        """Tell whether worker j got as far as it can: at its audit.record, done, or waiting for a lock."""
        if state["at_audit"][j].is_set() or state["done"][j].is_set():
            return True
        if not postgres:  # this one holds the write lock since its BEGIN IMMEDIATE: the other cannot begin yet
            return not state["begun"][j].is_set()
        with engine.connect() as conn:  # a new transaction per look: pg_stat_activity is a snapshot within one
            return bool(conn.execute(text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
                                     {"pid": state["pids"][j]}).scalar())

    original = audit_pkg.record

    def record(*args: Any, **kwargs: Any) -> Any:
        i = getattr(local, "index", None)
        if i is not None and not local.met:
            local.met = True
            state["at_audit"][i].set()
            others = [j for j in range(len(state["done"])) if j != i]
            for _ in range(int(PATIENCE / 0.01)):
                if all(arrived(j) for j in others):
                    break
                state["at_audit"][others[0]].wait(0.01)  # a look every 10 ms, at once when the other arrives
            else:
                raise AssertionError("the other worker neither reached audit.record nor waited for a lock")
        return original(*args, **kwargs)

    monkeypatch.setattr(audit_pkg, "record", record)

    def begun(_conn: Any) -> None:
        if getattr(local, "index", None) is not None:
            state["begun"][local.index].set()

    if not postgres:
        event.listen(engine, "begin", begun)  # after engine.db's BEGIN IMMEDIATE

    def run(*works: Work) -> list[BaseException | None]:
        n = len(works)
        state.update(at_audit=[threading.Event() for _ in works], done=[threading.Event() for _ in works],
                     begun=[threading.Event() for _ in works], pids=[None] * n)
        barrier = threading.Barrier(n)
        outcomes: list[BaseException | None] = [None] * n

        def work(i: int) -> None:
            local.index, local.met = i, False
            with factory() as s:
                if postgres:
                    state["pids"][i] = s.execute(text("SELECT pg_backend_pid()")).scalar()
                barrier.wait()
                try:
                    works[i](s)
                    s.commit()
                except BaseException as exc:  # reported to the test
                    s.rollback()
                    outcomes[i] = exc
                finally:
                    state["done"][i].set()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a worker hung"
        return outcomes

    yield run
    if not postgres:
        event.remove(engine, "begin", begun)


def _ready(session: Session, obj: Any) -> int:
    """Return an object's id and end the main session's transaction (on SQLite it would hold the write lock)."""
    object_id = int(obj.id)
    session.rollback()
    return object_id


def _failed(outcomes: list[BaseException | None], kind: type[BaseException]) -> None:
    assert sum(o is None for o in outcomes) == 1, outcomes
    assert any(isinstance(o, kind) for o in outcomes), outcomes


def test_two_leaders_deciding_one_extension_request_at_once_decide_it_once(
        session: Session, people: dict[str, Actor], frozen: Any, race: Race) -> None:
    task = _task(session, people)
    supervision.request_extension(session, actor=people["zhang"], task_id=task.id, due_date=date(2025, 9, 20),
                                  reason="等待企业补充材料")
    session.commit()
    task_id = _ready(session, task)
    outcomes = race(
        lambda s: supervision.decide_extension(s, actor=people["zhou"], object_type="task", object_id=task_id,
                                               grant=True, due_date=date(2025, 9, 19), opinion="同意"),
        lambda s: supervision.decide_extension(s, actor=people["wang"], object_type="task", object_id=task_id,
                                               grant=False, opinion="不同意"))
    _failed(outcomes, Conflict)
    if session.get_bind().dialect.name == "postgresql":  # the second read the request pending, then waited for it
        assert any("already decided" in str(o) for o in outcomes), outcomes
    decisions = session.scalars(select(DeadlineAction.action).where(
        DeadlineAction.object_type == "task", DeadlineAction.object_id == task_id,
        DeadlineAction.action.like("extension_%"))).all()
    told = [m.payload["title"] for m in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
            if m.payload.get("user_id") == people["zhang"].user_id and "延期申请" in m.payload["title"]]
    request = session.scalars(select(ExtensionRequest).where(ExtensionRequest.object_id == task_id)).one()
    assert len(decisions) == 1 and len(told) == 1, (decisions, told)
    assert request.status == {"extension_grant": "granted", "extension_refuse": "refused"}[decisions[0]]
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action.like("supervision.extension_%"), AuditEvent.action != "supervision.extension_request")) == 1


def test_a_requester_asking_twice_at_once_gets_one_pending_request(
        session: Session, people: dict[str, Actor], frozen: Any, race: Race) -> None:
    task_id = _ready(session, _task(session, people))

    def ask(s: Session) -> None:
        supervision.request_extension(s, actor=people["zhang"], task_id=task_id, due_date=date(2025, 9, 20),
                                      reason="等待企业补充材料")
    _failed(race(ask, ask), Conflict)
    assert session.scalar(select(func.count()).select_from(ExtensionRequest).where(
        ExtensionRequest.object_id == task_id, ExtensionRequest.status == "pending")) == 1


@pytest.mark.parametrize("object_type", ["task", "issue"])
def test_a_leader_urging_twice_at_once_urges_once(session: Session, people: dict[str, Actor], frozen: Any,
                                                  make_issue: Callable[..., Any], race: Race, object_type: str) -> None:
    leader = people["zhou"] if object_type == "task" else people["wang"]
    thing = _task(session, people) if object_type == "task" else make_issue(date(2025, 9, 10))
    object_id = _ready(session, thing)

    def urge(s: Session) -> None:
        supervision.urge(s, seen=None, actor=leader, object_type=object_type, object_id=object_id, message="请尽快办理")
    _failed(race(urge, urge), RateLimited)
    assert session.scalar(select(func.count()).select_from(DeadlineAction).where(
        DeadlineAction.object_type == object_type, DeadlineAction.object_id == object_id,
        DeadlineAction.action == "urge")) == 1
    told = [m.payload["user_id"] for m in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
            if m.payload.get("kind") == "urge"]
    assert told and len(told) == len(set(told)), told  # nobody told twice
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "supervision.urge")) == 1


def test_task_urge_twice_at_once_urges_once(session: Session, people: dict[str, Actor], frozen: Any,
                                            race: Race) -> None:
    task_id = _ready(session, _task(session, people))

    def urge(s: Session) -> None:
        operations.urge(s, task_id=task_id, actor=people["zhou"], message="请尽快办理")
    _failed(race(urge, urge), RateLimited)
    assert session.scalar(select(func.count()).select_from(Comment).where(
        Comment.task_id == task_id, Comment.kind == "urge")) == 1
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "task.urge")) == 1



def _urges(people: dict[str, Actor], task_id: int, who: str = "zhou") -> dict[str, Work]:
    """The two ways to urge a task: its own page (催办) and the leader's 督办."""
    return {"task page": lambda s: operations.urge(s, task_id=task_id, actor=people[who], message="请尽快办理"),
            "督办": lambda s: supervision.urge(s, seen=None, actor=people[who], object_type="task", object_id=task_id,
                                              message="请尽快办理")}


@pytest.mark.parametrize("first", ["task page", "督办"])
def test_one_urge_of_a_task_an_hour_whichever_way(session: Session, people: dict[str, Actor], frozen: Any,
                                                  first: str) -> None:
    task_id = _task(session, people).id
    session.commit()
    routes = _urges(people, task_id)
    second = next(r for r in routes if r != first)
    routes[first](session)
    session.commit()
    frozen.advance(timedelta(minutes=59))
    with pytest.raises(RateLimited, match="一小时内已催办过"):
        routes[second](session)
    session.rollback()
    _urges(people, task_id, "wang")[second](session)  # another person may: the limit is per person
    session.commit()
    frozen.advance(timedelta(minutes=2))  # an hour and a minute after the first: the same person may again
    routes[second](session)
    session.commit()
    assert session.scalar(select(func.count()).select_from(Comment).where(
        Comment.task_id == task_id, Comment.kind == "urge")) == 3


def test_a_leader_urging_a_task_both_ways_at_once_urges_once(session: Session, people: dict[str, Actor], frozen: Any,
                                                             race: Race) -> None:
    task_id = _ready(session, _task(session, people))
    _failed(race(*_urges(people, task_id).values()), RateLimited)
    assert session.scalar(select(func.count()).select_from(Comment).where(
        Comment.task_id == task_id, Comment.kind == "urge")) == 1


def test_a_decision_from_a_page_that_showed_an_earlier_request_is_refused(
        session: Session, people: dict[str, Actor], frozen: Any) -> None:
    """Two leaders, one busy morning: 王 refuses the request 周's page shows, 张 asks again (another date, another
    reason); 周's decision, sent from the page that showed the first, decided the second unread. Refused (409
    naming `seen`), the new request still pending, nothing recorded; from a fresh page it is decided."""
    task = _task(session, people)
    first = supervision.request_extension(session, actor=people["zhang"], task_id=task.id, due_date=date(2025, 9, 20),
                                          reason="等待企业补充材料")
    session.commit()
    shown = supervision.extension_version(first)
    supervision.decide_extension(session, actor=people["wang"], object_type="task", object_id=task.id, grant=False,
                                 opinion="材料不全", seen=shown)
    second = supervision.request_extension(session, actor=people["zhang"], task_id=task.id,
                                           due_date=date(2025, 12, 31), reason="企业改变选址")
    session.commit()
    audited = session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(Conflict) as refused:
        supervision.decide_extension(session, actor=people["zhou"], object_type="task", object_id=task.id, grant=True,
                                     due_date=date(2025, 9, 19), opinion="同意", seen=shown)
    assert refused.value.details["field"] == "seen"
    session.rollback()
    assert session.get(ExtensionRequest, second.id).status == "pending"  # type: ignore[union-attr]
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == audited
    with pytest.raises(Conflict) as blind:  # a post that does not say what it saw is refused the same way
        supervision.decide_extension(session, actor=people["zhou"], object_type="task", object_id=task.id,
                                     grant=False, opinion="不同意", seen="")
    assert blind.value.details["field"] == "seen"
    session.rollback()
    supervision.decide_extension(session, actor=people["zhou"], object_type="task", object_id=task.id, grant=False,
                                 opinion="不同意", seen=supervision.extension_version(second))
    session.commit()
    assert session.get(ExtensionRequest, second.id).status == "refused"  # type: ignore[union-attr]
