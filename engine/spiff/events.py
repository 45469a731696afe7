"""BPMN messages and signals on a workflow, named: what an instance waits for, what it threw, and a delivery.

SpiffWorkflow 3.2.0 keeps the WAITING catch events of a workflow (and of its subprocesses) in the top
workflow's event manager, and an event thrown that nothing inside catches in `bpmn_events` (drained by
`get_events()`: `runtime.save` drains it before it writes the state, and a state is never restored with any).
jzflow routes those between instances and from outside (engine/runtime/messages.py); this module only reads and acts
on one workflow.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import SignalEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent
from SpiffWorkflow.util.task import TaskState

from engine.spiff.serializer import Specs
from engine.spiff.workflow import Task, Workflow, find_task

SCHEMA_PROP = "messageSchema"  # extension property of a catch or start event: the payload's JSON Schema file
# extension property of a catch or start event: who may send it from outside (usernames, unit or role codes or
# names, `initiator` = whoever started the waiting instance, `var:NAME` = the username in the waiting task's
# variable NAME); without it only admins (and instances) may
SENDERS_PROP = "messageSenders"


@dataclass(frozen=True)
class Waiting:
    """One catch event an instance waits on: the task, the message or signal, how it correlates."""

    task_guid: str
    bpmn_id: str
    kind: str  # message | signal
    name: str
    # correlation property id → the value the instance expects (its retrieval expression over the task's data);
    # None when a property could not be evaluated (the catch then correlates by business key only)
    correlations: dict[str, Any] | None = field(default_factory=dict)
    schema: str | None = None
    senders: tuple[str, ...] = ()
    sender_users: tuple[str, ...] = ()  # the usernames its `var:` senders name now


@dataclass(frozen=True)
class Thrown:
    """A message or signal an instance threw that nothing inside it caught."""

    kind: str
    name: str
    payload: Any  # the value of spiffworkflow:messagePayload (any JSON value), None without one
    correlations: dict[str, Any]


@dataclass(frozen=True)
class StartTrigger:
    """A message or signal start event of a process."""

    kind: str
    name: str
    bpmn_id: str
    schema: str | None
    senders: tuple[str, ...] = ()


def _kind(definition: object) -> str | None:
    # SpiffBpmnParser builds SpiffWorkflow.spiff's subclasses (messageVariable, messagePayload, process correlations).
    if isinstance(definition, MessageEventDefinition):
        return "message"
    if isinstance(definition, SignalEventDefinition):
        return "signal"
    return None  # timers, errors, escalations, multiple, conditional: not routed between instances


def _schema(task_spec: Any) -> str | None:
    props = (getattr(task_spec, "extensions", None) or {}).get("properties", {}) or {}
    value = props.get(SCHEMA_PROP)
    return str(value) if value else None


def _senders(task_spec: Any) -> tuple[str, ...]:
    props = (getattr(task_spec, "extensions", None) or {}).get("properties", {}) or {}
    return tuple(s.strip() for s in str(props.get(SENDERS_PROP) or "").split(",") if s.strip())


def waiting(workflow: Workflow) -> list[Waiting]:
    """Return the message and signal catches the workflow waits on now, with their expected correlation values.

    A correlation property's retrieval expression is evaluated over the waiting task's data: the value the
    catching instance expects is the one it holds itself (SpiffArena's rule for receive events).
    """
    found: list[Waiting] = []
    engine = workflow.script_engine
    for task in list(workflow.event_manager.tasks.values()):
        spec = task.task_spec
        definition = getattr(spec, "event_definition", None)
        kind = _kind(definition)
        if definition is None or kind is None or task.state != TaskState.WAITING or (
                isinstance(spec, StartEvent) and task.workflow is workflow):
            continue
        expected: dict[str, Any] | None = {}
        for prop in getattr(definition, "correlation_properties", []) or []:
            try:
                value = engine.environment.evaluate(prop.retrieval_expression, task.data)
            except Exception:  # the variable is not there yet: match by business key only
                expected = None
                break
            assert expected is not None
            expected[str(prop.name)] = value
        senders = _senders(spec)
        users = tuple(str(task.data.get(s[4:])) for s in senders if s.startswith("var:") and task.data.get(s[4:]))
        found.append(Waiting(task_guid=str(task.id), bpmn_id=str(spec.bpmn_id or spec.name), kind=kind,
                             name=str(definition.name), correlations=expected, schema=_schema(spec),
                             senders=senders, sender_users=users))
    return found


def drain_thrown(workflow: Workflow) -> list[Thrown]:
    """Take the messages and signals the workflow threw that nothing inside it caught (once: they are removed)."""
    out: list[Thrown] = []
    for event in workflow.get_events():
        kind = _kind(event.event_definition)
        if kind is None:
            continue
        out.append(Thrown(kind=kind, name=str(event.event_definition.name), payload=deepcopy(event.payload),
                          correlations=_correlations(event)))
    return out


class ThrowRefused(Exception):
    """A message or signal a task threw passes a limit: not queued, and the instance stops (an incident on the task)."""

    def __init__(self, message: str, task: Task, kind: str) -> None:
        super().__init__(message)
        self.task = task
        self.kind = kind  # the incident's kind: message_too_large | too_many_messages


def throw_guard(workflow: Workflow, problem: Callable[[Any, Mapping[str, Any]], tuple[str | None, int]], *,
                most: int, total: int) -> Callable[[Task], None]:
    """Check what each task throws as it completes (a `did_complete_task`): each payload and its correlation values
    (`problem`), at most `most` thrown in this run, their payloads together at most `total` characters.

    Past a limit, what the task threw is dropped (never queued) and ThrowRefused raised, naming the task.
    """
    seen, weight = len(workflow.bpmn_events), 0

    def check(task: Task) -> None:
        nonlocal seen, weight
        thrown = workflow.bpmn_events
        if len(thrown) <= seen:
            seen = len(thrown)
            return
        where = str(task.task_spec.bpmn_id or task.task_spec.name)
        for count, event in enumerate(thrown[seen:], start=seen + 1):
            kind = _kind(event.event_definition)
            if kind is None:
                continue
            what = f"{'消息' if kind == 'message' else '信号'}「{event.event_definition.name}」"
            found, size = problem(event.payload, _correlations(event))
            weight += size
            refused: tuple[str, str] | None = None
            if found is not None:
                refused = "message_too_large", f"{where} 抛出的{what}未发送：{found} ({kind} thrown by {where} not sent)"
            elif count > most:
                refused = "too_many_messages", (f"一次运行抛出的消息和信号超过 {most} 个，{where} 抛出的{what}未发送 (more "
                                                f"than {most} messages and signals thrown in one run: the {kind} thrown "
                                                f"by {where} was not sent)")
            elif weight > total:
                refused = "message_too_large", (f"一次运行抛出的消息和信号数据合计超过 {total // 1024} KB，{where} 抛出的"
                                                f"{what}未发送 (the payloads thrown in one run pass {total // 1024} KB "
                                                f"together: the {kind} thrown by {where} was not sent)")
            if refused is not None:
                del thrown[seen:]
                raise ThrowRefused(refused[1], task, refused[0])
        seen = len(thrown)

    return check


def _correlations(event: Any) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for values in (event.correlations or {}).values():
        if isinstance(values, Mapping):
            flat.update(values)
    return flat


def deliver(workflow: Workflow, task_guid: str, payload: Any) -> bool:
    """Hand a message or signal payload to one waiting catch task; False when it no longer waits.

    When the task runs, the payload goes into its data under the event's spiffworkflow:messageVariable
    (signals: its variable), SpiffArena's rule; without one it is not kept. The engine steps that follow
    are the caller's (`runtime.run`).
    """
    task = find_task(workflow, task_guid)
    if task is None or task.state != TaskState.WAITING:
        return False
    spec = task.task_spec
    definition = getattr(spec, "event_definition", None)
    if definition is None or _kind(definition) is None or task.id not in workflow.event_manager.tasks:
        return False
    # What CatchingEvent.catch does, without MessageEventDefinition's re-evaluation of the correlation
    # expressions over the payload (a payload may leave out what it was correlated by: the business key).
    task.internal_data[definition.name] = deepcopy(payload)
    task._set_internal_data(event_fired=True)
    spec._update(task)
    return True


def start_triggers(specs: Specs) -> list[StartTrigger]:
    """Return the message and signal start events of a version's top-level process."""
    out: list[StartTrigger] = []
    for start in specs[0].start.outputs:
        kind = _kind(getattr(start, "event_definition", None))
        if kind is not None:
            out.append(StartTrigger(kind=kind, name=str(start.event_definition.name),
                                    bpmn_id=str(start.bpmn_id or start.name), schema=_schema(start),
                                    senders=_senders(start)))
    return out


def has_none_start(specs: Specs) -> bool:
    """Tell whether a person may start the process: it has a start event no message or signal must trigger."""
    return any(_kind(getattr(s, "event_definition", None)) is None for s in specs[0].start.outputs)


def catch_declarations(specs: Specs) -> list[tuple[str, str, str, str | None, tuple[str, ...]]]:
    """Return (kind, name, bpmn_id, schema, senders) of every message/signal catch and start event in a version."""
    out: list[tuple[str, str, str, str | None, tuple[str, ...]]] = []
    top, subs = specs
    for spec in (top, *subs.values()):
        for task_spec in spec.task_specs.values():
            kind = _kind(getattr(task_spec, "event_definition", None))
            if kind is None or not hasattr(task_spec, "catch") or getattr(task_spec, "event_definition", None) is None:
                continue
            if type(task_spec).__name__.endswith(("ThrowEvent", "EndEvent", "SendTask")):
                continue
            out.append((kind, str(task_spec.event_definition.name), str(task_spec.bpmn_id or task_spec.name),
                        _schema(task_spec), _senders(task_spec)))
    return out


def start_event_task(workflow: Workflow, bpmn_id: str) -> Task | None:
    """Return the WAITING task of a start event (after the first engine steps of a new workflow)."""
    for task in workflow.get_tasks(state=TaskState.WAITING):
        if task.task_spec.bpmn_id == bpmn_id and isinstance(task.task_spec, StartEvent):
            return task
    return None


def fire_start(workflow: Workflow, bpmn_id: str, payload: Any) -> bool:
    """Fire a waiting message or signal start event of a new workflow with the payload."""
    task = start_event_task(workflow, bpmn_id)
    if task is None:
        return False
    task.internal_data[task.task_spec.event_definition.name] = deepcopy(payload)
    task._set_internal_data(event_fired=True)
    task.task_spec._update(task)
    return True


__all__ = ["SCHEMA_PROP", "SENDERS_PROP", "StartTrigger", "ThrowRefused", "Thrown", "Waiting", "catch_declarations",
           "deliver", "drain_thrown", "fire_start", "has_none_start", "start_triggers", "throw_guard", "waiting"]
