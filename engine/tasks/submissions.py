"""What was submitted on an instance's finished steps — who, when, what, with which opinion — as people read it.

The data of a completed step is the `task.complete` audit event's (the validated form data, recorded in the same
transaction as the completion), the opinion its holder's `opinion` comment, the labels its form's (the version's
form files, never the raw keys). A co-signer's signature (加签签署) is a step with an opinion and no form.

Who sees what: whoever may see the instance sees every step's submission (`access.require_view`); an applicant
from outside (`access.is_external`) sees only what they submitted themselves — not the departments' forms.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, content_limits, runtime
from engine.archive import core as archive
from engine.audit import anchor as audit_anchor
from engine.audit.models import AuditEvent
from engine.documents.core import SHEET_KIND
from engine.errors import Forbidden
from engine.org import actors
from engine.org.actors import Actor
from engine.runtime import effects, formtext
from engine.runtime.models import ProcessInstance
from engine.tasks import access
from engine.tasks.collab_models import Comment
from engine.tasks.models import HumanTask
from engine.tasks.queries import UserNames


@dataclass(frozen=True)
class Submission:
    """One finished step: its task, who completed it and when, its form's fields and the opinion given."""

    task_id: int
    bpmn_id: str
    name: str
    kind: str  # bpmn | cosign
    actor: str
    actor_id: int | None
    at: datetime | None
    form_title: str | None
    fields: list[formtext.Field] = field(default_factory=list)
    opinions: list[str] = field(default_factory=list)
    superseded: bool = False  # the step was reopened afterwards (退回 / 撤回): a later submission replaces it
    form_problem: str | None = None  # its form files past today's limits (stored before them): fields under their keys
    by_applicant: bool = False  # done by an applicant from outside: their opinion is a 申请说明, not a 审批意见


def _events(session: Session, instance_id: int) -> dict[int, AuditEvent]:
    found: dict[int, AuditEvent] = {}
    stream = f"instance:{instance_id}"
    written = session.scalars(select(AuditEvent).where(AuditEvent.stream == stream, AuditEvent.action == "task.complete")
                              .order_by(AuditEvent.seq)).all()
    # then those of this transaction, written at its commit: a sheet issued in the transaction that finished steps
    # (the demo's, a service's) holds what they submitted
    pending = [ev for ev in audit_anchor.deferred(session) if ev.stream == stream and ev.action == "task.complete"]
    for ev in [*written, *pending]:
        after = ev.after if isinstance(ev.after, dict) else {}
        task_id = after.get("task_id")
        if isinstance(task_id, int):
            found[task_id] = ev  # the last completion of a task row is the one that stands
    return found


def _finished(task: HumanTask) -> tuple[bool, datetime, int]:
    """Order finished steps by when they finished, then id (a step with no time last)."""
    at = task.completed_at
    return at is None, clock.as_utc(at) if at is not None else datetime.min.replace(tzinfo=UTC), task.id


def issued_in_run(session: Session, instance_id: int, since: int) -> list[dict[str, str]]:
    """Return the documents this transaction issued for the instance from its `since`-th pending audit event on (kind,
    title, number), but the 审批单 (internal, and not a step's certificate: the sheet that lists the steps).

    A person's step whose run issues documents (联合出证: the 联合意见书; 受理: the 受理通知书) keeps them in its
    `task.complete` event (`tasks.completion.finish`), so every reading of the step names them beside it, as the issued
    审批单 prints them (`completing_now`).
    """
    stream = f"instance:{instance_id}"
    return [{"kind": str(ev.after.get("kind") or ""), "title": str(ev.after.get("title") or ""),
             "number": str(ev.after.get("number") or "")}
            for ev in audit_anchor.deferred(session)[since:]
            if ev.stream == stream and ev.action == "document.issue" and isinstance(ev.after, dict)
            and ev.after.get("kind") != SHEET_KIND]


def _document_fields(issued: object) -> list[formtext.Field]:
    # What a task.complete event holds (a list of {kind, title, number}); anything else, as an older event, holds none
    if not isinstance(issued, list):
        return []
    return [formtext.Field(key=f"document:{d.get('kind')}", label=str(d.get("title") or "文书编号"),
                           text=str(d.get("number") or ""))
            for d in issued if isinstance(d, dict) and d.get("number")]


def _submission(row: HumanTask, files: Mapping[str, str], data: object, *, actor: str, actor_id: int | None,
                at: datetime | None,
                opinions: list[str], superseded: bool, by_applicant: bool,
                more: Sequence[formtext.Field] = ()) -> Submission:
    schema_text = files.get(row.form_schema) if row.form_schema else None
    ui_text = files.get(row.form_ui_schema) if row.form_ui_schema else None
    problem = content_limits.first_stored_problem((row.form_schema, schema_text), (row.form_ui_schema, ui_text))
    if problem is not None:  # what was submitted still shows, under its keys, without walking the files
        schema_text = ui_text = None
    fields = formtext.describe_texts(schema_text, ui_text, data) if isinstance(data, dict) else []
    return Submission(task_id=row.id, bpmn_id=row.bpmn_id, name=row.name, kind=row.kind, actor=actor,
                      actor_id=actor_id, at=at, form_title=formtext.title_of(schema_text),
                      fields=[*fields, *more], opinions=opinions, superseded=superseded, form_problem=problem,
                      by_applicant=by_applicant)


def _load(session: Session, instance: ProcessInstance, *, only_by: int | None = None,
          task_ids: set[int] | None = None) -> list[Submission]:
    # Hot and archived steps alike: archiving moves an ended instance's steps out of human_task, and its 审批单
    # must read as before (its opinions, audit events and form files stay where they are).
    steps = archive.tasks_of(session, instance.id)
    rows = sorted((t for t in steps if t.state == "completed"), key=_finished)
    if only_by is not None:
        rows = [r for r in rows if r.completed_by_id == only_by]
    if task_ids is not None:
        rows = [r for r in rows if r.id in task_ids]
    if not rows:
        return []
    events = _events(session, instance.id)
    opinions: dict[int, list[str]] = {}
    for c in session.scalars(select(Comment).where(Comment.instance_id == instance.id, Comment.kind == "opinion",
                                                   Comment.task_id.in_([r.id for r in rows]))
                             .order_by(Comment.created_at, Comment.id)):
        row = next(r for r in rows if r.id == c.task_id)
        if c.author_id == row.completed_by_id or row.completed_by_id is None:
            opinions.setdefault(c.task_id or 0, []).append(c.body)
    later = {(t.task_guid, t.id) for t in steps if t.kind == "bpmn"}
    files = runtime.version_info(session, instance.version_id).files
    users = UserNames().load(session, [r.completed_by_id for r in rows])
    outside = {uid for uid in {r.completed_by_id for r in rows} if uid is not None
               and (held := actors.user_with_actor(session, uid)) is not None and access.is_external(session, held[1])}
    result = []
    for row in rows:
        ev = events.get(row.id)
        after = ev.after if ev is not None and isinstance(ev.after, dict) else {}
        data = after.get("data")
        at = row.completed_at or (ev.at if ev is not None else None)
        result.append(_submission(
            row, files, data, actor=users.get(row.completed_by_id) or (ev.actor_name if ev is not None else "") or "系统",
            actor_id=row.completed_by_id, at=clock.as_utc(at) if at is not None else None,
            opinions=opinions.get(row.id, []),
            superseded=row.kind == "bpmn" and any(g == row.task_guid and i > row.id for g, i in later),
            by_applicant=row.completed_by_id in outside, more=_document_fields(after.get("documents"))))
    return result


def _instance(session: Session, instance_id: int) -> ProcessInstance:
    instance = session.get(ProcessInstance, instance_id)
    if instance is None:
        raise access.not_found(instance_id)
    return instance


def for_instance(session: Session, actor: Actor, instance_id: int) -> list[Submission]:
    """Return the instance's finished steps in the order they were finished, as far as the actor may see them.

    Raises: InstanceNotFound (also when the actor may not see the instance)
    """
    access.require_view(session, actor, instance_id)
    instance = _instance(session, instance_id)
    if access.is_external(session, actor):
        return _load(session, instance, only_by=actor.user_id if actor.user_id is not None else -1)
    return _load(session, instance)


def completing_now(session: Session, instance_id: int) -> list[Submission]:
    """Return the step whose completion runs the engine run this is called in, if it is one of this instance's.

    Its row is marked completed and its data audited after the run (`tasks.completion.finish`): a 审批单 issued by a
    service of that run (联合出证's) would otherwise end with the step before, and never say who issued, when, on which
    date. It reads as it will once saved — completed now by the run's actor, with what they submitted and their
    opinion — plus the numbers of the documents the run issued before the caller's (the 联合意见书's).
    """
    ctx = effects.current()
    if ctx is None or ctx.running.row.id != instance_id or ctx.running.completing is None:
        return []
    done = ctx.running.completing
    row, user_id = done.task, ctx.actor.user_id
    issued = _document_fields(issued_in_run(session, instance_id, done.events_before))
    opinions = [c.body for c in session.new if isinstance(c, Comment) and c.task_id == row.id
                and c.kind == "opinion" and c.author_id == user_id]
    held = actors.user_with_actor(session, user_id) if user_id is not None else None
    return [_submission(row, runtime.version_info(session, ctx.running.row.version_id).files, dict(done.data),
                        actor=ctx.actor.display_name or ctx.actor.username or "系统", actor_id=user_id,
                        at=clock.now(),
                        opinions=opinions, superseded=False,
                        by_applicant=held is not None and access.is_external(session, held[1]), more=issued)]


def approval_sheet(session: Session, actor: Actor, instance_id: int) -> list[Submission]:
    """Return every finished step for the 审批单 (the instance's whole record of decisions).

    Raises: InstanceNotFound (also when the actor may not see the instance), Forbidden (an applicant from outside, who
    sees the instance: the sheet holds the departments' internal opinions)
    """
    access.require_view(session, actor, instance_id)
    if access.is_external(session, actor):
        raise Forbidden("审批单仅供内部查看 (the approval sheet is internal)", instance_id=instance_id)
    return _load(session, _instance(session, instance_id))


__all__ = ["Submission", "approval_sheet", "completing_now", "for_instance", "issued_in_run"]
