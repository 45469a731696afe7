"""A move (调岗) and a leader granting the mover's 申请延期 at the same moment take the rows in one order: the request
first, then the step's. The move gives the step back and withdraws the request; the grant moves the step's deadline.
Taken the other way round (the move: the step, then the request; the grant: the request, then the step) PostgreSQL
ended one of them as a deadlock (a 500 on 编辑人员's page, a failed directory sync). Each interleaving is forced: the
second operation is started at a chosen point of the first, which goes on once the second waits for a lock it holds.
PostgreSQL only (row locks; SQLite has one writer)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, org, tasks
from engine.audit.models import AuditEvent
from engine.deadlines.models import ExtensionRequest
from engine.errors import Conflict
from engine.org import ldap_read, ldap_sync, leaving, sso_users, staffing
from engine.org.actors import actor_for
from engine.tasks import handover
from engine.tasks.models import HumanTask, TaskCandidate
from plan.supervision import actions
from tests.engine.conftest import waits_for_a_lock
from tests.engine.test_ldap_sync import _linzy_tasks, _sync, _unit, directory  # noqa: F401 (its fixture)
from tests.engine.test_mover_marks import _asked, _user
from tests.engine.test_moves import SSO, _claimed_and_named
from tests.ldap_server import SUFFIX, Directory, dn_of

Work = Callable[[Session], Any]


class Interleave:
    """Start `other` in its own session and thread when this thread reaches `owner.name` (before it, or just after
    it with `after`); go on once `other` waits for a lock or has finished. Every outcome is kept, a deadlock too."""

    def __init__(self, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
        self.factory, self.monkeypatch = factory, monkeypatch
        self.outcome: list[BaseException | None] = []
        self.thread: threading.Thread | None = None

    def at(self, owner: Any, name: str, other: Work, *, after: bool = False) -> None:
        original, me = getattr(owner, name), threading.get_ident()

        def hooked(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != me or self.thread is not None:
                return original(*args, **kwargs)
            result = original(*args, **kwargs) if after else None
            self._start(other)
            return result if after else original(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, hooked)

    def _start(self, other: Work) -> None:
        pid: list[int] = []
        started = threading.Event()

        def work() -> None:
            with self.factory() as s:
                pid.append(int(s.execute(text("SELECT pg_backend_pid()")).scalar() or 0))
                started.set()
                try:
                    other(s)
                    s.commit()
                    self.outcome.append(None)
                except Exception as exc:  # a domain refusal, or PostgreSQL's deadlock
                    s.rollback()
                    self.outcome.append(exc)

        self.thread = threading.Thread(target=work)
        self.thread.start()
        assert started.wait(10)
        for _ in range(400):
            if not self.thread.is_alive() or waits_for_a_lock(self.factory, pid[0]):
                return
            time.sleep(0.025)
        raise AssertionError("the other work neither finished nor waited for a lock")

    def join(self) -> BaseException | None:
        assert self.thread is not None, "the hook was never reached"
        self.thread.join(60)
        assert not self.thread.is_alive() and len(self.outcome) == 1
        return self.outcome[0]


@pytest.fixture
def interleave(db_url: str, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> Iterator[Interleave]:
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer: BEGIN IMMEDIATE)")
    m = Interleave(factory, monkeypatch)
    yield m
    if m.thread is not None:
        m.thread.join(60)


def _later() -> date:
    return (clock.now() + timedelta(days=20)).date()


def _move_by(path: str) -> Work:
    """u0 moves from 审批部门 to 自然资源局: by single sign-on's unit claim, or by an administrator (编辑人员)."""
    def move(s: Session) -> None:
        if path == "sso":
            sso_users.provision(s, SSO, {"sub": "sub-u0", "preferred_username": "u0", "unit": "zrzy"})
        else:
            staffing.set_memberships(s, user_id=_user(s, "u0").id, unit_codes=["zrzy"], role_codes=[],
                                     is_admin=False, seen=None, actor=actor_for(s, "root"))
    return move


def _grant(task_id: int) -> Work:
    return lambda s: actions.decide_extension(s, actor=actor_for(s, "u1"), object_type="task", object_id=task_id,
                                              grant=True, opinion="同意", due_date=_later())


def _run(factory: sessionmaker[Session], work: Work) -> BaseException | None:
    with factory() as s:
        try:
            work(s)
            s.commit()
            return None
        except Exception as exc:
            s.rollback()
            return exc


def _cancels(s: Session) -> list[AuditEvent]:
    return list(s.scalars(select(AuditEvent).where(AuditEvent.action == "supervision.extension_cancel")))


def _setup(factory: sessionmaker[Session]) -> tuple[int, int]:
    claimed, _named = _claimed_and_named(factory)
    asked = _asked(factory, claimed)
    with factory() as s:
        org.add_user(s, username="root", display_name="管理员", is_admin=True)
        s.commit()
    return claimed, asked


@pytest.mark.parametrize("path", ["sso", "admin"])
def test_a_grant_arriving_while_a_move_gives_the_step_back_waits_then_finds_the_request_withdrawn(
        factory: sessionmaker[Session], interleave: Interleave, path: str) -> None:
    """The grant starts once the move holds the step's row (given back): it waits for the move and is refused."""
    claimed, asked = _setup(factory)
    interleave.at(handover, "give_back", _grant(claimed), after=True)
    moved = _run(factory, _move_by(path))
    granted = interleave.join()
    assert moved is None, repr(moved)  # the move always goes through: no deadlock
    assert isinstance(granted, Conflict), repr(granted)  # "no pending request": withdrawn by the move
    with factory() as s:
        request = s.get(ExtensionRequest, asked)
        task = s.get(HumanTask, claimed)
        assert request is not None and request.status == "cancelled" and request.decided_by_id is None
        assert task is not None and task.assignee_id is None  # back in 审批部门's pool
        assert len(_cancels(s)) == 1


@pytest.mark.parametrize("path", ["sso", "admin"])
def test_a_move_arriving_while_a_leader_grants_waits_then_gives_the_step_back_with_its_new_deadline(
        factory: sessionmaker[Session], interleave: Interleave, path: str) -> None:
    """The move starts once the grant holds the request's row, before it moves the step's deadline: the move waits
    for the grant, then finds the request decided (nothing to withdraw) and gives the step back."""
    claimed, asked = _setup(factory)
    interleave.at(actions, "set_deadline", _move_by(path))
    granted = _run(factory, _grant(claimed))
    moved = interleave.join()
    assert granted is None, repr(granted)
    assert moved is None, repr(moved)
    with factory() as s:
        request = s.get(ExtensionRequest, asked)
        task = s.get(HumanTask, claimed)
        assert request is not None and request.status == "granted"
        assert task is not None and task.assignee_id is None and task.due_at is not None
        assert task.due_at.astimezone(clock.SHANGHAI).date() == _later()
        assert not _cancels(s)


def _ldap_world(factory: sessionmaker[Session], ldap: Directory) -> tuple[int, int, Work]:
    """林志远 of 发改局 claims a step from its pool and asks for more time on it; the directory then moves him to
    自然资源局. Returns the step, his request and the directory sync (run as the move)."""
    _sync(factory, ldap.settings())
    _linzy_tasks(factory)
    with factory() as s:
        pool = s.scalars(select(HumanTask).where(HumanTask.state == "ready", HumanTask.assignee_id.is_(None))
                         .order_by(HumanTask.id)).first()
        assert pool is not None
        pool.candidates.clear()
        pool.candidates.append(TaskCandidate(org_unit_id=_unit(s, "fgj").id))
        s.commit()
        tasks.claim(s, task_id=pool.id, actor=actor_for(s, "linzy"))
        request = actions.request_extension(s, actor=actor_for(s, "linzy"), task_id=pool.id,
                                            due_date=(clock.now() + timedelta(days=30)).date(), reason="材料未齐")
        s.commit()
        step, asked = pool.id, request.id
    with ldap.admin() as conn:
        conn.modify_dn(dn_of("linzy", "ou=fgj"), "uid=linzy", new_superior=f"ou=zrzy,{SUFFIX}")
    snap = ldap_read.read(ldap.settings())
    return step, asked, lambda s: ldap_sync.sync(s, ldap.settings(), snap)


def _granted_by_the_head(task_id: int) -> Work:  # 孙明远 heads 发改局: the step is in his area
    return lambda s: actions.decide_extension(s, actor=actor_for(s, "sunmy"), object_type="task", object_id=task_id,
                                              grant=True, opinion="同意", due_date=_later())


@pytest.mark.parametrize("grant_first", [False, True])
def test_the_directory_sync_moving_a_person_and_a_grant_at_once_take_turns(
        factory: sessionmaker[Session], interleave: Interleave, directory: Directory,  # noqa: F811
        grant_first: bool) -> None:
    step, asked, sync = _ldap_world(factory, directory)
    if grant_first:  # the sync starts once the grant holds the request's row
        interleave.at(actions, "set_deadline", sync)
        granted, moved = _run(factory, _granted_by_the_head(step)), interleave.join()
    else:  # the grant starts once the sync holds the step's row
        interleave.at(handover, "give_back", _granted_by_the_head(step), after=True)
        moved, granted = _run(factory, sync), interleave.join()
    assert moved is None, repr(moved)  # the sync always goes through
    with factory() as s:
        request = s.get(ExtensionRequest, asked)
        task = s.get(HumanTask, step)
        assert request is not None and task is not None and task.assignee_id is None  # back in 发改局's pool
        if grant_first:
            assert granted is None and request.status == "granted" and not _cancels(s)
        else:
            assert isinstance(granted, Conflict), repr(granted)
            assert request.status == "cancelled" and len(_cancels(s)) == 1


@pytest.mark.parametrize("grant_first", [False, True])
def test_a_deactivation_and_a_grant_at_once_take_turns_whichever_comes_first(
        factory: sessionmaker[Session], interleave: Interleave, grant_first: bool) -> None:
    """停用 withdraws first (engine.org.leaving.deactivate_user), in the grant's order: forced here both ways."""
    claimed, asked = _setup(factory)

    def deactivate(s: Session) -> None:
        leaving.deactivate_user(s, user_id=_user(s, "u0").id, actor=actor_for(s, "root"), successor="u1")

    if grant_first:
        interleave.at(actions, "set_deadline", deactivate)
        granted, left = _run(factory, _grant(claimed)), interleave.join()
    else:  # the grant starts once the 停用 holds the request's row and the step's
        interleave.at(handover, "hand_over", _grant(claimed), after=True)
        left, granted = _run(factory, deactivate), interleave.join()
    assert left is None, repr(left)
    with factory() as s:
        request = s.get(ExtensionRequest, asked)
        task = s.get(HumanTask, claimed)
        assert request is not None and task is not None and task.assignee_id == _user(s, "u1").id
        if grant_first:
            assert granted is None and request.status == "granted" and not _cancels(s)
        else:
            assert isinstance(granted, Conflict), repr(granted)
            assert request.status == "cancelled" and len(_cancels(s)) == 1
