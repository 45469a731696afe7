"""The 2025 plan: industries (产业方向), indicators (指标) with targets and periodic values, plan items."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, ForeignKey, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engine import clock
from engine.orm import Base


class Industry(Base):
    """One of the plan's 25 industries, in its category (聚焦突破 / 重点实施 / 加快布局)."""

    __tablename__ = "industry"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    category: Mapped[str] = mapped_column(String(20))  # focus | key | layout (聚焦突破/重点实施/加快布局)
    direction: Mapped[str] = mapped_column(Text, default="")  # the plan's sentence on what to develop
    target_text: Mapped[str] = mapped_column(Text, default="")  # the target as the plan words it
    scale_target: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))  # 产业规模目标, 亿元
    plan_line: Mapped[int | None] = mapped_column(Integer)  # line of the plan file it comes from
    lead_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))


class Indicator(Base):
    """A measurable 2025 target of the plan (sections 二, 三 and 四), traceable to the plan's lines.

    A range (3—5家) keeps both ends: `target` is the lower one, which decides whether it is met, and
    `target_high` the upper. A target the plan states twice is one indicator: its first line in
    `plan_line`/`plan_text`, the others in `also_quoted`. An indicator counted over parts (5条产业链产值
    增长20%: the five chains) is the `parent` of one indicator per part; its value, unless recorded, is
    the number of parts that meet their own target.
    """

    __tablename__ = "indicator"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    group: Mapped[str] = mapped_column(String(40))  # industry_development | investment | operations | industry
    kind: Mapped[str] = mapped_column(String(20))  # growth_rate | share | count | amount
    unit: Mapped[str] = mapped_column(String(20))  # %, 个, 亿元, 万人, 列, 万吨 …
    target: Mapped[Decimal] = mapped_column(Numeric(16, 4))
    target_high: Mapped[Decimal | None] = mapped_column(Numeric(16, 4))  # upper end of a range (3—5家)
    comparison: Mapped[str] = mapped_column(String(4), default=">=")  # how an actual meets the target
    year: Mapped[int] = mapped_column(Integer, default=2025)
    # Cumulative figures (counts, amounts) add up over the year; rates and shares are year-to-date values.
    cumulative: Mapped[bool] = mapped_column(default=False)
    industry_id: Mapped[int | None] = mapped_column(ForeignKey("industry.id"))
    responsible_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    source: Mapped[str] = mapped_column(String(100), default="")  # e.g. 统计局
    plan_text: Mapped[str] = mapped_column(Text)  # the plan's words, verbatim
    plan_line: Mapped[int] = mapped_column(Integer)
    # Further lines stating the same target: [{"plan_line": 91, "plan_text": "…"}]
    also_quoted: Mapped[list[dict[str, object]] | None] = mapped_column(JSON)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("indicator.id"), index=True)

    industry: Mapped[Industry | None] = relationship()


class IndicatorValue(Base):
    """The recorded value of an indicator for a period (month), with its source."""

    __tablename__ = "indicator_value"
    __table_args__ = (UniqueConstraint("indicator_id", "period", name="uq_indicator_value_period"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    indicator_id: Mapped[int] = mapped_column(ForeignKey("indicator.id"), index=True)
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    value: Mapped[Decimal] = mapped_column(Numeric(16, 4))
    source: Mapped[str] = mapped_column(String(100), default="")
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    recorded_at: Mapped[datetime] = mapped_column(default=clock.now)

    indicator: Mapped[Indicator] = relationship()


class PlanItem(Base):
    """A task of the period's industry plan (③), claimed by a responsible leader (④ 认领)."""

    __tablename__ = "plan_item"
    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instance.id"), index=True)
    industry_id: Mapped[int | None] = mapped_column(ForeignKey("industry.id"))
    indicator_id: Mapped[int | None] = mapped_column(ForeignKey("indicator.id"))
    title: Mapped[str] = mapped_column(String(300))
    gap: Mapped[Decimal | None] = mapped_column(Numeric(16, 4))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | claimed | done
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    claimed_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
