"""Messages and signals between instances and from outside: the buffer, the subscriptions, signal deliveries."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from engine import clock
from engine.orm import Base

# A message_id is its sender's: another sender's same id is another message, and tells nothing of the first.
# Two indexes, as a NULL never equals another NULL in a unique index (PostgreSQL's and SQLite's alike): a user's
# ids per user, the system's (no user: created_by_id NULL) in a space of their own.
_USER_SENT = text("message_id IS NOT NULL AND created_by_id IS NOT NULL")
_SYSTEM_SENT = text("message_id IS NOT NULL AND created_by_id IS NULL")
# Messages from outside kept for a catch not waiting yet: a sender's are counted at each one kept (its quota).
_KEPT_FROM_OUTSIDE = text("status = 'buffered' AND source_instance_id IS NULL")


class MessageSubscription(Base):
    """A catch event an instance waits on now (a projection of its state, kept by every save).

    Found by (kind, name, correlation) or (kind, name, business key): an index scan, never a load.
    """

    __tablename__ = "message_subscription"
    __table_args__ = (
        UniqueConstraint("instance_id", "task_guid", name="uq_message_subscription_task"),
        Index("ix_message_subscription_match", "kind", "name", "correlation"),
        Index("ix_message_subscription_business_key", "kind", "name", "business_key"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    task_guid: Mapped[str] = mapped_column(String(36))
    bpmn_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10))  # message | signal
    name: Mapped[str] = mapped_column(String(200))
    # canonical JSON of {correlation property: value as text}; NULL when the instance could not compute it
    correlation: Mapped[str | None] = mapped_column(String(500))
    business_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class BpmnMessage(Base):
    """A published message or signal: buffered until its time to live, or delivered once.

    status: buffered (waits for a catch until expires_at) | pending (thrown by an instance, not routed yet) |
    delivered (to instance_id, in the transaction that saved it) | started (a start event made instance_id) |
    expired (its time to live passed with no match, or with its match busy) | refused (routed by the outbox job: the
    catch's schema refused the payload, its sender is gone, or its match was busy at every try and the outbox gave it
    up; an admin may route it again) | broadcast (a signal: see signal_delivery). `reason`: why it was refused or
    expired by the outbox job (migration 0039).
    """

    __tablename__ = "bpmn_message"
    __table_args__ = (
        Index("uq_bpmn_message_sender_id", "kind", "name", "message_id", "created_by_id", unique=True,
              postgresql_where=_USER_SENT, sqlite_where=_USER_SENT),
        Index("uq_bpmn_message_system_id", "kind", "name", "message_id", unique=True,
              postgresql_where=_SYSTEM_SENT, sqlite_where=_SYSTEM_SENT),
        Index("ix_bpmn_message_buffered", "kind", "name", "status", "correlation"),
        Index("ix_bpmn_message_status", "status", "expires_at"),
        Index("ix_bpmn_message_kept_by", "created_by_id", "expires_at", postgresql_where=_KEPT_FROM_OUTSIDE,
              sqlite_where=_KEPT_FROM_OUTSIDE),  # migration 0038
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(200))  # the sender's id: its second one is a duplicate
    correlation: Mapped[str | None] = mapped_column(String(500))
    business_key: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(20))
    expires_at: Mapped[datetime | None] = mapped_column()
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instance.id"), index=True)
    source_instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instance.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    delivered_at: Mapped[datetime | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(String(500))


class SignalDelivery(Base):
    """One signal to one waiting instance: done in the same transaction as that instance's save, once."""

    __tablename__ = "signal_delivery"
    __table_args__ = (
        UniqueConstraint("signal_id", "instance_id", name="uq_signal_delivery"),
        Index("ix_signal_delivery_pending", "state", "signal_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    signal_id: Mapped[int] = mapped_column(ForeignKey("bpmn_message.id"))
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    state: Mapped[str] = mapped_column(String(10), default="pending")  # pending | done | skipped
    done_at: Mapped[datetime | None] = mapped_column()
