"""The concurrency suite (Trust II): 16 writers on one instance, mixed operations, real threads on PostgreSQL.

Each writer has its own session and connection and, round after round, comments, claims, completes,
urges (催办), copies (抄送) or attaches on one instance of a process with four sibling tasks in a loop.
A refusal the business rules foresee (409 someone else was quicker, 429 already urged) is fine; any
other exception is a server error. Every acknowledged write is counted and looked up afterwards, and
the audit chain must verify. Runs in `make test`; without PostgreSQL it skips, and fails under CI=true.
Rounds: JZFLOW_CONCURRENCY_ROUNDS (default 200).
"""
from __future__ import annotations

import os
import random
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, org, tasks
from engine.audit.models import AuditEvent
from engine.errors import EngineError, InvalidInput
from engine.org.actors import Actor, actor_for
from engine.org.models import OrgUnit, User
from engine.runtime import instances
from engine.tasks import collab, operations
from engine.tasks.collab_models import Attachment, CarbonCopy, Comment
from engine.tasks.models import HumanTask
from tests.engine.conftest import staff

WRITERS = 16
ROUNDS = int(os.environ.get("JZFLOW_CONCURRENCY_ROUNDS", "200"))
OPERATIONS = ("comment", "claim", "complete", "urge", "cc", "attach")
pytestmark = pytest.mark.concurrency


@dataclass
class Tally:
    acked: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    comments: set[str] = field(default_factory=set)
    claims: set[tuple[int, int]] = field(default_factory=set)  # (task, user)
    completions: set[tuple[int, int]] = field(default_factory=set)
    urges: set[str] = field(default_factory=set)
    copies: set[str] = field(default_factory=set)
    attachments: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _open_tasks(s: Session, instance_id: int) -> list[HumanTask]:
    return list(s.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id,
                                                  HumanTask.state == "ready").order_by(HumanTask.id)))


def _operate(s: Session, op: str, me: Actor, other: Actor, urger: Actor, instance_id: int, tag: str,
             rng: random.Random, tally: Tally) -> None:
    """Do one operation and commit; record what was acknowledged (after the commit only)."""
    open_tasks = _open_tasks(s, instance_id)
    task = rng.choice(open_tasks) if open_tasks else None
    done: list[tuple[str, object]] = []
    if op == "comment" or task is None:
        collab.add_comment(s, instance_id=instance_id, actor=me, body=tag)
        op, done = "comment", [("comments", tag)]
    elif op == "claim":
        free = [t for t in open_tasks if t.assignee_id is None] or [task]
        chosen = rng.choice(free)
        done = [] if chosen.assignee_id == me.user_id else [("claims", (chosen.id, me.user_id))]  # mine: a no-op
        tasks.claim(s, task_id=chosen.id, actor=me)
    elif op == "complete":
        mine = [t for t in open_tasks if t.assignee_id == me.user_id]
        chosen = mine[0] if mine else task
        if chosen.assignee_id != me.user_id:
            tasks.claim(s, task_id=chosen.id, actor=me)
            done.append(("claims", (chosen.id, me.user_id)))
        tasks.complete(s, task_id=chosen.id, actor=me, data={"stop": False, "note": tag})
        done.append(("completions", (chosen.id, me.user_id)))
    elif op == "urge":  # 催办 is the unit head's (a handler or candidate may not urge their own task)
        operations.urge(s, task_id=task.id, actor=urger, message=tag)
        done = [("urges", tag)]
    elif op == "cc":
        collab.carbon_copy(s, instance_id=instance_id, actor=me, usernames=[other.username], note=tag)
        done = [("copies", tag)]
    else:
        collab.attach(s, instance_id=instance_id, actor=me, name=f"{tag}.txt", content=tag.encode())
        done = [("attachments", f"{tag}.txt")]
    s.commit()
    with tally.lock:
        tally.acked[op] += 1
        for kind, item in done:
            getattr(tally, kind).add(item)


def _instance_full(op: str, exc: EngineError) -> bool:
    """The instance holds the most files it takes (collab.MAX_INSTANCE_FILES): ~530 attaches are tried on one."""
    return op == "attach" and isinstance(exc, InvalidInput) and "the most it takes" in exc.message


def _writer(factory: sessionmaker[Session], w: int, people: list[Actor], head: Actor, instance_id: int,
            start: threading.Barrier, tally: Tally) -> None:
    rng = random.Random(w)
    start.wait()
    for rnd in range(ROUNDS):
        op = OPERATIONS[(w + rnd) % len(OPERATIONS)]
        with factory() as s:
            try:
                _operate(s, op, people[w], people[(w + 1) % WRITERS], head, instance_id, f"w{w}r{rnd}", rng, tally)
            except EngineError as exc:
                s.rollback()
                with tally.lock:
                    if exc.http_status in (404, 409, 429) or _instance_full(op, exc):  # lost a race, or a rule said no
                        tally.refused[f"{op}:{type(exc).__name__}"] += 1
                    else:
                        tally.errors.append(f"w{w} r{rnd} {op}: {exc!r}")
            except Exception as exc:
                s.rollback()
                with tally.lock:
                    tally.errors.append(f"w{w} r{rnd} {op}: {exc!r}\n{traceback.format_exc(limit=-6)}")


def _count(s: Session, query: object) -> int:
    return int(s.scalar(query) or 0)  # type: ignore[call-overload]


def test_concurrency_suite_on_postgres(pg_factory: sessionmaker[Session]) -> None:
    people = staff(pg_factory, WRITERS)
    with pg_factory() as session:
        org.add_user(session, username="head", display_name="处长")
        dept = session.scalars(select(OrgUnit).where(OrgUnit.code == "dept")).one()
        dept.leader_id = session.scalars(select(User.id).where(User.username == "head")).one()
        session.commit()
        head = actor_for(session, "head")
        instance_id = instances.start(session, process_key="siblings", actor=people[0]).id
        session.commit()
    tally = Tally()
    start = threading.Barrier(WRITERS)
    threads = [threading.Thread(target=_writer, args=(pg_factory, w, people, head, instance_id, start, tally))
               for w in range(WRITERS)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    elapsed = time.perf_counter() - began
    assert not any(t.is_alive() for t in threads)
    assert tally.errors == [], f"{len(tally.errors)} server errors, first: {tally.errors[:5]}"

    with pg_factory() as s:
        def stored(model: type, column: object, kind: str | None = None) -> set[object]:
            query = select(column).where(model.instance_id == instance_id)  # type: ignore[attr-defined]
            if kind:
                query = query.where(model.kind == kind)  # type: ignore[attr-defined]
            return set(s.scalars(query))

        assert tally.comments <= stored(Comment, Comment.body, "comment")
        assert tally.urges <= stored(Comment, Comment.body, "urge")
        assert tally.copies <= stored(CarbonCopy, CarbonCopy.note)
        assert tally.attachments <= stored(Attachment, Attachment.name)
        # The instance's cap on files is a count, not a lock: writers that counted at once may each pass it, no more.
        assert len(stored(Attachment, Attachment.name)) <= collab.MAX_INSTANCE_FILES + WRITERS - 1
        completed = set(s.execute(select(HumanTask.id, HumanTask.completed_by_id)
                                  .where(HumanTask.instance_id == instance_id, HumanTask.state == "completed")).all())
        assert tally.completions == {tuple(row) for row in completed}, (tally.acked, tally.refused)
        claimed = {(int(e.object_id), e.actor_id) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.stream == f"instance:{instance_id}", AuditEvent.action == "task.claim"))}
        assert tally.claims == claimed
        actions = Counter(s.scalars(select(AuditEvent.action).where(AuditEvent.stream == f"instance:{instance_id}")))
        assert actions["instance.comment"] == len(tally.comments)
        assert actions["task.urge"] == len(tally.urges)
        assert actions["instance.cc"] == len(tally.copies)
        assert actions["instance.attach"] == len(tally.attachments)
        assert actions["task.complete"] == len(tally.completions)
        seqs = list(s.scalars(select(AuditEvent.seq).where(AuditEvent.stream == f"instance:{instance_id}")
                              .order_by(AuditEvent.seq)))
        assert seqs == list(range(1, len(seqs) + 1))
        assert audit.seal(s) is not None
        s.commit()
        report = audit.verify(s)
        assert report.ok, report.problems
    writes = sum(tally.acked.values())
    print(f"\n{WRITERS} writers × {ROUNDS} rounds in {elapsed:.1f} s: {writes} acknowledged writes "
          f"{dict(tally.acked)}, refused {dict(tally.refused)}, {len(seqs)} audit events on the instance")
    assert tally.acked["comment"] > 0 and tally.acked["complete"] > 0 and tally.acked["claim"] > 0
