"""指标数据录入: XLSX/CSV upload with row-level errors and a preview; a re-upload replaces the period, audited."""
from __future__ import annotations

import dataclasses
import io
from decimal import Decimal
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.audit.models import AuditEvent
from engine.errors import Forbidden, InvalidInput
from engine.org.actors import Actor, actor_for
from engine.org.models import OrgUnit
from plan import dashboard, indicators
from plan.indicators.models import Indicator, IndicatorValue
from tests import dashboard_data
from tests.engine.test_supervision_races import Race, race  # noqa: F401  (its fixture: works at once)

ALL = dashboard.Scope(True)
BAD_CSV = """指标代码,指标名称,期间,数值,单位,数据来源
gdp_growth,地区生产总值增速,2025-08,5.7,%,统计局
no_such_indicator,,2025-08,1,,
tertiary_share,,2025-08,一百,%,
scale_marine_iot,,2025-08,0.3,亿元,
projects_signed,,2025-08,120,个,
rd_intensity,,2025-08,101,%,
industrial_enterprises,,2025-08,-5,家,
gdp_growth,,2025-08,5.8,%,
scale_new_energy,,2025-07,120,亿元,
,,2025-08,3,,
high_tech_output_growth,规上工业增加值增速,2025-08,8,%,
"""


@pytest.fixture
def data(session: Session, frozen: Any) -> Session:
    dashboard_data.seed_and_deploy(session)
    dashboard_data.sample(session)
    return session


@pytest.fixture
def officer(data: Session) -> Actor:
    """统计局's 数据监测 (data_officer), here of every unit: enters every indicator's figures (a data officer enters
    only their own units' ones: tests/engine/test_indicator_units.py)."""
    return dataclasses.replace(actor_for(data, "fanwenjuan"), org_unit_ids=frozenset(data.scalars(select(OrgUnit.id))))


def xlsx(rows: list[list[Any]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def stored(session: Session) -> list[tuple[int, str, Decimal]]:
    return [(v.indicator_id, v.period, Decimal(v.value)) for v in
            session.scalars(select(IndicatorValue).order_by(IndicatorValue.indicator_id, IndicatorValue.period))]


def test_bad_file_is_refused_row_by_row_and_nothing_is_stored(data: Session, officer: Actor) -> None:
    before, events = stored(data), data.scalar(select(func.count(AuditEvent.id)))
    preview = indicators.preview_upload(data, period="2025-08", filename="八月.csv", data=BAD_CSV.encode("utf-8"))
    assert not preview.ok and preview.changes == []
    found = [(e.line, e.column) for e in preview.errors]
    assert found == [(3, "code"), (4, "value"), (5, "unit"), (6, "code"), (7, "value"), (8, "value"), (9, "code"),
                     (10, "period"), (11, "code"), (12, "name")]
    reasons = {e.line: e.message for e in preview.errors}
    assert "no_such_indicator" in reasons[3] and "不是数字" in reasons[4]
    assert "单位应为“万元”" in reasons[5] and "项目库自动统计" in reasons[6]
    assert "0–100" in reasons[7] and "不能为负数" in reasons[8] and "第2行" in reasons[9]
    assert "2025-07" in reasons[10] and "缺少指标代码" in reasons[11] and "名称与代码不符" in reasons[12]
    with pytest.raises(indicators.UploadInvalid) as refused:
        indicators.apply_upload(data, period="2025-08", filename="八月.csv", data=BAD_CSV.encode("utf-8"),
                                actor=officer, seen=indicators.period_version(data, "2025-08"))
    assert [e["line"] for e in refused.value.details["errors"]] == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert "第3行" in refused.value.message
    data.rollback()
    assert stored(data) == before and data.scalar(select(func.count(AuditEvent.id))) == events


@pytest.mark.parametrize("content, message", [
    (b"", "空"), ("名称,说明\nx,y\n".encode(), "数值"), ("指标代码,数值\n".encode(), "没有数据行"),
    ("指标代码,数值\ngdp_growth,\n".encode(), "没有填写任何数值"),
    ("指标代码,数值\ngdp_growth,5\n".encode("gb18030"), None)])
def test_file_level_problems(data: Session, content: bytes, message: str | None) -> None:
    preview = indicators.preview_upload(data, period="2025-08", filename="f.csv", data=content)
    if message is None:
        assert preview.ok  # GB18030 (Excel's Chinese CSV) is read as well
    else:
        assert not preview.ok and message in preview.errors[0].message


def test_unreadable_files_are_refused(data: Session) -> None:
    with pytest.raises(indicators.UploadInvalid, match="xlsx"):
        indicators.preview_upload(data, period="2025-08", filename="f.pdf", data=b"%PDF")
    with pytest.raises(indicators.UploadInvalid, match="XLSX"):
        indicators.preview_upload(data, period="2025-08", filename="f.xlsx", data=b"not a zip")
    with pytest.raises(InvalidInput):
        indicators.preview_upload(data, period="2025-13", filename="f.csv", data=b"code,value\n")


@pytest.mark.parametrize("cell, message", [
    ("x" * 200_000, "第2行"),  # a 备注 pasted from a report: past the csv module's 128 KiB field limit (500 before)
    ("统计\x00局", "NUL")])  # stored as such on SQLite; on PostgreSQL a bare 422 after a preview that said all was well
def test_a_csv_cell_too_long_or_with_a_nul_is_refused_naming_its_line(data: Session, officer: Actor, cell: str,
                                                                       message: str) -> None:
    content = f"指标代码,数值,单位,数据来源\ntertiary_share,54,%,{cell}\n".encode()
    before = stored(data)
    with pytest.raises(indicators.UploadInvalid, match=message) as refused:
        indicators.preview_upload(data, period="2025-08", filename="f.csv", data=content)
    assert refused.value.details["field"] == "file" and "第2行" in refused.value.message
    with pytest.raises(indicators.UploadInvalid):
        indicators.apply_upload(data, period="2025-08", filename="f.csv", data=content, actor=officer,
                                seen=indicators.period_version(data, "2025-08"))
    assert stored(data) == before


def test_good_xlsx_previews_then_updates_the_dashboard(data: Session, officer: Actor) -> None:
    rows = dashboard.indicator_rows(data, "2025-08", ALL)
    assert {r.code: r.light for r in rows}["tertiary_share"] == "red"
    content = xlsx([["指标代码", "数值", "单位", "数据来源"], ["tertiary_share", 54, "%", "统计局快报"],
                    ["scale_smart_appliances", 400.00000001, "亿元", None], ["industrial_enterprises", "1,020", "家", ""],
                    ["gdp_growth", "5.9%", "%", "统计局"]])
    before = stored(data)
    preview = indicators.preview_upload(data, period="2025-08", filename="八月.xlsx", data=content)
    assert preview.ok and stored(data) == before  # a preview stores nothing
    kinds = {c.code: c.kind for c in preview.changes}
    assert kinds == {"tertiary_share": "change", "scale_smart_appliances": "change",
                     "industrial_enterprises": "change", "gdp_growth": "add", "scale_new_energy": "remove"}
    assert {c.code: c.after for c in preview.changes}["scale_smart_appliances"] == Decimal("400.0000")
    result = indicators.apply_upload(data, period="2025-08", filename="八月.xlsx", data=content, actor=officer,
                                     seen=indicators.period_version(data, "2025-08"))
    data.commit()
    assert (result.added, result.changed, result.removed, result.unchanged) == (1, 3, 1, 0)
    now = {r.code: r for r in dashboard.indicator_rows(data, "2025-08", ALL)}
    assert (now["tertiary_share"].ytd, now["tertiary_share"].light, now["tertiary_share"].source) == (
        Decimal(54), "green", "统计局快报")
    assert now["scale_smart_appliances"].a.projected == Decimal(600) and now["scale_smart_appliances"].light == "green"
    assert now["scale_smart_appliances"].source == "统计局"  # blank source: the indicator's own
    assert now["gdp_growth"].a.as_of == "2025-08" and now["gdp_growth"].light == "green"
    assert now["scale_new_energy"].ytd is None  # replaced: the period holds exactly the file's figures
    value = data.scalar(select(IndicatorValue).join(Indicator).where(Indicator.code == "tertiary_share",
                                                                     IndicatorValue.period == "2025-08"))
    assert value is not None and value.recorded_by_id == officer.user_id
    assert clock.as_utc(value.recorded_at) == clock.now()
    summary = data.scalars(select(AuditEvent).where(AuditEvent.stream == "indicator_period:2025-08")).all()
    assert [(e.action, e.actor_name, e.after["via"], e.after["removed"]) for e in summary] == [
        ("indicator.period.replace", "fanwenjuan", "upload", 1)]
    assert summary[0].after["sha256"] == preview.sha256 and summary[0].after["filename"] == "八月.xlsx"
    share = data.scalar(select(Indicator.id).where(Indicator.code == "tertiary_share"))
    events = data.scalars(select(AuditEvent).where(AuditEvent.stream == f"indicator:{share}",
                                                   AuditEvent.action.like("indicator.value.%"))).all()
    assert [(e.action, e.before["value"], e.after["value"]) for e in events] == [
        ("indicator.value.set", "50.0000", "54.0000")]
    # a re-upload of the same period replaces it again
    again = indicators.apply_upload(data, period="2025-08", filename="八月v2.csv", actor=officer,
                                    data="指标代码,数值\ntertiary_share,53.5\n".encode(),
                                    seen=indicators.period_version(data, "2025-08"))
    data.commit()
    assert (again.added, again.changed, again.removed) == (0, 1, 3)
    assert [e.action for e in data.scalars(select(AuditEvent).where(
        AuditEvent.stream == "indicator_period:2025-08"))] == ["indicator.period.replace"] * 2
    assert audit.verify(data).ok


def test_only_data_officers_store(data: Session) -> None:
    staff = actor_for(data, "miaoqing")  # 服务专员
    with pytest.raises(Forbidden):
        indicators.apply_upload(data, period="2025-08", filename="a.csv", data=b"code,value\ngdp_growth,5\n",
                                actor=staff, seen="x")
    with pytest.raises(Forbidden):
        indicators.save_form(data, period="2025-08", values={}, actor=staff, seen="x")
    assert indicators.can_enter(data, actor_for(data, "admin"))


def test_form_replaces_the_period_and_reports_bad_fields(data: Session, officer: Actor) -> None:
    figures = {i.code: (str(v.value) if v else "", v.source if v else i.source)
               for i, v in indicators.current_figures(data, "2025-08")}
    assert figures["tertiary_share"][0].startswith("50")
    figures["tertiary_share"] = ("abc", "统计局")
    with pytest.raises(indicators.UploadInvalid, match="不是数字"):
        indicators.save_form(data, period="2025-08", values=figures, actor=officer,
                             seen=indicators.period_version(data, "2025-08"))
    data.rollback()
    figures["tertiary_share"] = ("53", "统计局")
    figures["scale_new_energy"] = ("", "")
    result = indicators.save_form(data, period="2025-08", values=figures, actor=officer,
                                  seen=indicators.period_version(data, "2025-08"))
    data.commit()
    assert (result.added, result.changed, result.removed) == (0, 1, 1)
    rows = {r.code: r for r in dashboard.indicator_rows(data, "2025-08", ALL)}
    assert rows["tertiary_share"].a.status == "met" and rows["scale_new_energy"].ytd is None


def test_template_round_trip_changes_nothing(data: Session, officer: Actor) -> None:
    for fmt, content in (("xlsx", indicators.template_xlsx(data, "2025-08")),
                         ("csv", indicators.template_csv(data, "2025-08"))):
        preview = indicators.preview_upload(data, period="2025-08", filename=f"t.{fmt}", data=content)
        assert preview.ok, preview.errors
        assert {c.kind for c in preview.changes} == {"same"} and len(preview.entries) == 4


def test_a_source_typed_as_a_formula_is_text_in_the_template(data: Session, officer: Actor) -> None:
    """A figure's 数据来源 is typed by a data officer; whoever opens the fill-in template must not run it (CSV
    injection: a link to another site, or a command through DDE, in a sheet from the city's own system)."""
    from openpyxl import load_workbook
    formula = '=HYPERLINK("http://evil.example/x","统计局")'
    figures = {code: (value, source) for code, value, source in (
        ("tertiary_share", "53", formula), ("gdp_growth", "-0.5", "@SUM(1+1)*cmd|' /C calc'!A0"))}
    indicators.save_form(data, period="2025-08", values=figures, actor=officer,
                             seen=indicators.period_version(data, "2025-08"))
    data.commit()
    lines = indicators.template_csv(data, "2025-08").decode("utf-8-sig").splitlines()
    tertiary = next(line for line in lines if line.startswith("tertiary_share"))
    assert tertiary.endswith(',"\'=HYPERLINK(""http://evil.example/x"",""统计局"")"'), tertiary
    growth = next(line for line in lines if line.startswith("gdp_growth"))
    assert ",-0.5," in growth and growth.endswith(",'@SUM(1+1)*cmd|' /C calc'!A0"), growth  # a number stays one
    sheet = load_workbook(io.BytesIO(indicators.template_xlsx(data, "2025-08"))).active
    assert sheet is not None
    cells = {c.value: c for row in sheet.iter_rows() for c in row if isinstance(c.value, str)}
    assert cells[formula].data_type == "s" and not any(c.data_type == "f" for c in cells.values())


def test_two_officers_saving_one_period_at_once_are_served_one_after_the_other(
        data: Session, officer: Actor, race: Race) -> None:  # noqa: F811
    """Both forms pass their checks together, each showing the same figures: the second waits for the first, then is
    refused (409) for what the first stored — not a collision on the unique key (a 500), nor an overwrite of the
    first's figures with an audit trail that says it changed nothing."""
    other = dataclasses.replace(actor_for(data, "pengtao"), org_unit_ids=officer.org_unit_ids)  # 发改局 数据监测
    seen = indicators.period_version(data, "2025-09")
    data.commit()
    outcomes = race(
        lambda s: indicators.save_form(s, period="2025-09", values={"gdp_growth": ("5.1", "统计局")}, actor=officer,
                                       seen=seen),
        lambda s: indicators.save_form(s, period="2025-09", values={"gdp_growth": ("5.2", "发改局")}, actor=other,
                                       seen=seen))
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "NoneType"], outcomes
    data.expire_all()
    (kept,) = data.scalars(select(IndicatorValue).where(IndicatorValue.period == "2025-09"))
    events = data.scalars(select(AuditEvent).where(AuditEvent.action == "indicator.value.set",
                                                   AuditEvent.stream == f"indicator:{kept.indicator_id}",
                                                   AuditEvent.after["period"].as_string() == "2025-09")).all()
    assert len(events) == 1 and events[0].before is None  # the first stored, the second changed nothing
    assert Decimal(kept.value) == Decimal(events[0].after["value"])


@pytest.mark.parametrize("huge", ["1e30", str(10**30), "-9" * 1 + "9" * 40, "1E+999999"])
def test_a_huge_figure_is_refused_row_by_row_by_the_form_and_the_file(data: Session, officer: Actor, huge: str) -> None:
    with pytest.raises(indicators.UploadInvalid, match="数值过大"):
        indicators.save_form(data, period="2025-08", values={"gdp_growth": (huge, "统计局")}, actor=officer,
                             seen=indicators.period_version(data, "2025-08"))
    preview = indicators.preview_upload(data, period="2025-08", filename="big.csv",
                                        data=f"指标代码,数值\ngdp_growth,{huge}\n".encode())
    assert not preview.ok and [(e.line, e.column) for e in preview.errors] == [(2, "value")], preview.errors


def test_a_control_character_in_a_source_is_refused_naming_it_and_never_breaks_the_template(
        data: Session, officer: Actor) -> None:
    """A 数据来源 holding a control character (pasted from another system: \\x07, \\x1b, a vertical tab) was stored;
    then openpyxl refused the cell and the fill-in template XLSX of that period was a 500 for every data officer."""
    seen = indicators.period_version(data, "2025-08")
    with pytest.raises(indicators.UploadInvalid) as refused:
        indicators.save_form(data, period="2025-08", values={"gdp_growth": ("5.7", "统计局\x07月报")}, actor=officer,
                             seen=seen)
    assert "数据来源" in str(refused.value) and refused.value.details["errors"][0]["column"] == "source"
    upload = "指标代码,数值,数据来源\ngdp_growth,5.7,统计局\x1b[31m\n".encode()
    preview = indicators.preview_upload(data, period="2025-08", filename="f.csv", data=upload)
    assert not preview.ok and [e.column for e in preview.errors] == ["source"]
    assert indicators.period_version(data, "2025-08") == seen  # nothing stored
    # one stored before this check (or by hand) is dropped from the XLSX cell, not a 500
    value = data.scalar(select(IndicatorValue).where(IndicatorValue.period == "2025-08"))
    assert value is not None
    value.source = "统计局\x0b月报"
    data.flush()
    from openpyxl import load_workbook
    sheet = load_workbook(io.BytesIO(indicators.template_xlsx(data, "2025-08"))).active
    assert sheet is not None and "统计局月报" in [c.value for row in sheet.iter_rows() for c in row]


def test_a_count_of_whole_things_is_a_whole_number(data: Session, officer: Actor) -> None:
    """1012.5 家 (a slip of the decimal point, 10125 meant) was stored and shown as the number of enterprises; a count in
    units of one (家, 个, 人, 项, 条, 列) is refused unless whole, one in 万人 keeps its decimals."""
    seen = indicators.period_version(data, "2025-08")
    with pytest.raises(indicators.UploadInvalid) as refused:
        indicators.save_form(data, period="2025-08", values={"industrial_enterprises": ("1012.5", "")}, actor=officer,
                             seen=seen)
    assert refused.value.details["errors"][0]["column"] == "value" and "整数" in str(refused.value)
    assert indicators.period_version(data, "2025-08") == seen
    csv_file = "指标代码,数值\nindustrial_enterprises,1013.0\n".encode()
    preview = indicators.preview_upload(data, period="2025-08", filename="f.csv", data=csv_file)
    assert preview.ok and preview.entries[0].value == Decimal("1013")
    talents = data.scalar(select(Indicator).where(Indicator.code == "talents_new", Indicator.year == 2025))
    assert talents is not None and talents.kind == "count" and talents.unit == "万人"
    kept = indicators.preview_upload(data, period="2025-08", filename="f.csv",
                                     data="指标代码,数值\ntalents_new,0.35\n".encode())
    assert kept.ok and kept.entries[0].value == Decimal("0.35")
