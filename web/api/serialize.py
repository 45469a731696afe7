"""JSON shapes of the API (described in web/api/openapi.py): tasks, instances, processes."""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engine import audit, clock, content_limits, deploy, runtime, tasks
from engine.deadlines.models import ExtensionRequest
from engine.org import directory
from engine.org.actors import Actor
from engine.runtime.models import Incident
from engine.tasks import fixed, queries, task_access
from engine.tasks.models import HumanTask


def when(value: datetime | None) -> str | None:
    """Return an aware time as ISO 8601 UTC, or None."""
    return clock.as_utc(value).isoformat() if value is not None else None


def usernames(session: Session, ids: Sequence[int | None]) -> dict[int, str]:
    """Return usernames by id, in one query."""
    return directory.usernames(session, ids)


def task(t: HumanTask, actor: Actor, names: dict[int, str]) -> dict[str, Any]:
    """Return a task as the inbox lists it."""
    return {
        "id": t.id, "instance_id": t.instance_id, "name": t.name, "bpmn_id": t.bpmn_id, "process_key": t.process_key,
        "lane": t.lane, "state": t.state, "kind": t.kind,
        "assignee": names.get(t.assignee_id) if t.assignee_id is not None else None,
        "mine": t.assignee_id is not None and t.assignee_id == actor.user_id,
        "claimable": t.assignee_id is None and t.state == "ready" and tasks.is_candidate(t, actor),
        "priority": t.priority, "sla": t.sla, "created_at": when(t.created_at), "due_at": when(t.due_at),
        "warn_at": when(t.warn_at), "completed_at": when(t.completed_at),
        "completed_by": names.get(t.completed_by_id) if t.completed_by_id is not None else None,
        "form_schema": t.form_schema, "blocked": t.blocked, "delegation_state": t.delegation_state,
    }


def tasks_list(session: Session, rows: Sequence[HumanTask], actor: Actor) -> list[dict[str, Any]]:
    """Return tasks with their people's usernames resolved in one query."""
    names = usernames(session, [r.assignee_id for r in rows] + [r.completed_by_id for r in rows])
    return [task(r, actor, names) for r in rows]


def _form(session: Session, version_id: int, name: str | None) -> tuple[Any, str | None]:
    """Return a form file as JSON, or None and why when it is a stored file deploy would refuse today."""
    if not name:
        return None, None
    text = runtime.version_info(session, version_id).files.get(name) or deploy.file_text(session, version_id, name)
    problem = content_limits.stored_form_problem(name, text)
    return (json.loads(text) if text and problem is None else None), problem


def task_detail(session: Session, t: HumanTask, actor: Actor) -> dict[str, Any]:
    """Return a task with its form (JSON Schema and UI schema) and its instance's headline."""
    row = queries.instance_row(session, t.instance_id)
    out = tasks_list(session, [t], actor)[0]
    if row is not None:
        (form, problem), (ui, ui_problem) = (_form(session, row.instance.version_id, name)
                                             for name in (t.form_schema, t.form_ui_schema))
        refused = problem or ui_problem  # neither file is given: a client draws nothing of a refused form
        out["form"], out["form_ui"], out["form_problem"] = (None, None, refused) if refused else (form, ui, None)
        # fields the application fixed on the form (an approval started for its project: its code and stage)
        out["fixed"] = fixed.values(fixed.of(session, t, form)) if form is not None and not refused else {}
        if out["fixed"]:
            out["form_ui"] = fixed.read_only_ui(ui, out["fixed"])
        out["instance"] = {"id": row.instance.id, "title": row.instance.title, "status": row.instance.status,
                           "business_key": row.instance.business_key, "process_key": row.process_key}
    is_open = t.state == "ready" and row is not None and row.instance.status == "running"
    out["permitted"] = sorted(task_access.permitted(session, actor, t)) if is_open else []  # the access table's
    return out


def instance(row: queries.InstanceRow, names: dict[int, str]) -> dict[str, Any]:
    """Return an instance as the list shows it."""
    i = row.instance
    return {
        "id": i.id, "process_key": row.process_key, "process_name": row.process_name, "version": row.version,
        "title": i.title, "business_key": i.business_key, "status": i.status,
        "started_by": names.get(i.started_by_id) if i.started_by_id is not None else None,
        "started_at": when(i.started_at), "updated_at": when(i.updated_at), "ended_at": when(i.ended_at),
    }


def instances_list(session: Session, rows: Sequence[queries.InstanceRow]) -> list[dict[str, Any]]:
    """Return instances with their starters' usernames resolved in one query."""
    names = usernames(session, [r.instance.started_by_id for r in rows])
    return [instance(r, names) for r in rows]


def incident(inc: Incident) -> dict[str, Any]:
    """Return an incident."""
    return {"id": inc.id, "bpmn_id": inc.bpmn_id, "kind": inc.kind, "message": inc.message,
            "created_at": when(inc.created_at), "resolved_at": when(inc.resolved_at)}


def instance_detail(session: Session, row: queries.InstanceRow, actor: Actor, *, task_rows: Sequence[HumanTask],
                    incidents: Sequence[Incident], data: dict[str, Any] | None) -> dict[str, Any]:
    """Return an instance with its tasks, incidents and (for who may see it) its data."""
    out = instances_list(session, [row])[0]
    out["tasks"] = tasks_list(session, task_rows, actor)
    out["incidents"] = [incident(i) for i in incidents]
    out["data_visible"] = data is not None
    if data is not None:
        out["data"] = audit.jsonable(data)
    return out


def process(info: queries.StartInfo) -> dict[str, Any]:
    """Return a startable process with its start form, if any."""
    return {"key": info.key, "name": info.version.name, "version": info.version.version,
            "deployed_at": when(info.version.deployed_at),
            "start_form": json.loads(info.schema_text) if info.schema_text and not info.form_problem else None,
            "start_form_ui": json.loads(info.ui_text) if info.ui_text and not info.form_problem else None,
            "start_form_problem": info.form_problem}


def extension_request(row: ExtensionRequest) -> dict[str, Any]:
    """A 申请延期 as the API answers it."""
    return {"id": row.id, "task_id": row.object_id, "requested_due_at": when(row.requested_due_at),
            "reason": row.reason, "status": row.status, "created_at": when(row.created_at)}
