"""Projects in the four libraries (项目库), their stages 线索 → 签约 → 开工 → 竣工 → 投产, and 揭榜 bids."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Boolean, Date, ForeignKey, Integer, Numeric, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engine import clock
from engine.orm import Base

STAGES = ("lead", "signed", "started", "completed", "producing")  # 线索 签约 开工 竣工 投产


class ProjectLibrary(Base):
    """重点项目 / 招商引资项目 / 政府投资项目 / 土地资源集约利用类项目."""

    __tablename__ = "project_library"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)


class Project(Base):
    __tablename__ = "project"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    library_id: Mapped[int] = mapped_column(ForeignKey("project_library.id"), index=True)
    category: Mapped[str] = mapped_column(String(20))  # focus | key | layout
    industry_id: Mapped[int | None] = mapped_column(ForeignKey("industry.id"), index=True)
    investment: Mapped[Decimal] = mapped_column(Numeric(14, 2))  # 万元
    project_type: Mapped[str] = mapped_column(String(20), default="industrial")  # industrial | service | infrastructure
    stage: Mapped[str] = mapped_column(String(20), default="lead", index=True)
    enterprise: Mapped[str] = mapped_column(String(200), default="")
    responsible_leader_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    responsible_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True)
    location_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))  # town/street or zone
    planned_sign: Mapped[date | None] = mapped_column(Date)
    planned_start: Mapped[date | None] = mapped_column(Date)
    planned_complete: Mapped[date | None] = mapped_column(Date)
    planned_produce: Mapped[date | None] = mapped_column(Date)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    standard_land: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # “标准地”出让

    library: Mapped[ProjectLibrary] = relationship()
    stages: Mapped[list[ProjectStage]] = relationship(back_populates="project", order_by="ProjectStage.on")


class ProjectStage(Base):
    """The day a project reached a stage."""

    __tablename__ = "project_stage"
    __table_args__ = (UniqueConstraint("project_id", "stage", name="uq_project_stage"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    stage: Mapped[str] = mapped_column(String(20))
    on: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    evidence: Mapped[str] = mapped_column(String(300), default="", server_default="")  # e.g. 施工许可证 number

    project: Mapped[Project] = relationship(back_populates="stages")


class LibraryMember(Base):
    """A project's membership of one of the four libraries (平台化动态更新: added and removed over time)."""

    __tablename__ = "project_library_member"
    __table_args__ = (UniqueConstraint("project_id", "library_id", name="uq_project_library_member"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    library_id: Mapped[int] = mapped_column(ForeignKey("project_library.id"), index=True)
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    added_at: Mapped[datetime] = mapped_column(default=clock.now)


class StageReport(Base):
    """竣工 / 投产 reported by the responsible unit, waiting for a second person to confirm."""

    __tablename__ = "project_stage_report"
    __table_args__ = (UniqueConstraint("project_id", "stage", name="uq_project_stage_report"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    stage: Mapped[str] = mapped_column(String(20))
    on: Mapped[date] = mapped_column(Date)
    evidence: Mapped[str] = mapped_column(String(300))
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="reported")  # reported | confirmed | rejected
    reported_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    reported_at: Mapped[datetime] = mapped_column(default=clock.now)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    decided_at: Mapped[datetime | None] = mapped_column()


class ProjectNeed(Base):
    """要素保障: a project's need for 资金, 土地, 手续 or another factor, open until resolved."""

    __tablename__ = "project_need"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # funds | land | procedures | other
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)  # open | resolved
    raised_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    raised_at: Mapped[datetime] = mapped_column(default=clock.now)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    resolved_at: Mapped[datetime | None] = mapped_column()
    resolution: Mapped[str] = mapped_column(Text, default="")


class ProjectApproval(Base):
    """One approval stage of a project (立项用地规划许可 … 竣工验收): its instance and working days used/saved."""

    __tablename__ = "project_approval"
    __table_args__ = (UniqueConstraint("project_id", "stage", name="uq_project_approval_stage"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    stage: Mapped[str] = mapped_column(String(40))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instance.id"), unique=True)
    started_at: Mapped[datetime] = mapped_column(default=clock.now)
    certified_on: Mapped[date | None] = mapped_column(Date)
    used_wd: Mapped[int | None] = mapped_column(Integer)
    serial_wd: Mapped[int | None] = mapped_column(Integer)  # the serial sum of the departments' statutory limits
    saved_wd: Mapped[int | None] = mapped_column(Integer)


class Bid(Base):
    """A unit's bid (揭榜) on an open call (榜单) of the investment loop's step ⑦."""

    __tablename__ = "bid"
    __table_args__ = (UniqueConstraint("instance_id", "call_code", "unit_id", name="uq_bid_unit"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    call_code: Mapped[str] = mapped_column(String(60))
    unit_id: Mapped[int] = mapped_column(ForeignKey("org_unit.id"))
    bidder_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    proposal: Mapped[str] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(default=clock.now)
    appointed: Mapped[bool] = mapped_column(default=False)
