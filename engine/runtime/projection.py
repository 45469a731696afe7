"""The human_task projection of a save: which open rows move or close and which are new, and one statement on PostgreSQL.

`plan` mirrors the workflow's READY manual tasks onto the instance's open rows in memory (no writes; new rows
are added to the session). `write_postgres` then writes the instance's state and that plan in one
data-modifying statement: the state UPDATE is the optimistic lock, and every other part writes only when it
matched. One round trip instead of one per table (the state, the moved rows, the new rows, their candidates),
and no unit-of-work flush for them. SQLite keeps the flush: its statements cost no round trip.
"""
from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Column, Table, inspect, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import PassiveFlag, Session, make_transient_to_detached
from sqlalchemy.orm.attributes import get_history, instance_dict, set_committed_value

from engine import clock, direct, task_properties
from engine.audit import in_statement
from engine.deadlines import calendar, sla
from engine.errors import ConcurrentModification
from engine.org.actors import Actor
from engine.runtime import assignment, linked
from engine.runtime.models import ProcessInstance
from engine.runtime.running import Running
from engine.spiff import workflow as spiff
from engine.spiff.workflow import Task, find_task
from engine.tasks.models import HumanTask, TaskCandidate, is_open

log = logging.getLogger(__name__)

SUBJECT_KEYS = ("title", "name", "label")  # what a multi-instance item that is a mapping is called by
# What no task title may hold: control characters (PostgreSQL's text refuses NUL) and lone surrogates (not UTF-8).
_UNWRITABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def task_title(task: Task, engine: Any = None, subject: str | None = None) -> str:
    """Name a task by its step and what it works on: the `subject` property's value, else its multi-instance item.

    Instances of one step (five 部门审查, four 认领计划任务) must tell themselves apart in every list.
    """
    name = task.task_spec.bpmn_name or task.task_spec.bpmn_id or task.task_spec.name
    label: Any = None
    if subject and engine is not None:
        try:
            label = engine.evaluate(task, subject)
        except Exception:  # a subject that does not evaluate leaves the step's name alone
            log.warning("task %s: the subject expression %r failed",
                        task.task_spec.bpmn_id, subject, exc_info=True)
    if label is None:
        label = spiff.multi_instance_item(task)
    if isinstance(label, dict):
        label = next((label[k] for k in SUBJECT_KEYS if isinstance(label.get(k), str) and label[k]), None)
    if isinstance(label, (str, int)) and not isinstance(label, bool) and str(label).strip():
        name = f"{name} · {str(label).strip()}"
    return _UNWRITABLE.sub("", str(name))[:300]  # a subject from data or a script cannot stop the save


@dataclass
class Plan:
    """What a save does to the projection, decided in memory."""

    moved: list[HumanTask]  # the instance's open rows, each still open (state kept) or closed now
    created: list[HumanTask]  # new rows with their candidates, not in the session (save adds them for a flush)
    problems: assignment.Problems
    # the co-signers (加签) of the rows it closed that it cancelled with them, each with the state it had (linked)
    cosigners: list[tuple[int, str]] = field(default_factory=list)
    # the open rows it sets aside (ready → suspended) and gives back (suspended → ready): their co-signers follow
    paused: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)


def plan(session: Session, running: Running, process_key: str, lane_map: dict[str, dict[str, int]],
         engine: Any, ready_tasks: list[Task]) -> Plan:
    """Mirror the workflow's READY manual tasks (`ready_tasks`, as `spiff.ready_user_tasks` gives them) onto the
    instance's open rows (in memory, nothing written)."""
    row, workflow = running.row, running.workflow
    now = clock.now()
    active = row.status == "running"
    ready: dict[str, Task] = {}
    if row.status in ("running", "suspended", "incident"):
        ready = {str(t.id): t for t in ready_tasks}
    # Open rows only: a step that is READY again (退回, 撤回) gets a new row with a fresh deadline, and the rows
    # of its earlier rounds stay in the history as they were.
    existing = running.open_rows if running.open_rows is not None else {h.task_guid: h for h in session.scalars(
        select_open(row.id))}
    running.open_rows = None  # read once: a later save of this unit of work reads them again
    paused: list[int] = []
    resumed: list[int] = []
    for guid, human in existing.items():
        if guid in ready:
            state = "ready" if active else "suspended"
            if human.state != state and human.id is not None:
                (paused if state == "suspended" else resumed).append(human.id)
            human.state = state
            continue
        task = find_task(workflow, guid)
        finished = task is not None and spiff.is_completed(task)
        human.state = "completed" if finished else "cancelled"
        human.completed_at = now
        if finished and guid in running.completed_by:
            human.completed_by_id = running.completed_by[guid]
    problems = assignment.Problems([])
    created: list[HumanTask] = []
    for guid, task in ready.items():
        if guid in existing:
            continue
        props: dict[str, str] = dict(task.task_spec.extensions.get("properties", {}) or {})
        human = HumanTask(
            instance_id=row.id, task_guid=guid, bpmn_id=task.task_spec.bpmn_id or task.task_spec.name,
            name=task_title(task, engine, props.get("subject")), process_key=process_key, lane=task.task_spec.lane,
            state="ready" if active else "suspended", form_schema=props.get("formJsonSchemaFilename"),
            form_ui_schema=props.get("formUiSchemaFilename"), sla=props.get("sla"), created_at=now,
            instructions=task.task_spec.extensions.get("instructionsForEndUser"),
            priority=task_properties.DEFAULT_PRIORITY, escalation=props.get("escalation") or None,
        )
        # Deploy refuses what is out of range; a version deployed before that check gets an incident, not a 500.
        try:
            human.priority = task_properties.priority_of(props.get("priority"))
        except ValueError as exc:
            problems.add(task, "priority", str(props.get("priority")), str(exc))
        if human.sla:
            try:
                human.due_at = calendar.due_from_sla(now, human.sla)
                human.warn_at = sla.task_warn_time(human.escalation_policy, now, human.due_at)
            except (ArithmeticError, ValueError) as exc:
                human.due_at = human.warn_at = None
                problems.add(task, "sla", human.sla, f"{type(exc).__name__}: {exc}")
        if props.get("due"):
            assignment.apply_due(engine, task, props["due"], human, now, problems)
        assignment.assign(session, engine, task, human, props, lane_map, row.started_by_id, problems)
        created.append(human)  # not in the session yet: write_postgres writes it, or the caller adds it for a flush
    running.created_tasks.extend(created)
    return Plan(list(existing.values()), created, problems, paused=paused, resumed=resumed)


def flush_linked(session: Session, projected: Plan, now: datetime) -> None:
    """What a save that flushes does to the co-signers of the rows it closed, set aside or gave back (runtime.linked),
    and the deactivated people and unknown names its new rows passed over (assignment.tell; a save that passes one over
    flushes)."""
    projected.cosigners = linked.close(session, linked.closed_ids(projected.moved), now)
    linked.follow(session, projected.paused, projected.resumed)
    assignment.tell(session, projected.problems)


def select_open(instance_id: int) -> Any:
    """The instance's open bpmn rows."""
    return select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.kind == "bpmn",
                                   is_open(HumanTask.state))


# --- PostgreSQL: the state and the projection in one statement ---------------------------------------------------

STATE_COLUMNS = ("state", "serializer_version", "status", "next_timer_at", "updated_at", "ended_at", "lock_version")
MOVED_COLUMNS = ("state", "assignee_id", "completed_at", "completed_by_id")  # what a save changes on an open row
_TASKS: Table = HumanTask.__table__  # type: ignore[assignment]
_NEW: tuple[Column[Any], ...] = tuple(c for c in _TASKS.columns if not c.primary_key)
_CANDIDATE = ("user_id", "org_unit_id", "role_id")
_CANDIDATES: Table = TaskCandidate.__table__  # type: ignore[assignment]
_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def _sql_type(col: Column[Any]) -> str:
    return str(col.type.compile(dialect=_DIALECT))


# The rows travel as three JSON documents, not one array per column: psycopg dumps each array element by element in
# Python (0.25 ms a completion for 46 arrays), a JSON text in one go. New rows take human_task's own row type, and
# get their ids in the documents' order (WITH ORDINALITY), as a flush gives them. The moved ids also come as an
# array: PostgreSQL guesses 100 rows for a JSON document and would scan all of human_task to join them.
# `claim`, a submission's check of its task: its co-signers are read as the statement's snapshot has them, and a 加签
# committed while the statement waited for the row is not in it. 加签 writes the row (operations._lock), so the row
# then is another version than the snapshot's (ctid): that refuses too, as a change of who holds it does.
# `cosigners` and `extensions`: what closes with the rows the save closes (runtime.linked), their waiting co-signers
# and pending 申请延期; a co-signer who signed while the statement waited for the row keeps the signature. One array
# of ids, which the index on the requests takes (an OR of the two lists made a scan of every request).
# `followed`: the asked co-signers of the rows set aside (挂起) or given back (恢复) follow them; both lists are empty
# in every other save.
_TEMPLATE = """WITH claim AS (
  SELECT id FROM human_task WHERE id = %(claim_id)s::INTEGER AND state = 'ready' AND NOT blocked
  AND (assignee_id = %(claim_actor)s::INTEGER OR (assignee_id IS NULL AND %(claim_free)s::BOOLEAN))
  AND NOT EXISTS (SELECT FROM human_task c WHERE c.parent_task_id = %(claim_id)s::INTEGER AND c.kind = 'cosign'
    AND c.state = 'pending')
  AND ctid = (SELECT ctid FROM human_task WHERE id = %(claim_id)s::INTEGER) FOR UPDATE),
st AS (
  UPDATE process_instance SET {sets} WHERE id = %(s_id)s AND lock_version = %(s_expected)s
  AND (%(claim_id)s::INTEGER IS NULL OR EXISTS (SELECT FROM claim)) RETURNING id),
hist AS (
  INSERT INTO process_state_history (instance_id, lock_version, serializer_version, tasks, created_at)
  SELECT id, %(s_lock_version)s, %(s_serializer_version)s, %(history)s::text, %(s_updated_at)s FROM st
  WHERE %(history)s::text IS NOT NULL),
moved AS (
  UPDATE human_task AS h SET {moved_sets}
  FROM json_to_recordset(%(moved)s::json) AS m({moved_defs})
  WHERE h.id = ANY(%(moved_ids)s::INTEGER[]) AND h.id = m.id AND EXISTS (SELECT FROM st) RETURNING h.id),
created AS (
  INSERT INTO human_task ({new_names})
  SELECT {new_values} FROM json_populate_recordset(NULL::human_task, %(created)s::json) WITH ORDINALITY AS n
  WHERE EXISTS (SELECT FROM st) ORDER BY n.ordinality RETURNING id, task_guid),
cosigners AS (
  UPDATE human_task AS c SET state = 'cancelled', completed_at = %(s_updated_at)s FROM human_task AS was
  WHERE c.parent_task_id = ANY(%(closed_ids)s::INTEGER[]) AND c.kind = 'cosign'
  AND c.state IN ('ready', 'suspended', 'pending')
  AND was.id = c.id AND EXISTS (SELECT FROM st) RETURNING c.id, was.state),
extensions AS (
  UPDATE extension_request SET status = 'cancelled', decided_at = %(s_updated_at)s
  WHERE object_type = 'task' AND status = 'pending' AND EXISTS (SELECT FROM st)
  AND object_id = ANY(%(closed_ids)s::INTEGER[] || ARRAY(SELECT id FROM cosigners)) RETURNING id),
followed AS (
  UPDATE human_task AS c SET state = CASE c.state WHEN 'ready' THEN 'suspended' ELSE 'ready' END
  WHERE c.parent_task_id = ANY(%(paused_ids)s::INTEGER[] || %(resumed_ids)s::INTEGER[]) AND c.kind = 'cosign'
  AND ((c.state = 'ready' AND c.parent_task_id = ANY(%(paused_ids)s::INTEGER[]))
    OR (c.state = 'suspended' AND c.parent_task_id = ANY(%(resumed_ids)s::INTEGER[])))
  AND EXISTS (SELECT FROM st) RETURNING c.id, c.state),
candidates AS (
  INSERT INTO task_candidate (task_id, {cand_names})
  SELECT created.id, {cand_values}
  FROM ROWS FROM (json_to_recordset(%(candidates)s::json) AS ({cand_defs})) WITH ORDINALITY
    AS c(guid, {cand_names}, ordinality)
  JOIN created ON created.task_guid = c.guid ORDER BY c.ordinality
  RETURNING id, task_id, {cand_names}),
{audit}
SELECT 0, id, NULL, NULL::integer, NULL::integer, NULL::integer FROM st
UNION ALL SELECT 1, id, task_guid, NULL, NULL, NULL FROM created
UNION ALL SELECT 2, id, task_id::text, user_id, org_unit_id, role_id FROM candidates
UNION ALL SELECT 3, id, NULL, NULL, NULL, NULL FROM audit_written
UNION ALL SELECT 4, id, NULL, NULL, NULL, NULL FROM claim
UNION ALL SELECT 5, id, state, NULL, NULL, NULL FROM cosigners
UNION ALL SELECT 6, id, NULL, NULL, NULL, NULL FROM extensions
UNION ALL SELECT 7, id, state, NULL, NULL, NULL FROM followed"""


def _statement() -> str:
    """Build the statement once, from the tables' columns (a column added to human_task is written too)."""
    return _TEMPLATE.format(  # nosec B608 # only the models' column names and types: every value is a parameter
        sets=", ".join(f"{k} = %(s_{k})s" for k in STATE_COLUMNS),
        # a column this save did not change keeps what the row holds now (a flush would not write it either)
        moved_sets=", ".join(f"{k} = CASE WHEN m.set_{k} THEN m.{k} ELSE h.{k} END" for k in MOVED_COLUMNS),
        moved_defs=", ".join([*(f"{k} {_sql_type(_TASKS.c[k])}" for k in ("id", *MOVED_COLUMNS)),
                              *(f"set_{k} BOOLEAN" for k in MOVED_COLUMNS)]),
        new_names=", ".join(f'"{c.name}"' for c in _NEW),
        new_values=", ".join(f'n."{c.name}"' for c in _NEW),
        cand_names=", ".join(_CANDIDATE),
        cand_values=", ".join(f"c.{k}" for k in _CANDIDATE),
        cand_defs=", ".join([f"guid {_sql_type(_TASKS.c.task_guid)}",
                             *(f"{k} {_sql_type(_CANDIDATES.c[k])}" for k in _CANDIDATE)]),
        # the event only once the state matched and every moved row is locked (the count reads all of `moved`)
        audit=in_statement.statement_ctes("EXISTS (SELECT FROM st) AND (SELECT count(*) FROM moved) >= 0"))


_SQL = _statement()


def _changed_columns(human: HumanTask) -> list[bool]:
    """Which of MOVED_COLUMNS this unit of work changed on an open row."""
    if not inspect(human).committed_state:  # nothing changed since it was loaded (the instance's other open rows)
        return [False] * len(MOVED_COLUMNS)
    # get_history, not inspect().attrs: that builds a view of every attribute of the row, 0.1 ms a completion
    return [get_history(human, k, PassiveFlag.PASSIVE_NO_INITIALIZE).has_changes() for k in MOVED_COLUMNS]


def _loaded(col: Column[Any], obj: HumanTask) -> Any:
    """The column's value as a flush would write it: the model's default when none was given."""
    value = getattr(obj, col.key)
    if value is None and col.default is not None and not col.nullable:
        default = col.default
        value = default.arg(None) if default.is_callable else default.arg  # type: ignore[attr-defined]
    return value


def _json_value(value: Any) -> Any:
    """A column's value as its JSON document carries it: times in UTC with their offset (JSON columns as they are)."""
    return clock.as_utc(value).isoformat() if isinstance(value, datetime) else value


def _documents(moved: list[tuple[HumanTask, list[bool]]], new: list[HumanTask],
               written: list[dict[str, Any]]) -> dict[str, str]:
    """The moved rows, the new rows (`written`: their columns as `_loaded` gives them) and the new rows' candidates
    as the statement's three JSON parameters."""
    moved_rows = [{"id": h.id, **{k: _json_value(getattr(h, k)) for k in MOVED_COLUMNS},
                   **{f"set_{k}": flag for k, flag in zip(MOVED_COLUMNS, flags, strict=True)}} for h, flags in moved]
    new_rows = [{c.name: _json_value(row[c.key]) for c in _NEW} for row in written]
    candidates = [{"guid": h.task_guid, **{k: getattr(c, k) for k in _CANDIDATE}} for h in new for c in h.candidates]
    return {name: json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
            for name, rows in (("moved", moved_rows), ("created", new_rows), ("candidates", candidates))}


def write_postgres(session: Session, row: ProcessInstance, values: dict[str, Any], expected: int, projected: Plan,
                   history: str | None = None, event: dict[str, Any] | None = None) -> int | None:
    """Write the state UPDATE (optimistic lock on `expected`), the rounds compacted out of it (`history`, a
    process_state_history row), the planned projection and an audit event (`in_statement.for_statement`'s
    parameters) in one statement; return the event's id, None when it was not written.

    A submission's check of its task (`CLAIM`) is made in it on the task's row as it is then, locked first: the
    submitter still holds it, or it was unclaimed when read and is still theirs to claim (a candidate submitting a
    group task claims it here), and no co-signer waits. A release, 改派 or 转办, a claim or a 加签, committed since
    the task was read (or while the statement waited for the row) stops the whole statement.

    Raises: ConcurrentModification, AlreadyClaimed, TaskChanged, TaskBlocked, TaskAlreadyDone (nothing written)
    """
    new = projected.created  # outside the session: no autoflush has written any
    claim: Claim | None = session.info.pop(CLAIM, None)
    params: dict[str, Any] = {f"s_{k}": values[k] for k in STATE_COLUMNS}
    params.update(claim_id=claim.task.id if claim else None, claim_actor=claim.actor.user_id if claim else None,
                  claim_free=claim.free if claim else False)
    params.update(event or in_statement.NO_EVENT, s_id=row.id, s_expected=expected, history=history)
    # Only rows that changed: writing an unchanged open row would lock it, and a writer holding it that waits for this
    # instance's row would deadlock with us (the flush skips them too). In id order, as the flush locks them.
    changed = [(h, _changed_columns(h)) for h in projected.moved if h.id is not None]
    moved = sorted(((h, flags) for h, flags in changed if any(flags)), key=lambda m: m[0].id)
    new_columns = [{c.key: _loaded(c, h) for c in _NEW} for h in new]  # as the statement writes them
    params.update(_documents(moved, new, new_columns), moved_ids=[h.id for h, _ in moved],
                  closed_ids=linked.closed_ids(projected.moved),  # flushed already or not
                  paused_ids=projected.paused, resumed_ids=projected.resumed)
    result = direct.rows(session, _SQL, params)
    if not any(r[0] == 0 for r in result):
        discard(session, projected)
        if claim is not None and not any(r[0] == 4 for r in result):
            from engine.tasks.lookup import submission_refused  # engine.tasks imports this module
            raise submission_refused(session, claim.task, claim.actor, held=not claim.free) or \
                ConcurrentModification(row.id)
        raise ConcurrentModification(row.id)
    for h, flags in moved:
        for k, written in zip(MOVED_COLUMNS, flags, strict=True):
            if written:  # now what the row holds (a change to another column stays for a flush)
                set_committed_value(h, k, getattr(h, k))
        _clean_if_written(session, h)
    _persisted(session, new, new_columns, [r for r in result if r[0] in (1, 2)])
    projected.cosigners = [(r[1], r[2]) for r in result if r[0] == 5]
    linked.written(session, [c for c, _ in projected.cosigners], [r[1] for r in result if r[0] == 6],
                   values["updated_at"])
    linked.followed(session, [(r[1], r[2]) for r in result if r[0] == 7])
    return next((r[1] for r in result if r[0] == 3), None)


CLAIM = "jzflow.claim"  # session.info: the Claim the next save checks (see write_postgres)


class Claim(NamedTuple):
    """A submission's check of its task, made by the save on the task's row as it is then."""

    task: HumanTask
    actor: Actor
    free: bool  # unclaimed when read: the save claims it for the actor (else: the actor must still hold it)


def claim_now(session: Session) -> None:
    """Make the check left for the save (CLAIM) by statements of its own, for a save without write_postgres: take
    a claim by compare-and-set, or lock the task's row; then refuse unless the actor holds it and no co-signer waits.

    Raises: AlreadyClaimed, TaskChanged, TaskBlocked, TaskAlreadyDone (someone claimed, handed on, gave co-signers
    to or finished the task since it was read)
    """
    claim: Claim | None = session.info.pop(CLAIM, None)
    if claim is not None:
        from engine.tasks.lookup import check_submission  # engine.tasks imports this module
        check_submission(session, claim.task, claim.actor, free=claim.free)


def _clean_if_written(session: Session, human: HumanTask) -> None:
    """Take a row off the unit of work's dirty list when the statement wrote every change it had.

    set_committed_value leaves the row flagged as modified: the next flush would then run the whole unit of work
    over it to find nothing to write (0.2–0.3 ms a completion).
    """
    state = inspect(human)
    if not state.committed_state:  # no change left unwritten, scalar or collection
        state._commit_all(state.dict, session.identity_map)  # what a flush does after writing it


def discard(session: Session, projected: Plan) -> None:
    """Forget a plan whose save lost the optimistic lock: a caller that commits anyway must not write half of it."""
    for human in projected.created:
        if human in session.new:
            session.expunge(human)
    for human in projected.moved:
        if human.id is not None:
            session.expire(human, MOVED_COLUMNS)


def _persisted(session: Session, new: list[HumanTask], written: list[dict[str, Any]], returned: list[Any]) -> None:
    """Make the new rows and their candidates persistent with the ids the statement gave them (no flush writes them)."""
    ids = {guid: task_id for kind, task_id, guid, *_ in returned if kind == 1}
    cand_ids: dict[tuple[int, int | None, int | None, int | None], list[int]] = defaultdict(list)
    for kind, cand_id, task_id, user_id, org_unit_id, role_id in returned:
        if kind == 2:
            cand_ids[(int(task_id), user_id, org_unit_id, role_id)].append(cand_id)
    # Transient rows: their attributes are filled in where the ORM keeps them (no change events: it is what the row
    # holds), and make_transient_to_detached then takes them all as committed, as if just loaded.
    for human, columns in zip(new, written, strict=True):
        held = instance_dict(human)
        held.update(columns)  # every column as written: one left unset would be expired and read again
        held["id"] = ids[human.task_guid]
        for cand in human.candidates:
            cand_held = instance_dict(cand)
            cand_held.update({key: getattr(cand, key) for key in _CANDIDATE}, task_id=held["id"])
            cand_held["id"] = cand_ids[(held["id"], cand.user_id, cand.org_unit_id, cand.role_id)].pop()
            make_transient_to_detached(cand)
        make_transient_to_detached(human)
        session.add(human)  # detached → persistent, with its candidates: nothing left to flush


__all__ = ["CLAIM", "Claim", "Plan", "claim_now", "discard", "flush_linked", "plan", "select_open", "task_title",
           "write_postgres"]
