"""Deadlines: what the SLA sweep watches, the escalation steps it took, 督办 actions, notification
preferences and report runs (周调度 / 月通报)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine import clock
from engine.orm import Base

LIGHTS = ("green", "yellow", "red")


class DeadlineWatch(Base):
    """One object with a deadline (a human task, or an object an application registers) and where it stands.

    The sweep finds work by `next_at` (an index scan) and takes each row under a row lock, so two
    workers never act on one object at once. `round` counts the deadlines the object has had: a new
    deadline (urged, extended, the object's next milestone) starts the ladder again, and steps are unique
    per round.
    """

    __tablename__ = "deadline_watch"
    __table_args__ = (
        UniqueConstraint("object_type", "object_id", name="uq_deadline_watch_object"),
        Index("ix_deadline_watch_next", "active", "next_at"),
        Index("ix_deadline_watch_unit", "unit_id", "active"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    object_type: Mapped[str] = mapped_column(String(20))  # task, or a registered source's type
    object_id: Mapped[int] = mapped_column(Integer)
    policy: Mapped[str] = mapped_column(String(120), default="")  # process key, or the key the source gives
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))  # whose leaders the ladder climbs
    round: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime | None] = mapped_column()
    due_at: Mapped[datetime | None] = mapped_column()
    warn_at: Mapped[datetime | None] = mapped_column()
    light: Mapped[str] = mapped_column(String(10), default="green")  # green | yellow | red
    level: Mapped[int] = mapped_column(Integer, default=0)  # 0 none, 1 handler … 4 city leader (this round)
    next_at: Mapped[datetime | None] = mapped_column()  # when the sweep looks again; None: nothing left
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    escalated_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)


class EscalationStep(Base):
    """A step of the ladder taken once: a light turning (yellow, red) or a level reached (handler … city leader)."""

    __tablename__ = "escalation_step"
    __table_args__ = (UniqueConstraint("object_type", "object_id", "round", "step", name="uq_escalation_step_once"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    watch_id: Mapped[int] = mapped_column(ForeignKey("deadline_watch.id"), index=True)
    object_type: Mapped[str] = mapped_column(String(20))
    object_id: Mapped[int] = mapped_column(Integer)
    round: Mapped[int] = mapped_column(Integer)
    step: Mapped[str] = mapped_column(String(30))  # yellow | red | handler | unit_head | responsible_leader | city_leader
    level: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(default=clock.now)
    due_at: Mapped[datetime | None] = mapped_column()
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    recipients: Mapped[Any] = mapped_column(JSON, default=list)  # user ids notified
    note: Mapped[str] = mapped_column(Text, default="")


class DeadlineAction(Base):
    """A leader's 督办 action (urge, reassign, extension decision, escalate) or an extension request."""

    __tablename__ = "deadline_action"
    __table_args__ = (Index("ix_deadline_action_object", "object_type", "object_id", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    object_type: Mapped[str] = mapped_column(String(20))
    object_id: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(30))  # urge | reassign | extension_grant | extension_refuse | escalate
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    at: Mapped[datetime] = mapped_column(default=clock.now)
    note: Mapped[str] = mapped_column(Text, default="")
    due_before: Mapped[datetime | None] = mapped_column()
    due_after: Mapped[datetime | None] = mapped_column()
    target_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))


class ExtensionRequest(Base):
    """申请延期 on a task (objects of an application may ask through their own processes)."""

    __tablename__ = "extension_request"
    __table_args__ = (Index("ix_extension_request_object", "object_type", "object_id", "status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    object_type: Mapped[str] = mapped_column(String(20))
    object_id: Mapped[int] = mapped_column(Integer)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    requested_due_at: Mapped[datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | granted | refused
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    decided_at: Mapped[datetime | None] = mapped_column()
    opinion: Mapped[str] = mapped_column(Text, default="")


class NotifyPreference(Base):
    """Which channels a user wants for a kind of notification ('*': every kind). No row: in-app only."""

    __tablename__ = "notify_preference"
    __table_args__ = (UniqueConstraint("user_id", "kind", name="uq_notify_preference_kind"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40), default="*")
    channels: Mapped[Any] = mapped_column(JSON, default=list)  # ["in_app", "email", "webhook"]


class NotifyWebhook(Base):
    """A webhook (WeChat Work / DingTalk group robot, or plain JSON) of a user or of an org unit."""

    __tablename__ = "notify_webhook"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"), unique=True)
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), unique=True)
    url: Mapped[str] = mapped_column(String(500))
    flavor: Mapped[str] = mapped_column(String(20), default="robot")  # robot (msgtype text) | json
    active: Mapped[bool] = mapped_column(Boolean, default=True)
