"""A completion's first read through Core: the task, its candidates, its instance's row and open rows in one statement.

The same statement as the ORM's (lookup._TO_COMPLETE: the same joins, the same FOR KEY SHARE of the instance's row,
the same `moved` check; the instance's state on one row of the join only, or none when the instance is hot here),
run as a Core select of the tables, and the rows it returns made the session's persistent
objects the way the ORM's own loading makes them: filled in where the ORM keeps their attributes (no change events:
it is what the rows hold) and entered in the identity map. The ORM's loading of the same rows cost a completion
0.2–0.3 ms of CPU more (joined eager loading, `unique()`, populate_existing, a state per row it looks up); making
the objects through `make_transient_to_detached` and `Session.add` cost as much as it saved (bench/README.md,
seventeenth pass).

Only into a session that holds none of the rows yet: one that does (the caller read the task, or an object of the
instance, earlier in the transaction) gets None, and the caller reads through the ORM, which refreshes them.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, String, Table, and_, bindparam, case, cast, exists, func, literal, null, select, union_all
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import instance_dict, instance_state, set_committed_value

from engine import direct
from engine.audit.models import AuditHead
from engine.orm import as_loaded
from engine.runtime import hot
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask, TaskCandidate, is_open

_T: Table = HumanTask.__table__  # type: ignore[assignment]
_C: Table = TaskCandidate.__table__  # type: ignore[assignment]
_P: Table = ProcessInstance.__table__  # type: ignore[assignment]
_H: Table = AuditHead.__table__  # type: ignore[assignment]
_TASK_MAPPER: Mapper[HumanTask] = HumanTask.__mapper__
_CANDIDATE_MAPPER: Mapper[TaskCandidate] = TaskCandidate.__mapper__
_INSTANCE_MAPPER: Mapper[ProcessInstance] = ProcessInstance.__mapper__

_snapshot = _P.alias("snapshot")
_cosign = _T.alias("cosign")
_same_instance = select(_T.c.instance_id).where(_T.c.id == bindparam("task_id")).scalar_subquery()
# Built once (a statement built per call costs its cache key every time); see lookup._TO_COMPLETE for the why of each.
# The instance's state (tens of KB for a parallel approval) once, on the row that carries it (`_carries_state`): on
# every row of the join it came once per open row and candidate (six copies of 88 KB for a 并联审批 with six
# departments at work: 1.9 ms against 0.6 ms for one row, bench/README.md, twentieth pass). Not at all when this
# process holds the workflow at the row's lock_version (`hot_lv`, hot.lock_version_hint): it is taken from there.
_first_candidate = select(func.min(_C.c.id)).where(_C.c.task_id == bindparam("task_id")).scalar_subquery()
_STATE_ONCE = case((and_(_T.c.id == bindparam("task_id"), _C.c.id.is_not_distinct_from(_first_candidate),
                         _P.c.lock_version.is_distinct_from(bindparam("hot_lv", type_=Integer))),
                    _P.c.state), else_=null()).label("p_state")
_READ = (select(*_T.c, *(c.label(f"c_{c.name}") for c in _C.c),
                *(_STATE_ONCE if c.name == "state" else c.label(f"p_{c.name}") for c in _P.c),
                exists().where(_cosign.c.parent_task_id == _T.c.id, _cosign.c.kind == "cosign",
                               _cosign.c.state == "pending").label("cosigners_waiting"),
                _H.c.seq, _H.c.hash,
                (_P.c.lock_version != select(_snapshot.c.lock_version).where(_snapshot.c.id == _P.c.id)
                 .scalar_subquery()).label("moved"))
         .select_from(_T.join(_P, _P.c.id == _T.c.instance_id)
                      .outerjoin(_H, _H.c.stream == literal("instance:") + cast(_P.c.id, String))
                      .outerjoin(_C, _C.c.task_id == _T.c.id))
         .where(_T.c.id.in_(union_all(select(bindparam("task_id", type_=Integer)),
                                      select(_T.c.id).where(_T.c.instance_id == _same_instance,
                                                            _T.c.kind == "bpmn", is_open(_T.c.state)))))
         .with_for_update(read=True, key_share=True, of=_P))

_PREPARED = direct.Prepared(_READ)

_TASK_KEYS = [_TASK_MAPPER.get_property_by_column(c).key for c in _T.c]
_CANDIDATE_KEYS = [_CANDIDATE_MAPPER.get_property_by_column(c).key for c in _C.c]
_INSTANCE_KEYS = [_INSTANCE_MAPPER.get_property_by_column(c).key for c in _P.c]
_N_TASK, _N_CANDIDATE, _N_INSTANCE = len(_TASK_KEYS), len(_CANDIDATE_KEYS), len(_INSTANCE_KEYS)
_AT_INSTANCE = _N_TASK + _N_CANDIDATE
_AT_FLAGS = _AT_INSTANCE + _N_INSTANCE
_TASK_ID = _TASK_KEYS.index("id")
_CANDIDATE_ID = _N_TASK + _CANDIDATE_KEYS.index("id")
_INSTANCE_ID = _AT_INSTANCE + _INSTANCE_KEYS.index("id")

# One read row: the task, its instance's row, whether co-signers wait, the audit head's seq and hash, `moved`
Read = tuple[HumanTask, ProcessInstance, bool, int | None, str | None, bool]


def _key(mapper: Mapper[Any], ident: int) -> Any:
    return mapper.identity_key_from_primary_key((ident,))


def holds_task(session: Session, task_id: int) -> bool:
    """Tell whether the session holds the task's row already (the Core read would then not be used)."""
    return _key(_TASK_MAPPER, task_id) in session.identity_map


def _carries_state(result: list[Any], task_id: int) -> Any:
    """The row the statement gave the instance's state: the task's, with its first candidate (`_STATE_ONCE`)."""
    own = [r for r in result if r[_TASK_ID] == task_id]
    return min(own, key=lambda r: (r[_CANDIDATE_ID] is not None, r[_CANDIDATE_ID] or 0)) if own else result[0]


def read(session: Session, task_id: int) -> list[Read] | None:
    """Run the first read and return its rows, one per task (the task asked for among them when it exists);
    None when the session holds one of the rows already (nothing entered in it: read through the ORM)."""
    hot_lv = hot.lock_version_hint(session, task_id)
    result = _PREPARED.rows(session, {"task_id": task_id, "hot_lv": hot_lv})
    if not result:
        return []
    identity = session.identity_map
    instance_key = _key(_INSTANCE_MAPPER, result[0][_INSTANCE_ID])
    task_keys = {r[_TASK_ID]: _key(_TASK_MAPPER, r[_TASK_ID]) for r in result}
    candidate_keys = {r[_CANDIDATE_ID]: _key(_CANDIDATE_MAPPER, r[_CANDIDATE_ID])
                      for r in result if r[_CANDIDATE_ID] is not None}
    if instance_key in identity or any(k in identity for k in (*task_keys.values(), *candidate_keys.values())):
        return None
    first = _carries_state(result, task_id)
    instance = _INSTANCE_MAPPER.class_manager.new_instance()
    values = instance_dict(instance)
    values.update(zip(_INSTANCE_KEYS, first[_AT_INSTANCE:_AT_FLAGS], strict=True))
    state_left_out = hot_lv is not None and values["lock_version"] == hot_lv
    if state_left_out:
        del values["state"]  # not NULL: unloaded, read when something asks for it (the workflow was taken meanwhile)
    tasks: dict[int, tuple[HumanTask, list[TaskCandidate], Any]] = {}
    for r in result:
        task_id_of = r[_TASK_ID]
        held = tasks.get(task_id_of)
        if held is None:
            task = _TASK_MAPPER.class_manager.new_instance()
            instance_dict(task).update(zip(_TASK_KEYS, r[:_N_TASK], strict=True))
            held = tasks[task_id_of] = (task, [], r)
        if r[_CANDIDATE_ID] is not None:
            candidate = _CANDIDATE_MAPPER.class_manager.new_instance()
            held_values = instance_dict(candidate)
            held_values.update(zip(_CANDIDATE_KEYS, r[_N_TASK:_AT_INSTANCE], strict=True))
            held_values["task"] = held[0]
            held[1].append(candidate)
    as_loaded(session, instance, first[_INSTANCE_ID])
    if state_left_out:
        instance_state(instance)._expire_attributes(values, ["state"])
    hot.note_tasks(session, first[_INSTANCE_ID], task_keys)
    rows: list[Read] = []
    for task_id_of, (task, candidates, r) in tasks.items():
        set_committed_value(task, "candidates", candidates)
        for candidate in candidates:
            as_loaded(session, candidate, candidate.id)
        as_loaded(session, task, task_id_of)
        rows.append((task, instance, bool(r[_AT_FLAGS]), r[_AT_FLAGS + 1], r[_AT_FLAGS + 2], bool(r[_AT_FLAGS + 3])))
    return rows


__all__ = ["Read", "holds_task", "read"]
