"""Start instances and change their lifecycle: suspend, resume, terminate."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from engine import audit, clock, deploy
from engine.errors import FieldError, Forbidden, FormInvalid, InstanceNotRunning, InvalidInput, ProcessNotFound
from engine.org.actors import Actor
from engine.runtime import core as runtime
from engine.runtime import effects, forms, start_limits, starts
from engine.runtime.models import ProcessInstance
from engine.runtime.running import lock_instance
from engine.spiff import events, serializer
from engine.spiff import workflow as spiff

# Set by the engine from the acting user, never taken from start data (a client could name someone else).
RESERVED_START_KEYS = ("initiator",)
# Set by the engine when one instance starts another (start_process, the next period): not a client's to say.
ENGINE_LINK_KEYS = ("parent_instance_id", "previous_instance_id")
# Business keys an application gives the instances it starts itself and finds them again by (prefix → what for, named
# in the refusal): while one of its instances holds such a key, the application starts no other. Not a client's to
# take: a starter typing one stood in for the application's own instance (and stopped it from starting its own).
RESERVED_KEY_PREFIXES: dict[str, str] = {}


def start(session: Session, *, process_key: str, actor: Actor, data: Mapping[str, Any] | None = None,
          business_key: str | None = None, title: str | None = None, from_client: bool = False,
          trigger: str | None = None, start_hops: int = 0) -> ProcessInstance:
    """Start the latest version of a process with initial data and run it until it waits (flushes).

    Data from a client (web, API, CLI) is validated against the start form where the start event names one.
    `trigger` names the message or signal start event that starts it (engine/runtime/messages.py); a process
    that only such events start cannot be started by hand. `start_hops`: its generation (message_rules.start_hops).

    A start from inside an engine run (a service task) joins the lineage of the instance that made it and passes its
    limits first (engine/runtime/start_limits.py); it inherits that instance's message and signal generation
    (start_hops), or a relay through start_process would start the count of MAX_START_HOPS again.
    A client's start of a process the application routes (CLIENT_START_ROUTES) is the route's, once its data is checked.

    Raises: ProcessNotFound, FormInvalid (also: client data that would make the state too large; SubmissionRefused: a
    service of the first run refused a field of it, nothing started), InvalidInput (a
    process only a message or signal starts), TooManyStarts (from inside a run: past a limit, nothing started)
    """
    ctx, root = effects.current(), None
    if ctx is not None and ctx.session is session:
        root, start_hops = start_limits.admit(ctx, process_key), ctx.running.row.start_hops
    version = deploy.latest_version(session, process_key)
    if version is None:
        raise ProcessNotFound(f"流程不存在 (no such process): {process_key}", process_key=process_key)
    if trigger is None and not events.has_none_start(runtime.specs_for(session, version.id)):
        raise InvalidInput(f"流程 {process_key} 由消息或信号启动，不能手动发起 (process {process_key} is started by a "
                           "message or signal, not by hand)", field="process_key")
    given = data or {}
    start_form = starts.start_info(session, version) if from_client else None
    keys = RESERVED_START_KEYS + ((*ENGINE_LINK_KEYS, *start_form.reserved) if start_form else ())
    reserved = [k for k in keys if isinstance(given, Mapping) and k in given]
    if reserved:
        raise FormInvalid([FieldError(k, "保留字段，由系统根据发起人设置 (reserved: set by the engine from who starts)")
                           for k in reserved])
    if from_client and business_key:
        _require_own_key(business_key)
    schema, files = (start_form.schema_text, start_form.forms) if start_form else (None, None)
    initial = forms.validate(schema, given, files, name=start_form.form_schema if start_form else None)
    client_route = CLIENT_START_ROUTES.get(process_key) if from_client and trigger is None else None
    if client_route is not None:  # the application starts it its own way (its business key and title, not the client's)
        return client_route(session, actor, initial)
    initial["initiator"] = actor.username
    workflow = serializer.new_workflow(runtime.specs_for(session, version.id), runtime.script_engine())
    spiff.put_start_data(workflow, initial)
    row = ProcessInstance(definition_id=version.definition_id, version_id=version.id, business_key=business_key,
                          title=(title or f"{version.name} {business_key or ''}").strip()[:300], status="running",
                          state="{}", serializer_version=serializer.SERIALIZER_VERSION, lock_version=0,
                          started_by_id=actor.user_id, started_at=clock.now(), updated_at=clock.now(),
                          start_root_id=root, start_hops=start_hops)
    session.add(row)
    session.flush()
    # A new instance has no rows and an empty audit stream yet: the projection reads none, the commit's append
    # starts the stream in one statement (a stream that somehow has events is never restarted: see audit).
    # A client's data that makes the first state too large is refused, naming the fields, and nothing is started.
    # A service in the first run refusing a field the client sent (or of the start form) refuses the start: nothing is
    # started (engine/runtime/refusal.py). A start from a run, a message or a signal has nobody to send back to.
    running = runtime.Running(row=row, workflow=workflow, lock_version=0, open_rows={},
                              submitted={k: v for k, v in initial.items() if k in given} if from_client else None,
                              refusable=forms.field_names(schema) | frozenset(map(str, given)) if from_client else None)
    audit.saw_head(session, f"instance:{row.id}", 0, audit.GENESIS)
    runtime.run(session, running, actor)
    if trigger is not None and running.row.status == "running":
        events.fire_start(workflow, trigger, dict(given))  # the start event waits for its message or signal: here it is
        runtime.run(session, running, actor)
    runtime.save(session, running)
    runtime.record(session, running, actor, "instance.start",
                   after={"process": process_key, "version": version.version, "business_key": business_key,
                          "data": initial, **({"trigger": trigger} if trigger else {}),
                          **runtime.waiting_summary(running)})
    return row


def _require_own_key(business_key: str) -> None:
    """Refuse a client's business key in a namespace the application keeps (RESERVED_KEY_PREFIXES), naming the field.

    Raises: FormInvalid
    """
    for prefix, purpose in RESERVED_KEY_PREFIXES.items():
        if business_key.startswith(prefix):
            raise FormInvalid([FieldError("business_key", f"业务编号以“{prefix}”开头的为系统保留（{purpose}），请换一个 "
                                                          f"(business_key: {prefix}… is kept for the system's own)")])


# An application may answer start_process for a process of its own (registered by its extension): a process that
# runs once per case links the instance the case has instead of starting a second one, whichever version of the
# calling diagram asks. The route gets the start (data with parent_instance_id, business key, title) and returns
# start_process's result, or None to have the process started as usual.
StartRoute = Callable[[effects.RunContext, dict[str, Any], str | None, str | None], dict[str, Any] | None]
START_ROUTES: dict[str, StartRoute] = {}
# An application may take over a person's start (web, API, CLI) of a process of its own: a process with one instance
# per period starts it through the application's service, which keeps it to one. The route gets the session, the
# actor and the start data checked against the start form, and returns the started row (or refuses: FormInvalid).
ClientStartRoute = Callable[[Session, Actor, dict[str, Any]], ProcessInstance]
CLIENT_START_ROUTES: dict[str, ClientStartRoute] = {}


@effects.service("start_process")
def start_process(ctx: effects.RunContext, process_key: str, data: dict[str, Any] | None = None,
                  business_key: str | None = None, title: str | None = None) -> dict[str, Any]:
    """Start another process (e.g. the next stage of a case), linked to this instance (or what its route answers)."""
    payload = dict(data or {})
    payload.setdefault("parent_instance_id", ctx.running.row.id)
    route = START_ROUTES.get(process_key)
    routed = route(ctx, payload, business_key, title) if route is not None else None
    if routed is not None:
        return routed
    child = start(ctx.session, process_key=process_key, actor=ctx.actor, data=payload,
                  business_key=business_key, title=title)
    return {"instance_id": child.id, "status": child.status}


def _require_admin(actor: Actor) -> None:
    if not (actor.is_admin or actor.is_system):
        raise Forbidden("只有管理员可以执行此操作 (admins only)")


def _transition(session: Session, instance_id: int, actor: Actor, action: str, allowed: tuple[str, ...],
                new_status: str) -> ProcessInstance:
    _require_admin(actor)
    lock_instance(session, instance_id)  # before its task rows, as a submission takes them (no deadlock)
    running = runtime.load(session, instance_id)
    before = running.row.status
    if before not in allowed:
        raise InstanceNotRunning(f"实例状态为 {before}，不能{action} "
                                 f"(the instance is {before}: it cannot {action})", instance_id=instance_id, status=before)
    running.row.status = new_status
    if new_status == "terminated":
        running.row.ended_at = clock.now()
    runtime.save(session, running)
    runtime.record(session, running, actor, f"instance.{action}", before={"status": before},
                   after={"status": new_status})
    return running.row


def suspend(session: Session, *, instance_id: int, actor: Actor) -> ProcessInstance:
    """Suspend a running instance: its tasks leave the inbox and its timers stop.

    Raises: Forbidden, InstanceNotFound, InstanceNotRunning, ConcurrentModification
    """
    return _transition(session, instance_id, actor, "suspend", ("running",), "suspended")


def resume(session: Session, *, instance_id: int, actor: Actor) -> ProcessInstance:
    """Resume a suspended instance (its overdue timers fire on the next sweep).

    Raises: Forbidden, InstanceNotFound, InstanceNotRunning, ConcurrentModification
    """
    return _transition(session, instance_id, actor, "resume", ("suspended",), "running")


def terminate(session: Session, *, instance_id: int, actor: Actor) -> ProcessInstance:
    """End an instance for good; its open tasks are cancelled.

    Raises: Forbidden, InstanceNotFound, InstanceNotRunning, ConcurrentModification
    """
    return _transition(session, instance_id, actor, "terminate", ("running", "suspended", "incident"), "terminated")
