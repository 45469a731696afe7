"""Working together on tasks: opinions and comments, attachments, CC (抄送), notifications, saved filters."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from engine import clock
from engine.orm import Base


class Comment(Base):
    """An approval opinion (审批意见) given on completion, or a comment on an instance or task."""

    __tablename__ = "comment"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    # A human_task id, or an archived one's (archive_human_task keeps ids): no foreign key since migration 0025.
    task_id: Mapped[int | None] = mapped_column(Integer, index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    kind: Mapped[str] = mapped_column(String(20), default="comment")  # opinion | comment | urge | system
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class Attachment(Base):
    """A file attached to an instance (and the task it was attached on), stored in the database."""

    __tablename__ = "attachment"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(Integer)  # a human_task id or an archived one's (see Comment)
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class CarbonCopy(Base):
    """抄送: an instance (or one of its tasks) shown to a user for information."""

    __tablename__ = "carbon_copy"
    __table_args__ = (Index("ix_carbon_copy_user_created", "user_id", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(Integer)  # a human_task id or an archived one's (see Comment)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    from_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    read_at: Mapped[datetime | None] = mapped_column()


class Notification(Base):
    """An in-app notification, written by outbox delivery (so exactly once per message)."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_user_unread", "user_id", "read_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    kind: Mapped[str] = mapped_column(String(40))  # task_assigned | urge | cc | escalation | …
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str | None] = mapped_column(String(300))
    # {"text": <engine.notify.texts id>, "args": {…}, "words": [...]}: rendered in the reader's language by the web
    # (web/notifications/wording.py); null on rows written before migration 0044, shown as title/body.
    params: Mapped[Any] = mapped_column(JSON, nullable=True)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_message.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    read_at: Mapped[datetime | None] = mapped_column()


class SavedFilter(Base):
    """A user's saved inbox filter."""

    __tablename__ = "saved_filter"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    query: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
