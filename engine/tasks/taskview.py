"""Read-side of one task's page: who may do what, its form and data, the diagram's states, history, files."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import content_limits, deploy, runtime
from engine.archive import core as archive
from engine.errors import TaskNotFound
from engine.org.actors import Actor
from engine.org.models import User
from engine.runtime import timeline
from engine.runtime.models import ProcessDefinition, ProcessInstance
from engine.spiff import form_options
from engine.tasks import access, fixed, lookup, sendback, task_access
from engine.tasks.collab_models import Attachment
from engine.tasks.models import HumanTask


@dataclass(frozen=True)
class Abilities:
    """What the actor may do on the task now; the services re-check every one of these."""

    claim: bool = False
    unclaim: bool = False
    complete: bool = False
    resolve: bool = False  # 委派退回: the delegate gives the task back with an opinion
    handle: bool = False  # 转办 / 委派 / 加签 / 退回: the holder's operations
    withdraw: bool = False
    urge: bool = False
    remove_cosigner: bool = False


@dataclass
class TaskPage:
    task: HumanTask
    instance: ProcessInstance
    process_name: str
    parent: HumanTask | None
    data: dict[str, Any]
    schema_text: str | None
    ui_text: str | None
    form_problem: str | None  # why the form is not drawn: a stored file past today's limits (FormTexts.problem)
    instructions: str | None
    may: Abilities
    current: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    history: list[timeline.Entry] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    cosigners: list[HumanTask] = field(default_factory=list)
    targets: list[HumanTask] = field(default_factory=list)  # where 退回 may go, earliest first
    assignee: str | None = None
    owner: str | None = None
    set_aside: str | None = None  # why nothing can be done on it now (挂起): said instead of offering refused actions
    fixed: dict[str, Any] = field(default_factory=dict)  # fields the application fixed on the form: shown, read-only


def get_visible(session: Session, actor: Actor, task_id: int) -> HumanTask:
    """Return a task the actor may see: they hold it, may claim it, or may see its instance.

    Raises: TaskNotFound (also for a task they may not see: as if it did not exist), InstanceArchived (a step of an
    archived instance they may see)
    """
    task = session.get(HumanTask, task_id)
    if task is None:
        raise lookup.missing(session, task_id, seen=partial(task_access.require_seen, session, actor))
    return task_access.require_seen(session, actor, task)


def abilities(session: Session, actor: Actor, task: HumanTask, instance: ProcessInstance) -> Abilities:
    """Tell which operations to offer the actor on this task: the access table's, where the task's state allows."""
    is_open = task.state == "ready" and instance.status == "running"
    ops = task_access.permitted(session, actor, task) if is_open else frozenset()
    Op = task_access.Op
    bpmn = task.kind == "bpmn"
    return Abilities(
        claim=Op.CLAIM in ops and task.assignee_id is None,
        unclaim=Op.UNCLAIM in ops and task.assignee_id is not None and bpmn,
        complete=Op.COMPLETE in ops and not task.blocked,
        resolve=Op.RESOLVE in ops,
        handle=bpmn and all(op in ops for op in (Op.TRANSFER, Op.DELEGATE, Op.ADD_COSIGNER, Op.SEND_BACK)),
        withdraw=(task.state == "completed" and bpmn and task.completed_by_id == actor.user_id
                  and instance.status == "running" and sendback.withdraw_refusal(session, actor, task) is None),
        urge=Op.URGE in ops,
        remove_cosigner=Op.REMOVE_COSIGNER in ops,
    )


def load(session: Session, actor: Actor, task_id: int) -> TaskPage:
    """Gather everything the task page shows, after the access check.

    Raises: TaskNotFound (also for a task they may not see), InstanceArchived
    """
    task = get_visible(session, actor, task_id)
    instance = session.get(ProcessInstance, task.instance_id)
    assert instance is not None
    process_name = session.scalar(select(ProcessDefinition.name).where(ProcessDefinition.id == instance.definition_id))
    parent = session.get(HumanTask, task.parent_task_id) if task.parent_task_id else None
    source = parent if task.kind == "cosign" and parent is not None else task  # a co-signer sees the parent's form
    running = runtime.load(session, task.instance_id, read_only=True)
    spiff_task = runtime.find_task(running.workflow, source.task_guid) \
        or runtime.compacted_task(session, running, source.task_guid)  # a finished subprocess's, in history
    if spiff_task is not None:
        data: dict[str, Any] = dict(spiff_task.data)
    else:  # a finished step of an earlier round, compacted into history
        last = running.workflow.last_task
        data = runtime.compacted_task_data(session, task.instance_id, source.task_guid,
                                           dict(last.data) if last is not None else None) or {}
    form = form_texts(session, task, instance.version_id, data) if task.kind == "bpmn" else FormTexts(None, None)
    held = fixed.values(fixed.of(session, task, form.schema)) if form.problem is None else {}
    if held:  # drawn filled in with the values the application fixed, and read-only (engine/tasks/fixed.py)
        form = FormTexts(form.schema, fixed.read_only(form.ui, held))
    states = timeline.diagram_states(session, running)
    may = abilities(session, actor, task, instance)
    page = TaskPage(task=task, instance=instance, process_name=process_name or task.process_key, parent=parent,
                    data=data, schema_text=form.schema, ui_text=form.ui, form_problem=form.problem,
                    instructions=source.instructions, may=may,
                    current=states.current, completed=states.completed,
                    history=timeline.timeline(session, instance.id, with_details=False,
                                                    public=access.is_external(session, actor), public_for=actor.user_id),
                    fixed=held)
    page.attachments = visible_attachments(session, actor, instance.id)
    if task.kind == "bpmn":
        page.cosigners = list(session.scalars(select(HumanTask).where(
            HumanTask.parent_task_id == task.id, HumanTask.kind == "cosign").order_by(HumanTask.id)))
    if may.handle:
        page.targets = sendback.send_back_targets(session, task)
    names = dict(session.execute(select(User.id, User.display_name).where(
        User.id.in_([i for i in (task.assignee_id, task.owner_id) if i is not None] or [-1]))).all())
    page.assignee = names.get(task.assignee_id) if task.assignee_id else None
    page.set_aside = lookup.set_aside(task, instance.status)
    page.owner = names.get(task.owner_id) if task.owner_id else None
    return page


@dataclass(frozen=True)
class FormTexts:
    """A task's JSON Schema and UI schema texts (None where it has none), and why they may not be used, if so."""

    schema: str | None
    ui: str | None
    problem: str | None = None  # a stored file deploy would refuse today (content_limits), named: draw nothing of it


def form_texts(session: Session, task: HumanTask, version_id: int | None = None,
               data: dict[str, Any] | None = None) -> FormTexts:
    """Return the texts of the task's JSON Schema and UI schema files, or why they may not be drawn or checked.

    Choices a schema takes from task data (SpiffArena's `options_from_task_data_var:`) are filled in from
    `data`, or from the task's data when it is not given.
    """
    if version_id is None:
        version_id = session.scalar(select(ProcessInstance.version_id).where(ProcessInstance.id == task.instance_id))
    assert version_id is not None
    info = runtime.version_info(session, version_id)
    texts: list[str | None] = []
    for name in (task.form_schema, task.form_ui_schema):
        texts.append((info.files.get(name) or deploy.file_text(session, version_id, name)) if name else None)
    problem = content_limits.first_stored_problem(*zip((task.form_schema, task.form_ui_schema), texts, strict=True))
    schema = texts[0]
    if problem is not None:
        return FormTexts(schema, texts[1], problem)
    if schema and form_options.PREFIX in schema:
        if data is None:
            spiff_task = runtime.find_task(runtime.load(session, task.instance_id, read_only=True).workflow,
                                           task.task_guid)
            data = dict(spiff_task.data) if spiff_task is not None else {}
        schema = form_options.resolve(schema, data)
    return FormTexts(schema, texts[1])


def visible_attachments(session: Session, actor: Actor, instance_id: int) -> list[Attachment]:
    """Return the instance's attachments the actor may see, oldest first (content not loaded); the caller checked
    they may see the instance.

    An applicant from outside sees the files they uploaded: the departments' uploads on their steps are internal,
    as their forms and opinions are (`submissions.for_instance`, the public history).
    """
    query = select(Attachment).where(Attachment.instance_id == instance_id)
    if access.is_external(session, actor):
        query = query.where(Attachment.uploaded_by_id == (actor.user_id if actor.user_id is not None else -1))
    return list(session.scalars(query.order_by(Attachment.created_at, Attachment.id)))


def attachment(session: Session, actor: Actor, task_id: int, attachment_id: int) -> Attachment:
    """Return an attachment of the task's instance, content loaded, after the access check.

    An archived step's page is gone (InstanceArchived), but the files of its instance stay in their table: they are
    served to whoever could see the step before, by the same rules applied to its archived row and candidates.

    Raises: TaskNotFound (also for a task they may not see)
    """
    task = session.get(HumanTask, task_id) or archive.task(session, task_id)
    if task is None:
        raise lookup.not_found(task_id)
    task_access.require_seen(session, actor, task)
    found = session.get(Attachment, attachment_id)
    if found is None or found.instance_id != task.instance_id or (
            found.uploaded_by_id != actor.user_id and access.is_external(session, actor)):  # internal: as if absent
        raise TaskNotFound(f"附件不存在 (no such attachment): {attachment_id}", attachment_id=attachment_id)
    return found


def diagram_xml(session: Session, actor: Actor, task_id: int) -> str:
    """Return the BPMN XML of the task's process version, after the access check.

    Raises: TaskNotFound (also for a task they may not see), InstanceArchived
    """
    task = get_visible(session, actor, task_id)
    instance = session.get(ProcessInstance, task.instance_id)
    assert instance is not None
    text = timeline.bpmn_text(session, instance.version_id, task.process_key)
    if text is None:
        raise TaskNotFound(f"流程图不存在 (no diagram for this task): {task_id}", task_id=task_id)
    return text


__all__ = ["Abilities", "FormTexts", "TaskPage", "abilities", "attachment", "diagram_xml", "form_texts", "get_visible",
           "load", "visible_attachments"]
