"""A small, hand-computable data set for the dashboard's tests (engine, web, browser) and its bench.

On the seeded plan (data/seed) with bpmn/ deployed, as of 2025-09-01 (period 2025-08):

indicator figures (year-to-date):
  gdp_growth              2025-03 5.1, 2025-06 5.4      (growth rate, target 5.6 %)
  tertiary_share          2025-06 49.5, 2025-08 50.0    (share, target 53 %)
  scale_smart_appliances  2025-07 270, 2025-08 320      (cumulative, target 500 亿元)
  scale_new_energy        2025-08 110                   (cumulative, target 150 亿元)
  industrial_enterprises  2025-08 1012                  (stock, target 1000 家)
projects (stage dates; planned dates):
  XM-2025-0001 智能家电 focus   signed 02-10, started 05-20      gxj, located in lgz
  XM-2025-0002 新能源 focus     signed 03-15; planned start 07-01 (62 days late)  fgj, in jxj
  XM-2025-0003 智能家电 focus   lead; planned sign 10-01          gxj
  XM-2025-0004 新一代信息技术 focus  signed 06-01                 gxj
  XM-2025-0005 低空经济 focus   signed 08-20                      lkq
  XM-2025-0006 钢结构 key       signed 04-01, started 06-15       gxj (library 重点项目)
  XM-2024-0007 机械装备 key     signed 2024-11-01, started 03-01  gxj
  XM-2025-0008 帽饰 layout      lead; planned sign 06-30 (63 days late)  gxj, in pjz
a plan item for 智能家电 (scale_smart_appliances, period 2025-08).
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, deploy
from engine.org.actors import SYSTEM
from engine.org.models import OrgUnit
from plan import investment as plan
from plan.data import seed
from plan.indicators.models import Indicator, IndicatorValue, Industry
from plan.projects.models import Project, ProjectLibrary, ProjectStage

BPMN_DIR = Path(__file__).resolve().parents[1] / "bpmn"
NOW = datetime(2025, 9, 1, 9, 0, tzinfo=clock.SHANGHAI)
FIGURES = [("gdp_growth", "2025-03", "5.1"), ("gdp_growth", "2025-06", "5.4"),
           ("tertiary_share", "2025-06", "49.5"), ("tertiary_share", "2025-08", "50.0"),
           ("scale_smart_appliances", "2025-07", "270"), ("scale_smart_appliances", "2025-08", "320"),
           ("scale_new_energy", "2025-08", "110"), ("industrial_enterprises", "2025-08", "1012")]
PROJECTS = [
    ("XM-2025-0001", "卡奥斯智能家电配套产业园", "smart_appliances", "investment", "gxj", "lgz",
     {"signed": date(2025, 2, 10), "started": date(2025, 5, 20)}, {"planned_complete": date(2025, 12, 31)}),
    ("XM-2025-0002", "储能系统集成基地", "new_energy", "investment", "fgj", "jxj",
     {"signed": date(2025, 3, 15)}, {"planned_start": date(2025, 7, 1)}),
    ("XM-2025-0003", "智能家电零部件项目", "smart_appliances", "investment", "gxj", None,
     {}, {"planned_sign": date(2025, 10, 1)}),
    ("XM-2025-0004", "芯片封装测试项目", "new_generation_it", "investment", "gxj", None,
     {"signed": date(2025, 6, 1)}, {}),
    ("XM-2025-0005", "工业级无人机整机项目", "low_altitude_economy", "investment", "lkq", None,
     {"signed": date(2025, 8, 20)}, {}),
    ("XM-2025-0006", "电力钢结构扩能项目", "steel_structure", "key", "gxj", None,
     {"signed": date(2025, 4, 1), "started": date(2025, 6, 15)}, {}),
    ("XM-2024-0007", "纺织机械整机项目", "machinery", "key", "gxj", None,
     {"signed": date(2024, 11, 1), "started": date(2025, 3, 1)}, {}),
    ("XM-2025-0008", "帽饰设计中心", "headwear", "investment", "gxj", "pjz",
     {}, {"planned_sign": date(2025, 6, 30)}),
]


def seed_and_deploy(session: Session) -> None:
    """Load data/seed and deploy bpmn/ (commits)."""
    seed.load_seed(session)
    deploy.deploy(session, deploy.read_directory(BPMN_DIR), actor=SYSTEM)
    session.commit()


def record(session: Session, code: str, period: str, value: str, source: str = "统计局") -> None:
    indicator = session.scalar(select(Indicator).where(Indicator.code == code))
    assert indicator is not None, code
    session.add(IndicatorValue(indicator_id=indicator.id, period=period, value=Decimal(value), source=source))


def add_project(session: Session, code: str, name: str, industry: str, library: str, unit: str,
                location: str | None, reached: dict[str, date], planned: dict[str, date]) -> Project:
    ind = session.scalar(select(Industry).where(Industry.code == industry))
    lib = session.scalar(select(ProjectLibrary).where(ProjectLibrary.code == library))
    units = {u.code: u.id for u in session.scalars(select(OrgUnit))}
    assert ind is not None and lib is not None
    stage = max(["lead", *reached], key=["lead", "signed", "started", "completed", "producing"].index)
    project = Project(code=code, name=name, library_id=lib.id, category=ind.category, industry_id=ind.id,
                      investment=Decimal("50000"), stage=stage, enterprise=f"{name}有限公司",
                      responsible_unit_id=units[unit], location_unit_id=units[location] if location else None,
                      **planned)
    session.add(project)
    session.flush()
    session.add(ProjectStage(project_id=project.id, stage="lead", on=date(2024, 10, 1)))
    for s, on in reached.items():
        session.add(ProjectStage(project_id=project.id, stage=s, on=on))
    return project


def sample(session: Session) -> None:
    """Add the figures, projects and plan item above (commits)."""
    for code, period, value in FIGURES:
        record(session, code, period, value)
    for spec in PROJECTS:
        add_project(session, *spec)
    plan.create_plan_items(session, period="2025-08", instance_id=None, actor=SYSTEM, items=[
        {"title": "智能家电产业链补链强链", "industry": "smart_appliances", "indicator": "scale_smart_appliances",
         "gap": 20}])
    session.commit()
