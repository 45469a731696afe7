"""The issue ledger (问题台账): one row per issue, its process instance drives 派单 → 销号."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from engine import clock
from engine.orm import Base

# registered 登记, dispatched 派单, accepted 响应, in_progress 办理, feedback 反馈, confirmed 回访确认
# (the person who raised it confirms the fix), closed 销号 (after 核验), returned 退回 (not ours)
ISSUE_STATES = ("registered", "dispatched", "accepted", "in_progress", "feedback", "confirmed", "closed", "returned")


class LedgerIssue(Base):
    __tablename__ = "ledger_issue"
    __table_args__ = (Index("ix_ledger_issue_open_due", "status", "due_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(40), default="manual")  # service_visit | project | manual
    enterprise: Mapped[str] = mapped_column(String(200), default="")
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True)  # 责任单位
    handler_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))  # 责任人
    responsible_leader_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    reported_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    status: Mapped[str] = mapped_column(String(20), default="registered")
    due_at: Mapped[datetime | None] = mapped_column()
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instance.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    closed_at: Mapped[datetime | None] = mapped_column()
