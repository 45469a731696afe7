"""A completion's first read through Core: the task, its candidates, its instance's row and open rows in one statement.

The same statement as the ORM's (lookup._TO_COMPLETE: the same joins, the same FOR KEY SHARE of the instance's row,
the same `moved` check), run as a Core select of the tables, and the rows it returns made the session's persistent
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

from sqlalchemy import Integer, String, Table, bindparam, cast, exists, literal, select, union_all
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import instance_dict, set_committed_value

from engine import direct
from engine.audit.models import AuditHead
from engine.orm import as_loaded
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
_READ = (select(*_T.c, *(c.label(f"c_{c.name}") for c in _C.c), *(c.label(f"p_{c.name}") for c in _P.c),
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


def read(session: Session, task_id: int) -> list[Read] | None:
    """Run the first read and return its rows, one per task (the task asked for among them when it exists);
    None when the session holds one of the rows already (nothing entered in it: read through the ORM)."""
    result = _PREPARED.rows(session, {"task_id": task_id})
    if not result:
        return []
    identity = session.identity_map
    instance_key = _key(_INSTANCE_MAPPER, result[0][_INSTANCE_ID])
    task_keys = {r[_TASK_ID]: _key(_TASK_MAPPER, r[_TASK_ID]) for r in result}
    candidate_keys = {r[_CANDIDATE_ID]: _key(_CANDIDATE_MAPPER, r[_CANDIDATE_ID])
                      for r in result if r[_CANDIDATE_ID] is not None}
    if instance_key in identity or any(k in identity for k in (*task_keys.values(), *candidate_keys.values())):
        return None
    first = result[0]
    instance = _INSTANCE_MAPPER.class_manager.new_instance()
    instance_dict(instance).update(zip(_INSTANCE_KEYS, first[_AT_INSTANCE:_AT_FLAGS], strict=True))
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
            values = instance_dict(candidate)
            values.update(zip(_CANDIDATE_KEYS, r[_N_TASK:_AT_INSTANCE], strict=True))
            values["task"] = held[0]
            held[1].append(candidate)
    as_loaded(session, instance, first[_INSTANCE_ID])
    rows: list[Read] = []
    for task_id_of, (task, candidates, r) in tasks.items():
        set_committed_value(task, "candidates", candidates)
        for candidate in candidates:
            as_loaded(session, candidate, candidate.id)
        as_loaded(session, task, task_id_of)
        rows.append((task, instance, bool(r[_AT_FLAGS]), r[_AT_FLAGS + 1], r[_AT_FLAGS + 2], bool(r[_AT_FLAGS + 3])))
    return rows


__all__ = ["Read", "holds_task", "read"]
