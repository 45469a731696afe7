"""Load, run and save instances: state, the human_task projection and next_timer_at move together.

Every service that changes an instance goes load → act → `run` → `save`, in the caller's
transaction. `save` is the optimistic lock: UPDATE … WHERE lock_version = the one we loaded.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from engine import audit, clock, config
from engine.audit import anchor as audit_anchor
from engine.audit import in_statement
from engine.audit.models import AuditEvent
from engine.db import is_postgres
from engine.errors import ConcurrentModification, DutyRefused, EngineError, InstanceArchived, InstanceNotFound
from engine.org.actors import SYSTEM, Actor
from engine.runtime import assignment, effects, hot, linked, oversize, projection, refusal, row_read, start_limits
from engine.runtime.assignment import due_time
from engine.runtime.models import (
    ArchivedState,
    Incident,
    ProcessInstance,
    ProcessStateHistory,
)
from engine.runtime.oversize import StateTooLarge
from engine.runtime.running import Running
from engine.runtime.version_cache import VersionInfo, _spec_cache, specs_for, version_info
from engine.spiff import events, fanout, guards, sandbox, serializer, timers
from engine.spiff import workflow as spiff
from engine.spiff.workflow import Task, Workflow, find_task
from engine.tasks.models import HumanTask

log = logging.getLogger(__name__)

COMPACT_BATCH = 8  # finished tasks cut at once: one history row every few saves of a looping instance
_engine: sandbox.SandboxScriptEngine | None = None


def script_engine() -> sandbox.SandboxScriptEngine:
    """Return the process-wide sandboxed script engine (budgets are per thread)."""
    global _engine
    if _engine is None:
        settings = config.load()
        _engine = sandbox.SandboxScriptEngine(time_limit=settings.script_time_limit, fuel=settings.script_fuel,
                                              services=effects.ServiceMap())
    return _engine


def load(session: Session, instance_id: int, *, read_only: bool = False, row: ProcessInstance | None = None,
         with_open_rows: bool = False, lock: bool = False) -> Running:
    """Load an instance and its workflow (sandbox attached).

    `read_only`: the caller only looks (a page, a preview) and promises not to change the workflow;
    it stays in the hot-instance cache for the unit of work that acts next.
    `row`: the instance's row as the caller just read it in this transaction (populate_existing), not read again.
    `with_open_rows`: read the instance's open bpmn rows with its row, for a save that follows with no change to
    human_task in between (a message delivery): its projection then reads nothing more.
    `lock`: lock the instance's row (FOR UPDATE, PostgreSQL) in the same read (not with `row`: it reads nothing),
    before the save touches its task rows.

    Raises: InstanceNotFound
    """
    # The row comes with its state unless this process holds the instance hot (runtime/row_read.py).
    # `lock` takes the row FOR UPDATE, as the timer sweep and 终止 do, so a delivery takes the instance before the
    # task rows its save closes, as a submission does (FOR KEY SHARE in its first read); in the other order each
    # waited for the other until PostgreSQL ended one as a deadlock.
    open_rows: dict[str, HumanTask] | None = None
    if row is None or row.id != instance_id:
        found = row_read.read(session, instance_id, with_open_rows=with_open_rows, lock=lock and is_postgres(session))
        row = found[0][0] if found else None
        if found:  # the commit's audit append starts from the head (one statement, no lock first)
            audit.saw_head(session, f"instance:{instance_id}", found[0][1], found[0][2])
        if with_open_rows:
            open_rows = {r[4].task_guid: r[4] for r in found if r[4] is not None}
    if row is None:
        raise InstanceNotFound(f"流程实例不存在 (no such instance): {instance_id}", instance_id=instance_id)
    if row.archived_at is not None:
        return _load_archived(session, row, read_only=read_only)
    workflow = hot.take(session, row.id, row.lock_version, row.version_id, read_only=read_only)
    if workflow is None:
        state = row.state
        workflow = serializer.load_state(state, specs_for(session, row.version_id), script_engine(),
                                         version=row.serializer_version)
        if read_only:
            hot.borrowed(session, row.id, row.lock_version, row.version_id, workflow,
                         serializer.held_chars(workflow, len(state)))
    workflow.script_engine = script_engine()
    return Running(row=row, workflow=workflow, lock_version=row.lock_version, open_rows=open_rows)


def _load_archived(session: Session, row: ProcessInstance, *, read_only: bool) -> Running:
    """Load an archived instance's workflow from the archive, to look at only (never cached, never saved)."""
    if not read_only:
        raise InstanceArchived(
            f"流程实例 {row.id} 已归档，只能查看，不能迁移、重试、重新打开或作其他更改 "
            f"(instance {row.id} is archived and read-only)", instance_id=row.id)
    archived = session.get(ArchivedState, row.id)
    if archived is None:  # the marker and the state move in one transaction: this is a damaged database
        raise InstanceNotFound(f"归档的流程状态缺失: {row.id} (archived state missing)", instance_id=row.id)
    workflow = serializer.load_state(archived.state, specs_for(session, row.version_id), script_engine(),
                                     version=archived.serializer_version)
    workflow.script_engine = script_engine()
    return Running(row=row, workflow=workflow, lock_version=row.lock_version)


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    return chain


def open_incident(session: Session, running: Running, exc: BaseException, actor: Actor) -> Incident:
    """Stop the instance with an incident describing the engine error (flushes)."""
    chain = _cause_chain(exc)
    kind = "engine_error"
    if any(isinstance(e, MemoryError) for e in chain):
        kind = "out_of_memory"
    elif any(isinstance(e, (StateTooLarge, fanout.CopiesTooLarge)) for e in chain):
        kind = "state_too_large"
    elif any(isinstance(e, (sandbox.BudgetExceeded, RecursionError)) for e in chain):
        kind = "budget_exceeded"
    elif any(isinstance(e, assignment.ExpressionFailed) for e in chain):
        kind = "expression_error"
    elif any(isinstance(e, timers.TimerOutOfRange) for e in chain):
        kind = "timer_error"
    elif any(isinstance(e, guards.TaskTreeTooDeep) for e in chain):
        kind = "tree_too_deep"
    elif any(isinstance(e, fanout.TooManyInstances) for e in chain):
        kind = "too_many_instances"
    elif any(isinstance(e, guards.RunTooLong) for e in chain):
        kind = "run_too_long"
    elif refused := next((e for e in chain if isinstance(e, (events.ThrowRefused, start_limits.TooManyStarts))), None):
        kind = refused.kind
    elif any(isinstance(e, sandbox.SandboxViolation) or spiff.is_spiff_error(e) for e in chain):
        kind = "script_error"
    task = getattr(exc, "task", None)
    bpmn_id = getattr(getattr(task, "task_spec", None), "bpmn_id", None) or (
        exc.bpmn_id if isinstance(exc, StateTooLarge) else None)
    message = "; ".join(dict.fromkeys(str(e) for e in chain if str(e)))[:4000] or type(exc).__name__
    incident = Incident(instance_id=running.row.id, bpmn_id=bpmn_id, kind=kind, message=message)
    session.add(incident)
    running.row.status = "incident"
    running.incident = incident
    session.flush()
    audit.record(session, actor, "instance.incident", stream=f"instance:{running.row.id}",
                 object_type="process_instance", object_id=running.row.id,
                 after={"kind": kind, "bpmn_id": bpmn_id, "message": message[:500]})
    return incident


def is_engine_error(exc: BaseException) -> bool:
    """Tell whether an error raised by engine steps belongs to the instance (an incident) rather than the caller.

    Domain errors (EngineError) and database errors go to the caller: the transaction is rolled back.
    Anything else the process's content caused (a script, an expression, a timer, SpiffWorkflow, memory).
    """
    if not isinstance(exc, Exception) or isinstance(exc, EngineError):
        return False
    # 职责分离 refused by a service (engine.tasks.duties): the person may not do this step; the caller is refused
    return not any(isinstance(e, (SQLAlchemyError, DutyRefused)) for e in _cause_chain(exc))



def run(session: Session, running: Running, actor: Actor, *, refresh_timers: bool = False) -> None:
    """Run engine steps within the script and run budgets; an engine error becomes an incident."""
    settings = config.load()
    engine = script_engine()
    workflow = running.workflow
    # Scripts pay the script budget; SpiffWorkflow's own work (a loop, a fork, a timer cycle) pays this one.
    guard = guards.run_guard(seconds=settings.run_time_limit, max_tasks=settings.max_run_tasks)
    from engine.runtime import message_rules  # it loads this module
    throws = events.throw_guard(workflow, message_rules.thrown_problem, most=message_rules.MAX_THROWN,
                                total=settings.max_state_kb * 1024)  # what it throws is queued at the save

    def did_complete(task: Task) -> None:
        guard(task)
        throws(task)

    def steps() -> None:
        # The budget is per thread and run_deep runs us in a thread of its own: enter it here.
        with engine.budget(seconds=settings.script_time_limit, fuel=settings.script_fuel):
            spiff.run_engine_steps(workflow, refresh_timers=refresh_timers, did_complete_task=did_complete)

    try:
        with effects.bound(session, running, actor):
            guards.run_deep_for(len(workflow.tasks), steps)
        guards.check_depth(workflow)
    except Exception as exc:
        refused = next((e for e in _cause_chain(exc) if isinstance(e, DutyRefused)), None)
        if refused is not None:  # as the service raised it, not as SpiffWorkflow wrapped it
            raise refused from None
        if not is_engine_error(exc):
            raise
        release(exc)
        refuse(running, exc)  # a service refused what the person just submitted: nothing is kept
        open_incident(session, running, exc, actor)


def refuse(running: Running, exc: BaseException) -> None:
    """Refuse the person's submission when the engine error is a service refusing a field of it; else return.

    Raises: SubmissionRefused (engine/runtime/refusal.py)
    """
    refusal.refuse(running, _cause_chain(exc))


def release(exc: BaseException) -> None:
    """Drop the tracebacks of a MemoryError's chain: their frames hold what filled the memory."""
    chain = _cause_chain(exc)
    if any(isinstance(e, MemoryError) for e in chain):
        for e in chain:
            e.__traceback__ = None


def complete_user_task(running: Running, task_guid: str, data: dict[str, Any], actor: Actor) -> Task:
    """Put the submitted data on a READY user task and run it (engine steps follow in `run`).

    Raises: ConcurrentModification when the task is no longer READY
    """
    task = find_task(running.workflow, task_guid)
    if task is None or not spiff.is_ready(task):  # task.run() does not check this itself
        raise ConcurrentModification(running.row.id)
    # SpiffArena's convention: form fields become task data; a multi-instance task's designer
    # builds its output item from them (e.g. in a postScript with scriptsOnInstances).
    task.data.update(data)
    running.completed_by[task_guid] = actor.user_id
    settings = config.load()
    engine = script_engine()

    def run_task() -> None:
        with engine.budget(seconds=settings.script_time_limit, fuel=settings.script_fuel):
            task.run()  # runs the task's postScript

    guards.run_deep_for(len(running.workflow.tasks), run_task)
    return task


def save(session: Session, running: Running, *, event: Callable[[], AuditEvent] | None = None) -> None:
    """Write state with the optimistic lock, then the projection and next_timer_at (flushes).

    `event`: builds the unit of work's audit event (`new_event`) once the status is settled; recorded right after
    the state, in the save's own statement where it can be (PostgreSQL, the stream's head seen and free).

    Raises: ConcurrentModification
    """
    row, workflow = running.row, running.workflow
    now = clock.now()
    if row.status == "running" and guards.is_really_completed(workflow):
        row.status = "completed"
        row.ended_at = now
    # One walk each for the READY user tasks and the next timer: the event's summary (waiting_summary), the state row
    # and the projection all use them.
    settled = running.settled = _settled(workflow)
    try:
        ev = event() if event is not None else None
    finally:
        running.settled = None
    settings = config.load()
    # Earlier rounds of a loop and finished subprocesses (a multi-instance's claimed children) leave the live state for
    # the history table: the state stays the size of the live part.
    history = serializer.compact(workflow, keep=settings.state_keep_levels, batch=COMPACT_BATCH) \
        if row.status == "running" else None
    thrown = events.drain_thrown(workflow)  # queued by messages.sync below, never written with the state
    state = serializer.dump_state(workflow)
    limit = settings.max_state_kb * 1024
    size = oversize.counted(workflow, len(state), limit)  # what SpiffWorkflow repeats when a workflow ends is not
    if size > limit:  # a person's submission that makes it so is refused (writes nothing), else an incident
        if running.submitted is not None:
            oversize.refuse_submission(running.submitted, size, limit, before=len(row.state or ""))
        state = _keep_old_state(session, running, oversize.too_large(workflow, size, limit))
        thrown = []  # the run that threw them is not saved
        workflow = running.workflow
        history = None
        settled = _settled(workflow)
    next_timer = settled[1] if row.status == "running" else None
    values = dict(state=state, serializer_version=serializer.SERIALIZER_VERSION,
                  status=row.status, next_timer_at=next_timer, updated_at=now, ended_at=row.ended_at,
                  lock_version=running.lock_version + 1)
    info = version_info(session, row.version_id)
    projected = projection.plan(session, running, info.process_key, info.lane_map, script_engine(), settled[0])
    from engine.runtime import messages  # messages loads, runs and saves instances itself
    # PostgreSQL: one round trip writes the state, history, projection and the audit event (unless a message catch
    # may make this transaction wait for something after the save). Otherwise the unit of work writes the new rows.
    fused = is_postgres(session) and not projected.problems.errors and not projected.problems.to_tell  # rare
    if fused:
        inline = in_statement.for_statement(session, ev) \
            if ev is not None and not messages.has_catches(session, row.version_id) else None
        event_id = projection.write_postgres(session, row, values, running.lock_version, projected, history, inline)
        if ev is not None:
            in_statement.written_by_statement(session, ev, event_id)  # or kept for the commit
    else:
        projection.claim_now(session)  # before the flush writes the row: a claim made since the read wins
        session.add_all(projected.created)  # pending, with their candidates: the flush writes them
        result = session.execute(update(ProcessInstance)
                                 .where(ProcessInstance.id == row.id, ProcessInstance.lock_version == running.lock_version)
                                 .values(**values).execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            projection.discard(session, projected)
            raise ConcurrentModification(row.id)
        if ev is not None:
            audit_anchor.defer(session, ev)
    for key, value in values.items():
        set_committed_value(row, key, value)
    running.lock_version += 1
    if history is not None and not fused:
        session.execute(insert(ProcessStateHistory).values(
            instance_id=row.id, lock_version=running.lock_version, serializer_version=serializer.SERIALIZER_VERSION,
            tasks=history, created_at=now))
    hot.saved(session, row.id, running.lock_version, row.version_id, workflow, serializer.held_chars(workflow, len(state)))
    if not fused:
        _flush_projection(session, running, projected)
        projection.flush_linked(session, projected, now)
    linked.kept(running, projected.moved, projected.cosigners)
    messages.sync(session, running, thrown)  # what it waits on (message_subscription) and what it threw
    session.flush()
    hot.note_tasks(session, row.id, [h.id for h in projected.created])  # the next completion's read knows them hot


def _settled(workflow: Workflow) -> tuple[list[Task], datetime | None]:
    return spiff.ready_user_tasks(workflow), timers.next_timer_at(workflow)


def _keep_old_state(session: Session, running: Running, exc: StateTooLarge) -> str:
    """Refuse an oversized state: open an incident and go back to the last saved state (or the start)."""
    row = running.row
    open_incident(session, running, exc, SYSTEM)
    specs = specs_for(session, row.version_id)
    old = row.state if row.state and row.state != "{}" else serializer.dump_state(
        serializer.new_workflow(specs, script_engine()))
    running.workflow = serializer.load_state(old, specs, script_engine())
    row.ended_at = None
    return old


def _flush_projection(session: Session, running: Running, projected: projection.Plan) -> None:
    """Write a planned projection with the unit of work (flushes); an assignment problem becomes the incident."""
    session.flush()
    if projected.problems.errors and running.row.status == "running":
        open_incident(session, running, projected.problems.errors[0], SYSTEM)
        for human in projected.created:
            if human.state == "ready":
                human.state = "suspended"
        session.flush()


def record(session: Session, running: Running, actor: Actor, action: str, *, before: Any = None, after: Any = None) -> None:
    """Write the instance's audit event for this unit of work; tell whom its saves cancelled a task of (linked.tell)."""
    linked.tell(session, running, actor, action)
    audit.record(session, actor, action, stream=f"instance:{running.row.id}", object_type="process_instance",
                 object_id=running.row.id, before=before, after=after)


def new_event(running: Running, actor: Actor, action: str, *, before: Any = None, after: Any = None) -> AuditEvent:
    """The instance's audit event for this unit of work, for `save` to record with the state."""
    return audit.new_event(actor, action, stream=f"instance:{running.row.id}", object_type="process_instance",
                           object_id=running.row.id, before=before, after=after)


def waiting_summary(running: Running) -> dict[str, Any]:
    """Describe where the instance stands, for audit events."""
    ready_tasks, timer = running.settled or (spiff.ready_user_tasks(running.workflow),
                                             timers.next_timer_at(running.workflow))
    ready = [t.task_spec.bpmn_id for t in ready_tasks]
    return {"status": running.row.status, "ready": ready,
            "next_timer_at": timer.isoformat() if timer else None}


__all__ = ["COMPACT_BATCH", "Running", "StateTooLarge", "VersionInfo", "_spec_cache", "complete_user_task", "due_time",
           "find_task", "is_engine_error", "load", "new_event", "open_incident", "record", "refuse", "release", "run",
           "save", "script_engine", "specs_for", "version_info"]
