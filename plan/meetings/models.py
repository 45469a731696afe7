"""项目推进暨评审会议 (plan line 113: every two weeks): a meeting, its agenda of projects, its decisions."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine import clock
from engine.orm import Base

OUTCOMES = ("advance", "coordinate", "hold", "exit")  # 按计划推进 / 协调解决问题 / 暂缓 / 退出项目库


class ReviewMeeting(Base):
    """One meeting: its date, the agenda built from the projects due for review, held or not."""

    __tablename__ = "review_meeting"
    id: Mapped[int] = mapped_column(primary_key=True)
    held_on: Mapped[date] = mapped_column(Date, unique=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="planned")  # planned | held
    # [{"project_id", "code", "name", "stage", "reasons": [...]}] in the order they are discussed
    agenda: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    recipients: Mapped[list[int] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    held_at: Mapped[datetime | None] = mapped_column()


class MeetingDecision(Base):
    """What the meeting decided on one project: outcome, the words, who follows it up and by when."""

    __tablename__ = "meeting_decision"
    __table_args__ = (UniqueConstraint("meeting_id", "project_id", name="uq_meeting_decision_project"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("review_meeting.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    decision: Mapped[str] = mapped_column(Text)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))  # 落实单位
    due_on: Mapped[date | None] = mapped_column(Date)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    recorded_at: Mapped[datetime] = mapped_column(default=clock.now)
