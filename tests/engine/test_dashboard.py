"""经济运行监测: projections, gaps, lights and links on hand-computed figures; scope; slow projects; charts.

The data set is tests/dashboard_data.py (its docstring lists every figure). Hand computations:

- GDP +5.6 % (growth rate, not cumulative): as of 2025-08 the latest figure is June's 5.4 → projected
  5.4, gap 5.6 − 5.4 = 0.2 ≤ 5 % × 5.6 = 0.28 → behind, yellow; progress 5.4 ÷ 5.6 = 96.43 %. As of
  March: 5.1 → gap 0.5 > 0.28 → red.
- 第三产业占比 53 % (share): 50.0 → projected 50.0 (a share is not extrapolated), gap 3.0 > 2.65 → red,
  relative gap 3 ÷ 53 = 5.66 %.
- 智能家电产业规模 500 亿元 (cumulative): August YTD 320 → projected 320 × 12 ÷ 8 = 480, gap 20 ≤ 25 →
  yellow; the month's own figure 320 − 270 = 50. As of July: 270 × 12 ÷ 7 = 462.8571, gap 37.1429 → red.
- 聚焦突破类新签约 60 (counted): 4 focus projects signed Feb–Aug → projected 4 × 12 ÷ 8 = 6, gap 54.
  新签约 200: 5 signed in 2025 (one signed in 2024 is not counted) → 7.5, shown as 8 projects, gap 192.
  新开工 150: 3 started in 2025 → 4.5, shown as 5 projects, gap 145.
"""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, org
from engine.errors import NotFound
from engine.org.actors import SYSTEM, actor_for
from engine.org.models import OrgUnit
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from plan import dashboard
from plan.dashboard import Scope, charts, unitview
from plan.ledger.models import LedgerIssue
from plan.projects import slow_projects
from plan.projects.models import Project
from tests import dashboard_data

ALL = Scope(True)


@pytest.fixture
def data(session: Session, frozen: Any) -> Session:
    dashboard_data.seed_and_deploy(session)
    dashboard_data.sample(session)
    return session


def rows_by_code(session: Session, period: str, scope: Scope = ALL) -> dict[str, dashboard.IndicatorRow]:
    return {r.code: r for r in dashboard.indicator_rows(session, period, scope)}


def test_growth_rate_target_gdp(data: Session) -> None:
    gdp = rows_by_code(data, "2025-08")["gdp_growth"]
    assert (gdp.a.value, gdp.a.as_of, gdp.a.projected, gdp.a.gap) == (Decimal("5.4"), "2025-06", Decimal("5.4"),
                                                                     Decimal("0.2"))
    assert (gdp.a.status, gdp.light) == ("behind", "yellow")
    assert gdp.period_value == Decimal("5.4") and gdp.ytd == Decimal("5.4")
    assert gdp.progress == Decimal("96.43") and gdp.relative_gap == Decimal("3.57")
    march = rows_by_code(data, "2025-03")["gdp_growth"]
    assert (march.a.projected, march.a.gap, march.light) == (Decimal("5.1"), Decimal("0.5"), "red")


def test_share_target_tertiary(data: Session) -> None:
    share = rows_by_code(data, "2025-08")["tertiary_share"]
    assert not share.a.cumulative
    assert (share.a.value, share.a.projected, share.a.gap) == (Decimal("50"), Decimal("50"), Decimal("3"))
    assert (share.a.status, share.light, share.relative_gap) == ("behind", "red", Decimal("5.66"))
    assert share.series[5:8] == (Decimal("49.5"), None, Decimal("50"))


def test_cumulative_amount_projection(data: Session) -> None:
    scale = rows_by_code(data, "2025-08")["scale_smart_appliances"]
    assert (scale.ytd, scale.period_value, scale.a.projected, scale.a.gap) == (
        Decimal("320"), Decimal("50"), Decimal("480"), Decimal("20"))
    assert (scale.light, scale.progress, scale.relative_gap) == ("yellow", Decimal("64.00"), Decimal("4.00"))
    july = rows_by_code(data, "2025-07")["scale_smart_appliances"]
    assert (july.a.projected, july.a.gap, july.light) == (Decimal("462.8571"), Decimal("37.1429"), "red")
    assert july.period_value == Decimal("270")  # nothing recorded before July: the whole YTD is July's


def test_counted_investment_targets(data: Session) -> None:
    rows = rows_by_code(data, "2025-08")
    focus, signed, started = rows["projects_signed_focus"], rows["projects_signed"], rows["projects_started"]
    assert (focus.ytd, focus.a.projected, focus.a.gap, focus.light) == (Decimal(4), Decimal(6), Decimal(54), "red")
    assert focus.series == tuple(Decimal(n) for n in (0, 1, 2, 2, 2, 3, 3, 4))
    assert focus.period_value == Decimal(1)  # XM-2025-0005 in August
    assert (signed.ytd, signed.a.projected, signed.a.gap) == (Decimal(5), Decimal(8), Decimal(192))  # whole projects
    assert (started.ytd, started.a.projected, started.a.gap) == (Decimal(3), Decimal(5), Decimal(145))
    assert rows["industrial_enterprises"].light == "green"
    assert rows["scale_new_energy"].a.status == "on_track" and rows["scale_new_energy"].light == "green"
    assert rows["rd_intensity"].light == "none" and rows["rd_intensity"].ytd is None


def test_light_thresholds() -> None:
    def light(target: str, value: str) -> str:
        from plan import investment as plan
        status, projected, gap, remaining = plan.assess(target=Decimal(target), comparison=">=", cumulative=False,
                                                        value=Decimal(value), months=8)
        return dashboard.light_of(plan.Assessment(1, "x", "x", "growth_rate", "%", Decimal(target), ">=", False, None,
                                                  Decimal(value), "2025-08", status, projected, gap, remaining))
    assert [light("5.6", v) for v in ("5.7", "5.6", "5.32", "5.31")] == ["green", "green", "yellow", "red"]


def test_gap_analysis_links_plan_items_projects_and_issues(data: Session) -> None:
    flagged = slow_projects.flag_slow_projects(data, clock.now(), SYSTEM)
    data.commit()
    ov = dashboard.overview(data, period="2025-08", scope=ALL, now=clock.now())
    by_code = {g.row.code: g for g in ov.gaps}
    reds = [g.row.relative_gap for g in ov.gaps if g.row.light == "red"]
    assert ov.gaps[0].row.light == "red" and reds == sorted(reds, reverse=True)  # red first, largest gap first
    assert by_code["projects_signed_layout"].row.relative_gap == Decimal(100)  # none signed: 0 → gap 20 of 20
    assert [g.row.light for g in ov.gaps] == sorted((g.row.light for g in ov.gaps), key=["red", "yellow"].index)
    scale = by_code["scale_smart_appliances"]
    assert [i.title for i in scale.plan_items] == ["智能家电产业链补链强链"]
    assert [p.code for p in scale.projects] == ["XM-2025-0001", "XM-2025-0003"]
    focus = by_code["projects_signed_focus"]
    assert [p.code for p in focus.projects] == ["XM-2025-0003"]  # focus projects not signed yet
    started = by_code["projects_started"]
    assert {p.code for p in started.projects} == {"XM-2025-0002", "XM-2025-0003", "XM-2025-0004", "XM-2025-0005",
                                                  "XM-2025-0008"}
    issue_of = {f.project_code: f.issue_id for f in flagged}
    assert {i.id for i in started.issues} == {issue_of["XM-2025-0002"], issue_of["XM-2025-0008"]}
    assert "gdp_growth" in by_code and "tertiary_share" in by_code and "scale_new_energy" not in by_code
    behind = {i.industry.code for i in ov.industries if i.light in ("red", "yellow")}
    assert behind == {"smart_appliances"}
    assert len(ov.industries) == 22


def test_investment_pipeline_and_lags(data: Session) -> None:
    ov = dashboard.overview(data, period="2025-08", scope=ALL, now=clock.now())
    assert {k: r.a.target for k, r in ov.investment.signed.items()} == {
        "": Decimal(200), "focus": Decimal(60), "key": Decimal(120), "layout": Decimal(20)}
    assert {k: r.a.target for k, r in ov.investment.started.items()} == {
        "": Decimal(150), "focus": Decimal(35), "key": Decimal(100), "layout": Decimal(15)}
    assert ov.investment.signed["key"].ytd == Decimal(1) and ov.investment.started["key"].ytd == Decimal(2)
    assert ov.pipeline.stage_total("lead") == 2 and ov.pipeline.stage_total("signed") == 3
    assert ov.pipeline.stage_total("started") == 3
    assert [(lag.project.code, lag.stage, lag.days_late) for lag, _issue in ov.lags] == [
        ("XM-2025-0008", "signed", 63), ("XM-2025-0002", "started", 62)]


def test_lag_of_takes_the_earliest_overdue_stage() -> None:
    project = Project(code="X", stage="lead", planned_sign=date(2025, 3, 1), planned_start=date(2025, 5, 1))
    lag = dashboard.lag_of(project, date(2025, 9, 1))
    assert lag is not None and (lag.stage, lag.days_late) == ("signed", 184)
    assert [s for s, _d in lag.overdue] == ["signed", "started"]
    assert dashboard.lag_of(project, date(2025, 3, 1)) is None  # due today is not late yet
    project.stage = "started"
    assert dashboard.lag_of(project, date(2025, 9, 1)) is None


def test_flag_slow_projects_is_idempotent_per_project_and_lag(data: Session) -> None:
    first = slow_projects.flag_slow_projects(data, clock.now(), SYSTEM)
    data.commit()
    assert [(f.project_code, f.stage, f.created) for f in first] == [("XM-2025-0002", "started", True),
                                                                       ("XM-2025-0008", "signed", True)]
    issue = data.get(LedgerIssue, first[0].issue_id)
    assert issue is not None and issue.source == "project" and issue.status == "registered"
    assert issue.project_id == data.scalar(select(Project.id).where(Project.code == "XM-2025-0002"))
    assert data.scalar(select(OrgUnit.code).where(OrgUnit.id == issue.unit_id)) == "fgj"  # the responsible unit
    assert "未按计划开工" in issue.title and issue.due_at is not None
    instance = data.get(ProcessInstance, issue.instance_id)
    assert instance is not None and instance.business_key == "project_lag:XM-2025-0002:started"
    assert data.scalars(select(HumanTask.bpmn_id).where(HumanTask.instance_id == instance.id,
                                                        HumanTask.state == "ready")).all() == ["dispatch"]
    again = slow_projects.flag_slow_projects(data, clock.now() + timedelta(days=1), SYSTEM)
    data.commit()
    assert [(f.created, f.issue_id) for f in again] == [(False, first[0].issue_id), (False, first[1].issue_id)]
    issue.status = "closed"  # 销号 while the project is still behind: the next run raises a new one
    data.commit()
    third = slow_projects.flag_slow_projects(data, clock.now(), SYSTEM)
    data.commit()
    assert [(f.project_code, f.created) for f in third] == [("XM-2025-0002", True), ("XM-2025-0008", False)]
    assert third[0].issue_id != first[0].issue_id
    project = data.scalar(select(Project).where(Project.code == "XM-2025-0008"))
    assert project is not None
    project.stage = "signed"  # signed at last: the sign lag is over, and no start date is planned
    data.commit()
    assert [f.project_code for f in slow_projects.flag_slow_projects(data, clock.now(), SYSTEM)] == ["XM-2025-0002"]


def test_scope_town_department_and_leader(data: Session) -> None:
    org.add_user(data, username="lgz_staff", display_name="李哥庄镇干部", unit_codes=["lgz"])
    data.commit()
    town = dashboard.scope_of(data, actor_for(data, "lgz_staff"))
    assert not town.everything
    assert [p.code for p in dashboard.visible_projects(data, town)] == ["XM-2025-0001"]
    assert dashboard.indicator_rows(data, "2025-08", town) == []
    ov = dashboard.overview(data, period="2025-08", scope=town, now=clock.now())
    assert ov.investment.own["signed"][""] == 1 and ov.investment.own["started"]["focus"] == 1
    assert ov.lags == [] and not ov.investment.signed
    gxj = dashboard.scope_of(data, actor_for(data, "zhoujianhua"))  # head of 工业和信息化局
    codes = {r.code for r in dashboard.indicator_rows(data, "2025-08", gxj)}
    assert "scale_smart_appliances" in codes and "gdp_growth" not in codes
    assert dashboard.scope_of(data, actor_for(data, "wangjianguo")).everything  # city leader
    assert dashboard.scope_of(data, actor_for(data, "qianlihua")).everything  # auditor
    with pytest.raises(NotFound):  # out of scope: as if it did not exist
        dashboard.indicator_detail(data, code="gdp_growth", period="2025-08", scope=town)
    with pytest.raises(NotFound):
        dashboard.project_detail(data, code="XM-2025-0002", scope=town, now=clock.now())
    with pytest.raises(NotFound):
        unitview.unit_view(data, code="gxj", scope=town, now=clock.now())
    with pytest.raises(NotFound):
        dashboard.indicator_detail(data, code="nope", period="2025-08", scope=ALL)


def test_a_leader_sees_their_area_on_the_dashboard_not_only_their_own_unit(data: Session) -> None:
    """docs/security.md: a unit's head or responsible leader sees the dashboard scoped to their area — the units they
    head or are responsible for, with sub-units (engine.org.area, as 督办 has it). The scope took their memberships
    only: a 分管 leader who is no member of the units they answer for, or a head whose unit has sub-units, saw none
    of those units' indicators, projects or unit pages (404)."""
    org.add_unit(data, code="gxj_park", name="智能家电产业园", kind="zone", parent_code="gxj")
    deputy = org.add_user(data, username="fenguan", display_name="分管副市长", role_codes=["leader"])
    gxj = data.scalar(select(OrgUnit).where(OrgUnit.code == "gxj"))
    assert gxj is not None
    gxj.responsible_leader_id = deputy.id
    data.commit()
    scope = dashboard.scope_of(data, actor_for(data, "fenguan"))
    assert "scale_smart_appliances" in {r.code for r in dashboard.indicator_rows(data, "2025-08", scope)}
    assert unitview.unit_view(data, code="gxj", scope=scope, now=clock.now()).figures.unit.code == "gxj"
    head = dashboard.scope_of(data, actor_for(data, "zhoujianhua"))  # head of 工业和信息化局: its park too
    assert unitview.unit_view(data, code="gxj_park", scope=head, now=clock.now()).figures.unit.code == "gxj_park"
    town = dashboard.scope_of(data, actor_for(data, "fenguan"))
    with pytest.raises(NotFound):  # and nothing beyond the area
        unitview.unit_view(data, code="lgz", scope=town, now=clock.now())


def test_drill_down_feeds(data: Session) -> None:
    counted = dashboard.indicator_detail(data, code="projects_signed_focus", period="2025-08", scope=ALL)
    assert [(f.project.code if f.project else None, f.on) for f in counted.feeds] == [
        ("XM-2025-0001", date(2025, 2, 10)), ("XM-2025-0002", date(2025, 3, 15)), ("XM-2025-0004", date(2025, 6, 1)),
        ("XM-2025-0005", date(2025, 8, 20))]
    recorded = dashboard.indicator_detail(data, code="gdp_growth", period="2025-08", scope=ALL)
    assert [(f.period, f.value, f.source) for f in recorded.feeds] == [("2025-06", Decimal("5.4"), "统计局"),
                                                                       ("2025-03", Decimal("5.1"), "统计局")]
    assert recorded.gap is not None and recorded.chart.target == 5.6
    green = dashboard.indicator_detail(data, code="industrial_enterprises", period="2025-08", scope=ALL)
    assert green.gap is None


def test_unit_view_counts(data: Session) -> None:
    slow_projects.flag_slow_projects(data, clock.now(), SYSTEM)
    data.commit()
    issue = data.scalar(select(LedgerIssue).join(OrgUnit, OrgUnit.id == LedgerIssue.unit_id)
                        .where(OrgUnit.code == "gxj"))
    assert issue is not None
    issue.status, issue.closed_at = "closed", clock.now()
    data.commit()
    view = unitview.unit_view(data, code="gxj", scope=ALL, now=clock.now())
    assert view.figures.issues_total == 1 and view.figures.issues_closed == 1
    assert view.figures.close_rate == Decimal("100.0") and view.figures.on_time_rate == Decimal("100.0")
    assert {p.code for p, _lag in view.projects} == {"XM-2025-0001", "XM-2025-0003", "XM-2025-0004", "XM-2025-0006",
                                                     "XM-2024-0007", "XM-2025-0008"}
    fgj = unitview.unit_view(data, code="fgj", scope=ALL, now=clock.now() + timedelta(days=30))
    assert fgj.figures.issues_open == 1 and fgj.figures.issues_overdue == 1  # due in 10 working days
    assert fgj.figures.close_rate == Decimal("0.0")
    everyone = unitview.figures(data, scope=ALL, now=clock.now())
    assert len(everyone) == 32


def test_charts_render_svg_with_chinese_and_png(data: Session) -> None:
    ov = dashboard.overview(data, period="2025-08", scope=ALL, now=clock.now())
    for name in dashboard.CHARTS:
        chart = dashboard.named_chart(ov, name)
        svg = charts.render_svg(chart)
        assert svg.startswith("<svg") and chart.title in svg and "Noto Sans CJK SC" in svg
    industries = dashboard.named_chart(ov, "industries")
    assert industries.categories[0] == "智能家电" and industries.series[0].values[0] == 64.0
    assert industries.series[1].values[0] == 96.0  # 480 ÷ 500
    trend = dashboard.indicator_detail(data, code="scale_smart_appliances", period="2025-08", scope=ALL).chart
    assert trend.series[0].values[6:9] == (270.0, 320.0, None)
    assert trend.series[1].values[7] == 320.0 and trend.series[1].values[11] == 480.0
    png = charts.render_png(trend)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(NotFound):
        dashboard.named_chart(ov, "nope")


def test_nice_ticks() -> None:
    assert charts.nice_ticks(0, 480) == [0, 100, 200, 300, 400, 500]
    assert charts.nice_ticks(-3, 7) == [-4, -2, 0, 2, 4, 6, 8]
    assert charts.nice_ticks(0, 0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_default_period(data: Session) -> None:
    assert dashboard.default_period(data, clock.now()) == "2025-08"
    assert dashboard.default_period(data, dashboard_data.NOW.replace(year=2027)) == "2025-08"


def test_a_unit_s_close_out_rate_counts_this_year_s_issues_only_never_past_100(data: Session) -> None:
    """销号率 is shown as closed/registered this year: an issue from last year closed this year counted as closed but
    not as registered, so a unit that cleared its old issues read 200.0% (2/1)."""
    slow_projects.flag_slow_projects(data, clock.now(), SYSTEM)
    data.commit()
    issue = data.scalar(select(LedgerIssue).join(OrgUnit, OrgUnit.id == LedgerIssue.unit_id)
                        .where(OrgUnit.code == "gxj"))
    assert issue is not None
    old = LedgerIssue(code="WT-2024-9901", title="去年的问题", unit_id=issue.unit_id, status="closed",
                      created_at=clock.now().replace(year=2024), closed_at=clock.now(), due_at=clock.now())
    data.add(old)
    issue.status, issue.closed_at = "closed", clock.now()
    data.commit()
    figures = unitview.unit_view(data, code="gxj", scope=ALL, now=clock.now()).figures
    assert (figures.issues_closed, figures.issues_total) == (1, 1)
    assert figures.close_rate == Decimal("100.0")
