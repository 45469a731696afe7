"""What messages and signals are, who may send them, what their payload must be (engine/runtime/messages.py).

The names, limits and settings; the canonical text of correlation values the subscription index compares;
the catches and start events deployed processes declare (`messageSchema`, `messageSenders`).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from engine import clock, config, content_limits
from engine.db import database_key
from engine.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited, UserNotFound
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.org.models import OrgUnit, Role, User
from engine.runtime import core as runtime
from engine.runtime import forms
from engine.runtime.message_models import BpmnMessage, MessageSubscription
from engine.runtime.models import ProcessDefinition, ProcessInstance, ProcessVersion
from engine.spiff import events

MAX_NAME = 200
INITIATOR = "initiator"  # in messageSenders: the user who started the waiting instance
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_CORRELATION = 500
# Generations of instances that start one another through the messages and signals they throw: a process that starts
# on its own message and throws it twice doubled the instance count at every run of the outbox, without end.
MAX_START_HOPS = 5
MAX_THROWN = 1_000  # messages and signals one engine run of an instance throws (then the instance stops)


def default_ttl() -> int:
    """Seconds a message nobody waits for is kept (JZFLOW_MESSAGE_TTL_SECONDS, default one hour)."""
    return config.whole("JZFLOW_MESSAGE_TTL_SECONDS", 3600, least=1)


def max_ttl() -> int:
    """The longest time to live a publisher may ask for (JZFLOW_MESSAGE_MAX_TTL_SECONDS, default 30 days)."""
    return config.whole("JZFLOW_MESSAGE_MAX_TTL_SECONDS", 30 * 86400, least=1)


def buffer_quota() -> tuple[int, int]:
    """How many messages from outside may be kept at once for catches not waiting yet: per sender (a user; the system,
    which the CLI sends as by default) and per message name, all senders together (JZFLOW_MESSAGE_BUFFER_PER_SENDER,
    default 1,000; JZFLOW_MESSAGE_BUFFER_PER_NAME, default 10,000)."""
    return (config.whole("JZFLOW_MESSAGE_BUFFER_PER_SENDER", 1000, least=1),
            config.whole("JZFLOW_MESSAGE_BUFFER_PER_NAME", 10_000, least=1))


class MessageUnknown(NotFound):
    code = "message_unknown"


class MessageUnmatched(NotFound):
    code = "message_unmatched"


class MessageBusy(Conflict):
    """The instance a message with no time left to live (ttl 0: now or never) matches was busy at every try."""

    code = "message_busy"

    def __init__(self, name: str, instance_id: int) -> None:
        super().__init__(f"等待消息「{name}」的流程实例 #{instance_id} 正忙，消息未投递，也未保留：其 ttl 为 0 "
                         f"(the instance #{instance_id} waiting for message {name!r} was busy at every try: not "
                         "delivered, and not kept as its ttl is 0)", name=name, instance_id=instance_id)


class MessageQuotaExceeded(RateLimited):
    """Too many messages from outside kept for catches not waiting yet: of this sender, or of this name."""

    code = "message_quota"


@dataclass(frozen=True)
class Outcome:
    """What became of a published message."""

    id: int | None
    kind: str
    name: str
    status: str  # delivered | started | buffered | pending (for the worker) | duplicate | broadcast | refused | expired
    instance_id: int | None = None
    expires_at: datetime | None = None
    waiting: int = 0  # signals: instances it goes to
    started: tuple[int, ...] = ()
    reason: str | None = None  # why the outbox job refused or expired it

    def to_dict(self) -> dict[str, Any]:
        """Return the outcome for the API and the CLI."""
        return {"id": self.id, "kind": self.kind, "name": self.name, "status": self.status,
                "instance_id": self.instance_id,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "waiting": self.waiting, "started": list(self.started), "reason": self.reason}


def plain(value: Any) -> Any:
    """JSON for what json cannot write (a Decimal from the API's parser is a number, not a string).

    A Decimal past 1e±MAX_EXPONENT (a script's Decimal('1e999999999') is cheap to hold) is written as text: as an
    int it would take a billion digits.
    """
    if isinstance(value, Decimal) and value.is_finite() and abs(value.adjusted()) > content_limits.MAX_EXPONENT:
        return str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=plain)


def canonical(correlations: Mapping[str, Any] | None) -> str:
    """Return the correlation values as the text the subscription index holds (values compared as text)."""
    return json.dumps({str(k): _text(v) for k, v in (correlations or {}).items()}, ensure_ascii=False,
                      sort_keys=True, separators=(",", ":"))


def check_input(name: Any, correlations: Any, payload: Any, business_key: Any, ttl: Any) -> None:
    """Refuse a malformed message, naming the field.

    Raises: InvalidInput
    """
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise InvalidInput(f"消息名称须为 1–{MAX_NAME} 个字符 (name: 1–{MAX_NAME} characters)", field="name")
    if not isinstance(correlations, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, (str, int, float, bool, Decimal)) for k, v in correlations.items()):
        raise InvalidInput("correlations 须为 名称→字符串或数字 的对象 (correlations: an object of scalar values)",
                           field="correlations")
    too_big = content_limits.data_problem(correlations)  # before canonical writes them
    if too_big is not None:
        raise InvalidInput(f"correlations/{too_big[0]}: {too_big[1]}", field=f"correlations/{too_big[0]}")
    if len(canonical(correlations)) > MAX_CORRELATION:
        raise InvalidInput(f"关联值过长 (correlations: at most {MAX_CORRELATION} characters)", field="correlations")
    if not isinstance(payload, Mapping):
        raise InvalidInput("data 必须是 JSON 对象 (data must be an object)", field="data")
    too_big = content_limits.data_problem(payload)  # before json.dumps, which recurses once a level
    if too_big is not None:
        where = "data" if too_big[0] == "(form)" else f"data/{too_big[0]}"
        raise InvalidInput(f"{where}: {too_big[1]}", field=where)
    if len(json.dumps(payload, ensure_ascii=False, default=plain)) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(f"消息数据过大 (data: at most {MAX_PAYLOAD_BYTES // 1024} KB)", field="data")
    if business_key is not None and (not isinstance(business_key, str) or not business_key or len(business_key) > 200):
        raise InvalidInput("business_key 须为 1–200 个字符 (business_key: 1–200 characters)", field="business_key")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= max_ttl()):
        raise InvalidInput(f"ttl 须为 0–{max_ttl()} 的整数秒 (ttl: whole seconds, 0–{max_ttl()})", field="ttl")


def thrown_problem(payload: Any, correlations: Mapping[str, Any]) -> tuple[str | None, int]:
    """Say what keeps a message or signal an instance threw from being queued, else None; and its payload's size.

    The limits of a payload from outside (check_input): its depth, values and MAX_PAYLOAD_BYTES of JSON, and
    correlation values that fit MAX_CORRELATION characters (the column: a longer one failed the save's INSERT).
    """
    too_big = content_limits.data_problem(payload)  # before json.dumps, which recurses once a level
    if too_big is not None:
        return f"{too_big[0]}: {too_big[1]}", 0
    size = len(json.dumps(payload, ensure_ascii=False, default=plain))
    if size > MAX_PAYLOAD_BYTES:
        return (f"数据 {-(-size // 1024)} KB，最多 {MAX_PAYLOAD_BYTES // 1024} KB (a payload of {-(-size // 1024)} KB "
                f"of JSON, at most {MAX_PAYLOAD_BYTES // 1024} KB)"), size
    if content_limits.data_problem(correlations) is not None or len(canonical(correlations)) > MAX_CORRELATION:
        return f"关联值过长，最多 {MAX_CORRELATION} 个字符 (correlation values past {MAX_CORRELATION} characters)", size
    return None, size


# --- what the deployed processes declare ----------------------------------------------------------------

@dataclass(frozen=True)
class Declaration:
    version_id: int
    process_key: str
    bpmn_id: str
    schema: str | None
    start: bool
    senders: tuple[str, ...] = ()


_declared: dict[tuple[str, int], list[tuple[str, str, str, str | None, tuple[str, ...]]]] = {}
_starts: dict[tuple[str, int], list[events.StartTrigger]] = {}


def _cached(session: Session, db: str, version_id: int) -> tuple[str, int]:
    cache_key = (db, version_id)
    if cache_key not in _declared:
        specs = runtime.specs_for(session, version_id)
        _declared[cache_key] = events.catch_declarations(specs)
        _starts[cache_key] = events.start_triggers(specs)
    return cache_key


def declarations(session: Session, kind: str, name: str) -> list[Declaration]:
    """Return the catches and start events of this message or signal in the latest version of every process."""
    db = database_key(session)
    rows = session.execute(select(ProcessVersion.id, ProcessDefinition.key).join(
        ProcessDefinition, ProcessDefinition.id == ProcessVersion.definition_id).where(
        ProcessVersion.version == ProcessDefinition.latest_version).order_by(ProcessDefinition.key)).all()
    out: list[Declaration] = []
    for version_id, key in rows:
        cache_key = _cached(session, db, version_id)
        starts = {s.bpmn_id for s in _starts[cache_key]}
        for k, n, bpmn_id, schema, senders in _declared[cache_key]:
            if k == kind and n == name:
                out.append(Declaration(version_id, key, bpmn_id, schema, bpmn_id in starts, senders))
    return out


def declared_names(session: Session, version_ids: list[int]) -> set[tuple[str, str]]:
    """Return (kind, name) of every message and signal the versions catch or start on (cached per version)."""
    db = database_key(session)
    out: set[tuple[str, str]] = set()
    for version_id in version_ids:
        out.update((kind, name) for kind, name, *_rest in _declared[_cached(session, db, version_id)])
    return out


def named(session: Session, actor: Actor, names: tuple[str, ...]) -> bool:
    """Tell whether the actor is one of the names: a username, or a unit or role by code or name."""
    wanted = {n for n in names if n != INITIATOR and not n.startswith("var:")}
    if not wanted:
        return False
    if actor.username in wanted:
        return True
    if actor.org_unit_ids and session.scalar(select(OrgUnit.id).where(
            OrgUnit.id.in_(actor.org_unit_ids), or_(OrgUnit.code.in_(wanted), OrgUnit.name.in_(wanted))).limit(1)):
        return True
    return bool(actor.role_ids and session.scalar(select(Role.id).where(
        Role.id.in_(actor.role_ids), or_(Role.code.in_(wanted), Role.name.in_(wanted))).limit(1)))


def privileged(actor: Actor) -> bool:
    return bool(actor.is_admin or actor.is_system)


def _names_sender(session: Session, actor: Actor, decls: list[Declaration]) -> bool:
    if privileged(actor):
        return True
    for d in decls:
        per_instance = any(n == INITIATOR or n.startswith("var:") for n in d.senders)
        if (per_instance and not d.start) or named(session, actor, d.senders):
            return True
    return False


def require_sender(session: Session, actor: Actor, kind: str, name: str, decls: list[Declaration]) -> None:
    """Refuse a sender no catch or start event of the message or signal names (admins always may).

    Raises: Forbidden
    """
    if _names_sender(session, actor, decls):
        return
    what = "消息" if kind == "message" else "信号"
    raise Forbidden(f"无权发送{what}「{name}」(you may not send {kind} {name!r}: no catch names you in "
                    f"{events.SENDERS_PROP})", name=name)


def require_sender_first(session: Session, actor: Actor, name: str, waiting_at: Callable[[], list[int]]) -> None:
    """Refuse, before anything about the message is looked up, a sender that no catch or start event of the latest
    versions names, nor the catch of an older version a matching instance waits at (`waiting_at`: the ids of the
    subscriptions the message would reach). Nothing declared and nobody waiting: left to `route`, which tells an
    unknown message from a refused sender.

    Raises: Forbidden
    """
    if privileged(actor):
        return
    decls = declarations(session, "message", name)
    if _names_sender(session, actor, decls):
        return
    decls += catches_at(session, waiting_at())
    if decls:
        require_sender(session, actor, "message", name, decls)


def catches_at(session: Session, subscription_ids: list[int]) -> list[Declaration]:
    """Return what the catches these subscriptions stand for declare, read from their instances' versions."""
    if not subscription_ids:
        return []
    db = database_key(session)
    rows = session.execute(select(ProcessInstance.version_id, ProcessDefinition.key, MessageSubscription.bpmn_id)
                           .join(ProcessInstance, ProcessInstance.id == MessageSubscription.instance_id)
                           .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
                           .where(MessageSubscription.id.in_(subscription_ids))).all()
    return [Declaration(version_id, key, bpmn_id, schema, False, senders) for version_id, key, catch in rows
            for _kind, _name, bpmn_id, schema, senders in _declared[_cached(session, db, version_id)]
            if bpmn_id == catch]


def may_deliver(session: Session, actor: Actor | None, created_by_id: int | None, instance_starter: int | None,
                senders: tuple[str, ...], sender_users: tuple[str, ...] = ()) -> bool:
    """Tell whether a message from this sender may resume this catch.

    `initiator`: only the instance's starter; `var:NAME`: only the user the waiting task's variable names.
    """
    if created_by_id is None:
        return True  # thrown by an instance
    if actor is None:
        return False  # its sender is gone or deactivated
    if privileged(actor):
        return True
    if INITIATOR in senders and instance_starter is not None and instance_starter == created_by_id:
        return True
    if actor.username in sender_users:
        return True
    return named(session, actor, senders)


def check_keep(session: Session, row: BpmnMessage, ttl: int, *, from_outside: bool) -> None:
    """Refuse to keep a message nobody waits for: with ttl 0, or one from outside past its sender's or its name's quota
    (buffer_quota). Kept ones count until consumed or expired, marked by the sweep or not. Under the name's lock on
    PostgreSQL (messages.lock_name): the name's count is exact, a sender's may be passed by what it publishes under
    other names at the same moment.

    Raises: MessageUnmatched, MessageQuotaExceeded
    """
    if ttl <= 0:
        raise MessageUnmatched(f"没有实例在等待消息「{row.name}」(no instance waits for message {row.name!r} with "
                               "these correlation values or business key; it was not kept: ttl is 0)", name=row.name)
    if not from_outside:
        return
    per_sender, per_name = buffer_quota()
    kept = select(func.count()).select_from(BpmnMessage).where(
        BpmnMessage.status == "buffered", BpmnMessage.expires_at > clock.now(), BpmnMessage.source_instance_id.is_(None))
    by = BpmnMessage.created_by_id
    mine = int(session.scalar(kept.where(by.is_(None) if row.created_by_id is None else by == row.created_by_id)) or 0)
    if mine >= per_sender:
        raise MessageQuotaExceeded(
            f"暂存的消息过多：此发送者已有 {mine} 条消息在等待接收，请待其被接收或到期后再发 (too many kept messages: this "
            f"sender has {mine} kept for catches not waiting yet: JZFLOW_MESSAGE_BUFFER_PER_SENDER={per_sender}; they "
            "count until consumed or expired)", name=row.name, quota="sender", limit=per_sender)
    theirs = int(session.scalar(kept.where(BpmnMessage.kind == row.kind, BpmnMessage.name == row.name)) or 0)
    if theirs >= per_name:
        raise MessageQuotaExceeded(
            f"暂存的消息过多：消息「{row.name}」已有 {theirs} 条在等待接收 (too many kept messages: {theirs} messages "
            f"{row.name!r} are kept for catches not waiting yet: JZFLOW_MESSAGE_BUFFER_PER_NAME={per_name}; they count "
            "until consumed or expired)", name=row.name, quota="name", limit=per_name)


def validate_for(session: Session, version_id: int, schema: str | None, payload: Mapping[str, Any]) -> dict[str, Any]:
    if not schema:
        return dict(payload)
    files = runtime.version_info(session, version_id).files
    if schema not in files:
        raise InvalidInput(f"消息数据的表单文件不存在: {schema} (message schema {schema} is not in the process bundle)",
                           field="data")
    return forms.validate(files[schema], payload, files, name=schema)


def validate_payload(session: Session, decls: list[Declaration], payload: Mapping[str, Any]) -> dict[str, Any]:
    """Check the payload against every schema the processes declare for it (messageSchema).

    Raises: FormInvalid
    """
    checked = dict(payload)
    for d in decls:
        checked = validate_for(session, d.version_id, d.schema, checked)
    return checked


def start_hops(session: Session, thrower_id: int | None, name: str) -> int:
    """Return the start_hops of an instance a thrown message or signal starts: 0 when no instance threw it, else the
    thrower's plus one.

    Raises: MessageUnmatched (past MAX_START_HOPS: the start is refused, with the name)
    """
    if thrower_id is None:
        return 0
    hops = int(session.scalar(select(ProcessInstance.start_hops).where(ProcessInstance.id == thrower_id)) or 0) + 1
    if hops > MAX_START_HOPS:
        raise MessageUnmatched(f"「{name}」由相互启动的实例抛出，已连续启动 {MAX_START_HOPS} 代，不再启动新实例 (instances "
                               f"starting one another through {name!r}: past MAX_START_HOPS={MAX_START_HOPS} "
                               "generations, no further start)", name=name)
    return hops


def sender(session: Session, user_id: int | None) -> Actor | None:
    """Return who published a message (the system for a thrown one); None when that user is gone or inactive."""
    if user_id is None:
        return SYSTEM
    username = session.scalar(select(User.username).where(User.id == user_id))
    if username is None:
        return None
    try:
        return actor_for(session, username)
    except UserNotFound:
        return None


__all__ = ["INITIATOR", "MAX_CORRELATION", "MAX_NAME", "MAX_PAYLOAD_BYTES", "MAX_THROWN", "Declaration",
           "MessageBusy", "MessageQuotaExceeded", "MessageUnknown", "MessageUnmatched", "Outcome", "buffer_quota",
           "canonical", "catches_at", "check_input", "check_keep", "declarations", "declared_names",
           "default_ttl", "max_ttl", "may_deliver", "named", "plain", "privileged", "require_sender",
           "require_sender_first", "sender", "thrown_problem", "validate_for", "validate_payload"]
