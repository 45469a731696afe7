"""招商线索 (investment leads): one row per lead, its investment_lead instance drives 派单 → 响应 → 对接 → 反馈."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from engine import clock
from engine.orm import Base

# registered 登记, dispatched 派单, accepted 响应 (接收), returned 退回, contacting 对接中,
# project 已转项目 (反馈: a project lead in the 招商引资项目 library), dropped 未形成项目 (反馈, with the reason)
LEAD_STATES = ("registered", "dispatched", "accepted", "returned", "contacting", "project", "dropped")
SOURCES = ("platform", "visit", "referral", "other")  # 监测平台推送 / 外出招商 / 以商招商 / 其他


class InvestmentLead(Base):
    __tablename__ = "investment_lead"
    __table_args__ = (Index("ix_investment_lead_open_due", "status", "due_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)  # ZS-<year>-<id>
    title: Mapped[str] = mapped_column(String(300))
    enterprise: Mapped[str] = mapped_column(String(200), default="")
    industry_id: Mapped[int | None] = mapped_column(ForeignKey("industry.id"))
    investment: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))  # 万元, as first reported
    source: Mapped[str] = mapped_column(String(20), default="other")
    description: Mapped[str] = mapped_column(Text, default="")
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True)  # 承接单位
    handler_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))  # who accepted it
    responsible_leader_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    dispatched_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    status: Mapped[str] = mapped_column(String(20), default="registered")
    contacts: Mapped[int] = mapped_column(default=0)  # 对接 rounds recorded
    due_at: Mapped[datetime | None] = mapped_column()  # 反馈期限
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id"))
    outcome_note: Mapped[str] = mapped_column(Text, default="")
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instance.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    closed_at: Mapped[datetime | None] = mapped_column()
