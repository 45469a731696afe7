"""消息与信号: what process owners, auditors and admins read about messages and signals (nothing here changes state).

Recent messages and what became of each, the catches instances wait on now (by name, with counts), and
recent signal broadcasts with their delivery progress — every list a keyset page, newest first.

Who may open the pages reads all of it, like the modeller (`versions.may_read`): process owners, auditors and
admins read every process and, by `engine.tasks.access.reads_everything`, every instance — whoever deployed it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from engine import clock
from engine.deploy import versions
from engine.errors import Forbidden, InvalidInput
from engine.org.actors import Actor
from engine.org.models import User
from engine.runtime.message_models import BpmnMessage, MessageSubscription, SignalDelivery
from engine.runtime.message_rules import MAX_NAME, declared_names
from engine.runtime.models import ProcessDefinition, ProcessInstance, ProcessVersion

MAX_PAGE = 200
MAX_NAMES = 200  # message names offered in the filter, waiting names summarised
# what a message row may say became of it (a buffered one past its time to live reads as expired)
STATES = ("delivered", "started", "buffered", "expired", "refused", "pending")
KINDS = ("message", "signal")


# --- who reads what ------------------------------------------------------------------------------------------

def check_reader(session: Session, actor: Actor) -> None:
    """Refuse anyone but process owners, auditors and admins (one role lookup: the menu asks it on every page).

    Raises: Forbidden
    """
    if not versions.may_read(session, actor):
        raise Forbidden("只有流程管理员、审计督查人员和系统管理员可以查看消息与信号 "
                        "(process owners, auditors and admins only)")


# --- filters -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MessageFilter:
    name: str | None = None
    state: str | None = None

    def is_empty(self) -> bool:
        return self.name is None and self.state is None


def check_name(name: str | None, field: str = "name") -> str | None:
    """Return a name filter stripped (None when empty).

    Raises: InvalidInput
    """
    name = (name or "").strip()
    if len(name) > MAX_NAME:
        raise InvalidInput(f"筛选条件「名称」最多 {MAX_NAME} 个字符 ({field}: at most {MAX_NAME} characters)",
                           field=field)
    return name or None


def message_filter(name: str | None, state: str | None) -> MessageFilter:
    """Read a filter of the message list.

    Raises: InvalidInput (naming the field: name, state)
    """
    state = (state or "").strip() or None
    if state is not None and state not in STATES:
        raise InvalidInput(f"筛选条件「状态」无效：{state[:40]} (state: one of {', '.join(STATES)})", field="state")
    return MessageFilter(name=check_name(name), state=state)


def check_kind(kind: str | None) -> str | None:
    """Return a kind filter (message or signal; None when empty).

    Raises: InvalidInput
    """
    kind = (kind or "").strip() or None
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"筛选条件「类型」无效：{kind[:40]} (kind: message or signal)", field="kind")
    return kind


def _state(state: str, now: datetime) -> ColumnElement[bool]:
    if state == "buffered":
        return and_(BpmnMessage.status == "buffered", BpmnMessage.expires_at > now)
    if state == "expired":  # the beat marks them within a minute; the page does not wait for it
        return or_(BpmnMessage.status == "expired",
                   and_(BpmnMessage.status == "buffered", BpmnMessage.expires_at <= now))
    return BpmnMessage.status == state


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def _sender(row: BpmnMessage, names: dict[int, str]) -> str | None:
    return names.get(row.created_by_id) if row.created_by_id is not None else None


def _user_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return {uid: name for uid, name in session.execute(select(User.id, User.display_name).where(User.id.in_(ids)))}


def _correlation(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- recent messages -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MessageRow:
    id: int
    name: str
    message_id: str | None  # the publisher's own id
    correlation: dict[str, Any]
    business_key: str | None
    state: str  # as STATES: a buffered one past its time to live is expired
    expires_at: datetime | None
    instance_id: int | None  # reached (delivered) or started
    instance_title: str | None
    process_name: str | None
    source_instance_id: int | None  # thrown by that instance
    sender: str | None  # the publishing user's name; None: an instance threw it, or the system
    created_at: datetime
    delivered_at: datetime | None
    reason: str | None = None  # why the outbox job refused or expired it ("中文 (English)")


@dataclass(frozen=True)
class MessagePage:
    rows: list[MessageRow]
    next_after: int | None


def recent_messages(session: Session, flt: MessageFilter, *, after: int | None = None,
                    limit: int = 50) -> MessagePage:
    """Return one page of messages, newest first, continuing below message id `after`."""
    now, size = clock.now(), _limit(limit)
    q = (select(BpmnMessage, ProcessInstance.title, ProcessDefinition.name)
         .outerjoin(ProcessInstance, ProcessInstance.id == BpmnMessage.instance_id)
         .outerjoin(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
         .where(BpmnMessage.kind == "message"))
    if flt.name:
        q = q.where(BpmnMessage.name == flt.name)
    if flt.state:
        q = q.where(_state(flt.state, now))
    if after is not None:
        q = q.where(BpmnMessage.id < after)
    found = session.execute(q.order_by(BpmnMessage.id.desc()).limit(size + 1)).all()
    names = _user_names(session, {r[0].created_by_id for r in found[:size] if r[0].created_by_id is not None})
    rows = []
    for message, title, process in found[:size]:
        state = message.status
        if state == "buffered" and message.expires_at is not None and clock.as_utc(message.expires_at) <= now:
            state = "expired"
        rows.append(MessageRow(
            id=message.id, name=message.name, message_id=message.message_id,
            correlation=_correlation(message.correlation), business_key=message.business_key, state=state,
            expires_at=message.expires_at, instance_id=message.instance_id, instance_title=title,
            process_name=process, source_instance_id=message.source_instance_id, sender=_sender(message, names),
            created_at=message.created_at, delivered_at=message.delivered_at, reason=message.reason))
    return MessagePage(rows, rows[-1].id if len(found) > size else None)


def message_names(session: Session) -> list[str]:
    """Return the message names one may filter by: those the latest version of a process catches or starts on.

    Read from the deployed versions (cached), not from the messages: no scan of the message table.
    """
    latest = select(ProcessVersion.id).join(ProcessDefinition, ProcessDefinition.id == ProcessVersion.definition_id
                                            ).where(ProcessVersion.version == ProcessDefinition.latest_version)
    names = declared_names(session, list(session.scalars(latest)))
    return sorted(n for k, n in names if k == "message")[:MAX_NAMES]


# --- waiting catches -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WaitingName:
    kind: str
    name: str
    catches: int
    instances: int
    since: datetime  # the oldest catch's


@dataclass(frozen=True)
class WaitingRow:
    id: int
    kind: str
    name: str
    instance_id: int
    instance_title: str
    process_name: str
    bpmn_id: str
    correlation: dict[str, Any]
    business_key: str | None
    since: datetime


@dataclass(frozen=True)
class WaitingPage:
    rows: list[WaitingRow]
    next_after: int | None


def waiting_names(session: Session, *, kind: str | None = None) -> list[WaitingName]:
    """Return, per message or signal name, how many catches and instances wait on it (most first)."""
    q = (select(MessageSubscription.kind, MessageSubscription.name, func.count(),
                func.count(MessageSubscription.instance_id.distinct()), func.min(MessageSubscription.created_at))
         .group_by(MessageSubscription.kind, MessageSubscription.name))
    if kind:
        q = q.where(MessageSubscription.kind == kind)
    rows = session.execute(q.order_by(func.count().desc(), MessageSubscription.kind, MessageSubscription.name)
                           .limit(MAX_NAMES)).all()
    return [WaitingName(r[0], r[1], int(r[2]), int(r[3]), r[4]) for r in rows]


def waiting(session: Session, *, kind: str, name: str, after: int | None = None,
            limit: int = 50) -> WaitingPage:
    """Return one page of the catches waiting on a name, oldest first, continuing above subscription id `after`."""
    size = _limit(limit)
    q = (select(MessageSubscription, ProcessInstance.title, ProcessDefinition.name)
         .join(ProcessInstance, ProcessInstance.id == MessageSubscription.instance_id)
         .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)
         .where(MessageSubscription.kind == kind, MessageSubscription.name == name))
    if after is not None:
        q = q.where(MessageSubscription.id > after)
    found = session.execute(q.order_by(MessageSubscription.id).limit(size + 1)).all()
    rows = [WaitingRow(id=s.id, kind=s.kind, name=s.name, instance_id=s.instance_id, instance_title=title,
                       process_name=process, bpmn_id=s.bpmn_id, correlation=_correlation(s.correlation),
                       business_key=s.business_key, since=s.created_at) for s, title, process in found[:size]]
    return WaitingPage(rows, rows[-1].id if len(found) > size else None)


# --- signal broadcasts ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignalRow:
    id: int
    name: str
    status: str  # broadcast | pending (thrown by an instance, not fanned out yet)
    source_instance_id: int | None
    started_instance_id: int | None  # the first instance a signal start event started
    sender: str | None
    created_at: datetime
    done: int
    pending: int
    skipped: int  # the instance no longer waited when its turn came

    @property
    def total(self) -> int:
        return self.done + self.pending + self.skipped


@dataclass(frozen=True)
class SignalPage:
    rows: list[SignalRow]
    next_after: int | None


def recent_signals(session: Session, *, name: str | None = None, after: int | None = None,
                   limit: int = 50) -> SignalPage:
    """Return one page of signal broadcasts, newest first, with their deliveries counted by state."""
    size = _limit(limit)
    q = select(BpmnMessage).where(BpmnMessage.kind == "signal")
    if name:
        q = q.where(BpmnMessage.name == name)
    if after is not None:
        q = q.where(BpmnMessage.id < after)
    found = list(session.scalars(q.order_by(BpmnMessage.id.desc()).limit(size + 1)))
    shown = found[:size]
    counts: dict[tuple[int, str], int] = {}
    if shown:
        c = (select(SignalDelivery.signal_id, SignalDelivery.state, func.count())
             .where(SignalDelivery.signal_id.in_([s.id for s in shown])))
        counts = {(sid, state): int(n) for sid, state, n in
                  session.execute(c.group_by(SignalDelivery.signal_id, SignalDelivery.state))}
    names = _user_names(session, {s.created_by_id for s in shown if s.created_by_id is not None})
    rows = [SignalRow(id=s.id, name=s.name, status=s.status, source_instance_id=s.source_instance_id,
                      started_instance_id=s.instance_id, sender=_sender(s, names), created_at=s.created_at,
                      done=counts.get((s.id, "done"), 0), pending=counts.get((s.id, "pending"), 0),
                      skipped=counts.get((s.id, "skipped"), 0)) for s in shown]
    return SignalPage(rows, rows[-1].id if len(found) > size else None)


__all__ = ["KINDS", "MAX_PAGE", "STATES", "MessageFilter", "MessagePage", "MessageRow", "SignalPage", "SignalRow",
           "WaitingName", "WaitingPage", "WaitingRow", "check_kind", "check_name", "check_reader", "message_filter",
           "message_names", "recent_messages", "recent_signals", "waiting", "waiting_names"]
