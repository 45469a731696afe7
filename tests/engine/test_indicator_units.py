"""指标数据录入 by unit: a data officer enters and replaces the figures of the indicators their own unit is responsible
for (Indicator.responsible_unit), never another unit's; an administrator enters all of them."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import org
from engine.audit.models import AuditEvent
from engine.org.actors import Actor, actor_for
from engine.org.models import OrgUnit
from plan import indicators
from plan.indicators.models import Indicator, IndicatorValue
from plan.indicators.preview import enterable, reach
from tests import dashboard_data
from tests.engine.test_supervision_races import Race, race  # noqa: F401  (its fixture: works at once)

PERIOD = "2025-08"


@pytest.fixture
def data(session: Session, frozen: Any) -> Session:
    dashboard_data.seed_and_deploy(session)
    dashboard_data.sample(session)
    return session


@pytest.fixture
def fgj(data: Session) -> Actor:
    return actor_for(data, "pengtao")  # 发改局 数据监测 (data_officer): tertiary_share, scale_new_energy … are fgj's


def figures(session: Session, period: str = PERIOD) -> dict[str, Decimal]:
    return {code: Decimal(value) for code, value in session.execute(
        select(Indicator.code, IndicatorValue.value).join(Indicator).where(IndicatorValue.period == period))}


def unit_of(session: Session, code: str) -> str:
    found = session.scalar(select(OrgUnit.code).join(Indicator, Indicator.responsible_unit_id == OrgUnit.id)
                           .where(Indicator.code == code))
    assert found is not None, code
    return found


def test_the_seed_gives_every_indicator_a_responsible_unit(data: Session) -> None:
    assert data.scalar(select(func.count()).select_from(Indicator).where(Indicator.responsible_unit_id.is_(None))) == 0
    assert (unit_of(data, "gdp_growth"), unit_of(data, "tertiary_share"), unit_of(data, "scale_smart_appliances")) == (
        "tjj", "fgj", "gxj")


def test_an_officer_sees_and_replaces_only_their_units_figures(data: Session, fgj: Actor) -> None:
    before = figures(data)
    assert {"tertiary_share", "scale_new_energy", "scale_smart_appliances"} <= set(before)
    rows = indicators.current_figures(data, PERIOD, actor=fgj)
    assert rows and {unit_of(data, i.code) for i, _v in rows} == {"fgj"}
    template = indicators.template_csv(data, PERIOD, actor=fgj).decode("utf-8-sig")
    assert "tertiary_share" in template and "gdp_growth" not in template and "scale_smart_appliances" not in template
    # The form of their unit: one figure changed, one cleared. Another unit's figures are not theirs to remove.
    values = {i.code: ("53" if i.code == "tertiary_share" else "", "统计局") for i, _v in rows}
    result = indicators.save_form(data, period=PERIOD, values=values, actor=fgj,
                                  seen=indicators.period_version(data, PERIOD, actor=fgj))
    data.commit()
    after = figures(data)
    assert after["tertiary_share"] == Decimal(53) and "scale_new_energy" not in after
    assert after["scale_smart_appliances"] == before["scale_smart_appliances"]  # gxj's: kept
    assert (result.changed, result.removed) == (1, 1)
    [event] = data.scalars(select(AuditEvent).where(AuditEvent.action == "indicator.period.replace"))
    assert event.after is not None and event.after["units"] == ["fgj"]


def test_a_file_holding_another_units_rows_is_refused_naming_them_and_stores_nothing(data: Session,
                                                                                       fgj: Actor) -> None:
    before, events = figures(data), data.scalar(select(func.count(AuditEvent.id)))
    content = ("指标代码,数值,单位\n"
               "tertiary_share,55,%\n"
               "gdp_growth,5.9,%\n"
               "scale_smart_appliances,410,亿元\n").encode()
    preview = indicators.preview_upload(data, period=PERIOD, filename="八月.csv", data=content, actor=fgj)
    assert not preview.ok and [(e.line, e.column) for e in preview.errors] == [(3, "code"), (4, "code")]
    assert "gdp_growth" in preview.errors[0].message and "统计局" in preview.errors[0].message
    with pytest.raises(indicators.UploadInvalid) as refused:
        indicators.apply_upload(data, period=PERIOD, filename="八月.csv", data=content, actor=fgj,
                                seen=indicators.period_version(data, PERIOD, actor=fgj))
    assert [e["line"] for e in refused.value.details["errors"]] == [3, 4]
    assert "第3行" in refused.value.message and "第4行" in refused.value.message
    data.rollback()
    assert figures(data) == before and data.scalar(select(func.count(AuditEvent.id))) == events


def test_a_form_posted_with_another_units_figure_is_refused_naming_it(data: Session, fgj: Actor) -> None:
    """The page lists only their unit's indicators; a hand-made post naming another's changes nothing."""
    before = figures(data)
    with pytest.raises(indicators.UploadInvalid, match="gdp_growth") as refused:
        indicators.save_form(data, period=PERIOD, values={"tertiary_share": ("55", ""), "gdp_growth": ("9", "")},
                             actor=fgj, seen=indicators.period_version(data, PERIOD, actor=fgj))
    assert [e["column"] for e in refused.value.details["errors"]] == ["code"]
    data.rollback()
    assert figures(data) == before


def test_an_administrator_enters_every_units_figures(data: Session) -> None:
    admin = actor_for(data, "admin")
    content = "指标代码,数值\ntertiary_share,55\ngdp_growth,5.9\nscale_smart_appliances,410\n".encode()
    assert len(indicators.current_figures(data, PERIOD, actor=admin)) == len(indicators.current_figures(data, PERIOD))
    result = indicators.apply_upload(data, period=PERIOD, filename="八月.csv", data=content, actor=admin,
                                     seen=indicators.period_version(data, PERIOD, actor=admin))
    data.commit()
    assert figures(data) == {"tertiary_share": Decimal(55), "gdp_growth": Decimal("5.9"),
                             "scale_smart_appliances": Decimal(410)}  # the whole period replaced, as before
    assert result.added == 1
    [event] = data.scalars(select(AuditEvent).where(AuditEvent.action == "indicator.period.replace"))
    assert event.after is not None and event.after["units"] is None


def test_an_indicator_with_no_responsible_unit_is_entered_by_administrators_only(data: Session, fgj: Actor) -> None:
    orphan = data.scalar(select(Indicator).where(Indicator.code == "tertiary_share"))
    assert orphan is not None
    orphan.responsible_unit_id = None
    data.flush()
    assert "tertiary_share" not in {i.code for i, _v in indicators.current_figures(data, PERIOD, actor=fgj)}
    with pytest.raises(indicators.UploadInvalid, match="责任单位"):
        indicators.save_form(data, period=PERIOD, values={"tertiary_share": ("55", "")}, actor=fgj,
                             seen=indicators.period_version(data, PERIOD, actor=fgj))
    data.rollback()
    orphan = data.scalar(select(Indicator).where(Indicator.code == "tertiary_share"))
    assert orphan is not None
    orphan.responsible_unit_id = None
    data.flush()
    admin = actor_for(data, "admin")
    indicators.save_form(data, period=PERIOD, values={"tertiary_share": ("55", "")}, actor=admin,
                         seen=indicators.period_version(data, PERIOD, actor=admin))
    assert figures(data)["tertiary_share"] == Decimal(55)


def test_two_units_entering_one_period_at_once_keep_each_others_figures(data: Session, race: Race) -> None:  # noqa: F811
    """Each replaces its own unit's part of the period: neither is refused for the other's save, neither removes it."""
    tjj = actor_for(data, "fanwenjuan")  # 统计局 数据监测: gdp_growth, and what 统计局 reports
    org.add_user(data, username="tcj_data", display_name="投促局数据员", unit_codes=["tcj"], role_codes=["data_officer"])
    tcj = actor_for(data, "tcj_data")  # 投资促进局's: investment_partners, from 投资促进局 — no indicator of both
    seen_tjj = indicators.period_version(data, "2025-09", actor=tjj)
    seen_tcj = indicators.period_version(data, "2025-09", actor=tcj)
    data.commit()
    outcomes = race(
        lambda s: indicators.save_form(s, period="2025-09", values={"gdp_growth": ("5.1", "统计局")}, actor=tjj,
                                       seen=seen_tjj),
        lambda s: indicators.save_form(s, period="2025-09", values={"investment_partners": ("52", "")}, actor=tcj,
                                       seen=seen_tcj))
    assert [type(o).__name__ for o in outcomes] == ["NoneType", "NoneType"], outcomes
    data.expire_all()
    assert figures(data, "2025-09") == {"gdp_growth": Decimal("5.1"), "investment_partners": Decimal(52)}


def test_two_units_sharing_an_indicator_take_turns(data: Session, fgj: Actor, race: Race) -> None:  # noqa: F811
    """tertiary_share is 发改局's and comes from 统计局: both enter it, so a save made on a page opened before the
    other's save is refused, not a silent overwrite."""
    tjj = actor_for(data, "fanwenjuan")
    seen_tjj = indicators.period_version(data, "2025-09", actor=tjj)
    seen_fgj = indicators.period_version(data, "2025-09", actor=fgj)
    data.commit()
    outcomes = race(
        lambda s: indicators.save_form(s, period="2025-09", values={"tertiary_share": ("51", "统计局")}, actor=tjj,
                                       seen=seen_tjj),
        lambda s: indicators.save_form(s, period="2025-09", values={"tertiary_share": ("52", "")}, actor=fgj,
                                       seen=seen_fgj))
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "NoneType"], outcomes
    data.expire_all()
    assert figures(data, "2025-09")["tertiary_share"] in (Decimal(51), Decimal(52))


def test_the_unit_an_indicator_names_as_its_source_enters_it_too(data: Session, fgj: Actor) -> None:
    tjj = actor_for(data, "fanwenjuan")  # 统计局 数据监测: the statistics other units are responsible for come from it
    theirs = {i.code for i, _v in indicators.current_figures(data, PERIOD, actor=tjj)}
    assert {"gdp_growth", "tertiary_share", "rd_intensity"} <= theirs  # its own, and 统计局-sourced ones of fgj, kjj
    assert "investment_partners" not in theirs  # 投资促进局's, from 投资促进局
    fgj_codes = {i.code for i, _v in indicators.current_figures(data, PERIOD, actor=fgj)}
    assert "tertiary_share" in fgj_codes and "rd_intensity" not in fgj_codes  # kjj's, reported by 统计局, not by 发改局
    # The source that counts is the indicator's, as the plan's seed names it, not what a row says it came from.
    with pytest.raises(indicators.UploadInvalid, match="investment_partners"):
        indicators.save_form(data, period=PERIOD, values={"investment_partners": ("9", "统计局")}, actor=tjj,
                             seen=indicators.period_version(data, PERIOD, actor=tjj))
    assert figures(data).get("investment_partners") != Decimal(9)


def test_a_parent_units_officer_enters_only_its_own_indicators_not_its_sub_units(data: Session, fgj: Actor) -> None:
    """A member acts for the units they belong to (as project entry, plan/projects/entry.py); only a leader's area
    (engine.org.area: the units they head or are responsible for) takes in sub-units, to supervise, not to enter."""
    gxj = data.scalar(select(OrgUnit).where(OrgUnit.code == "gxj"))
    parent = data.scalar(select(OrgUnit).where(OrgUnit.code == "fgj"))
    assert gxj is not None and parent is not None
    gxj.parent_id = parent.id  # 工信局 under 发改局, for the test
    data.flush()
    codes = {i.code for i in enterable(data, 2025, reach(data, fgj))}
    assert "tertiary_share" in codes and "scale_smart_appliances" not in codes
    org.add_user(data, username="gx_data", display_name="工信数据员", unit_codes=["gxj"], role_codes=["data_officer"])
    codes = {i.code for i in enterable(data, 2025, reach(data, actor_for(data, "gx_data")))}
    assert "scale_smart_appliances" in codes and "tertiary_share" not in codes  # nor upwards, to the parent's
