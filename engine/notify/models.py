"""The outbox: side effects recorded in the same transaction, delivered by a job after commit."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from engine import clock
from engine.orm import Base


class OutboxMessage(Base):
    __tablename__ = "outbox_message"
    __table_args__ = (Index("ix_outbox_pending", "delivered_at", "available_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(60))  # in_app | email | webhook | event
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    payload: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    available_at: Mapped[datetime] = mapped_column(default=clock.now)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)


class NoticeCount(Base):
    """Notices queued (`sent`) and refused past the cap (`dropped`) in one hour for one instance or one person."""

    __tablename__ = "notice_count"
    scope: Mapped[str] = mapped_column(String(40), primary_key=True)  # instance:<id> | user:<id>
    hour: Mapped[datetime] = mapped_column(primary_key=True)  # the hour's start, UTC
    sent: Mapped[int] = mapped_column(Integer, default=0)
    dropped: Mapped[int] = mapped_column(Integer, default=0)
