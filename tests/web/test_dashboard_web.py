"""经济运行监测 pages: lights, drill-down, roles, charts as SVG/PNG/JSON, data entry with upload preview."""
from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.audit.models import AuditEvent
from engine.org.actors import SYSTEM
from engine.org.models import User
from plan import indicators
from plan.indicators.models import IndicatorValue
from plan.projects import slow_projects
from tests import dashboard_data
from tests.web.conftest import PASSWORD, PASSWORD_HASH, csrf_of
from web import create_app

Login = Callable[[str], FlaskClient]


@pytest.fixture
def dash_app(db_url: str, session: Session, frozen: Any) -> Iterator[Flask]:
    dashboard_data.seed_and_deploy(session)
    dashboard_data.sample(session)
    slow_projects.flag_slow_projects(session, clock.now(), SYSTEM)
    for user in session.scalars(select(User)):
        user.password_hash = PASSWORD_HASH
    session.commit()
    session.close()
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "WTF_CSRF_ENABLED": True, "SECRET_KEY": "test-secret",
                      "RATELIMIT_ENABLED": False})
    yield app
    app.extensions["jzflow.engine"].dispose()


@pytest.fixture
def login(dash_app: Flask) -> Login:
    def log_in(username: str) -> FlaskClient:
        client = dash_app.test_client()
        token = csrf_of(client)
        response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
        assert response.status_code == 302, response.get_data(as_text=True)
        return client
    return log_in


def light_of(html: str, code: str) -> str:
    match = re.search(rf'<tr data-code="{code}" data-light="(\w+)">', html)
    assert match is not None, code
    return match.group(1)


def test_city_leader_sees_every_light_chart_and_gap(login: Login) -> None:
    leader = login("wangjianguo")
    page = leader.get("/dashboard")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "2025-08" in html
    assert light_of(html, "gdp_growth") == "yellow" and light_of(html, "tertiary_share") == "red"
    assert light_of(html, "industrial_enterprises") == "green" and light_of(html, "rd_intensity") == "none"
    assert 'data-count="red"' in html and "dist/dashboard.js" in html
    charts = re.findall(r"data-chart='([^']*)'", html)
    assert len(charts) == 3
    investment = json.loads(charts[0].replace("&#34;", '"'))
    assert investment["categories"] == ["聚焦突破", "重点实施", "加快布局", "合计"]
    assert investment["series"][0]["values"] == [4, 1, 0, 5] and investment["series"][1]["values"] == [60, 120, 20, 200]
    gaps = html.split('id="gaps"')[1].split("</section>")[0]
    assert "/dashboard/projects/XM-2025-0002" in gaps and "智能家电产业链补链强链" in gaps
    assert "XM-2025-0008" in html.split('id="slow"')[1] and "63" in html.split('id="slow"')[1]
    assert "<script>" not in html  # CSP: no inline script; data travels in data-* attributes
    assert html.count('data-industry="') == 22


def test_drill_down_from_headline_to_projects_and_issues(login: Login) -> None:
    leader = login("lizhenhua")
    html = leader.get("/dashboard/indicators/projects_started?period=2025-08").get_data(as_text=True)
    assert "新开工项目" in html and "145" in html and "145.5" not in html  # whole projects, not 145.5
    assert "XM-2025-0006" in html  # counted feed
    addressing = html.split('id="addressing"')[1]
    assert 'data-project="XM-2025-0002"' in addressing and "WT-2025-" in addressing
    project = leader.get("/dashboard/projects/XM-2025-0002")
    text = project.get_data(as_text=True)
    assert project.status_code == 200 and 'data-lag="started"' in text and "62" in text and "WT-2025-" in text
    gdp = leader.get("/dashboard/indicators/gdp_growth").get_data(as_text=True)
    assert "2025-06" in gdp and "统计局" in gdp and "5.4%" in gdp


def test_charts_as_svg_png_and_json(login: Login) -> None:
    leader = login("wangjianguo")
    svg = leader.get("/dashboard/charts/industries.svg?period=2025-08")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    assert "智能家电" in svg.get_data(as_text=True) and "Noto Sans CJK SC" in svg.get_data(as_text=True)
    png = leader.get("/dashboard/indicators/gdp_growth/chart.png")
    assert png.status_code == 200 and png.data[:4] == b"\x89PNG"
    data = leader.get("/dashboard/charts/pipeline.json").get_json()
    assert data["categories"] == ["线索", "签约", "开工", "竣工", "投产"]
    assert leader.get("/dashboard/charts/nope.svg").status_code == 404
    assert leader.get("/dashboard/charts/investment.gif").status_code == 404
    assert leader.get("/dashboard?period=2025-13").status_code == 422


def test_a_town_sees_its_own(login: Login, dash_app: Flask) -> None:
    town = login("zoujianjun")  # head of 李哥庄镇
    html = town.get("/dashboard").get_data(as_text=True)
    assert "仅显示本单位范围的数据" in html and 'data-code="gdp_growth"' not in html
    assert "本单位项目" in html
    assert town.get("/dashboard/projects/XM-2025-0001").status_code == 200  # located in 李哥庄镇
    assert town.get("/dashboard/units/lgz").status_code == 200
    # Out of its scope answers as a code that does not exist: codes are not told by a 403 that one exists.
    for seen, absent, said in (("/dashboard/projects/XM-2025-0002", "/dashboard/projects/XM-2099-9999", "项目不存在"),
                               ("/dashboard/indicators/gdp_growth", "/dashboard/indicators/no_such", "指标不存在"),
                               ("/dashboard/indicators/gdp_growth/chart.json", "/dashboard/indicators/no_such/chart.json",
                                "指标不存在"),
                               ("/dashboard/units/gxj", "/dashboard/units/nosuch", "单位不存在")):
        refused, missing = town.get(seen), town.get(absent)
        assert (refused.status_code, missing.status_code) == (404, 404), seen
        assert said in refused.get_data(as_text=True) and said in missing.get_data(as_text=True), seen
    units = town.get("/dashboard/units").get_data(as_text=True)
    assert units.count("data-unit=") == 1
    assert town.get("/dashboard/data").status_code == 403


def test_units_view_for_leaders(login: Login) -> None:
    leader = login("wangjianguo")
    units = leader.get("/dashboard/units").get_data(as_text=True)
    assert units.count("data-unit=") == 32
    fgj = leader.get("/dashboard/units/fgj").get_data(as_text=True)
    assert "项目进展缓慢" in fgj and "XM-2025-0002" in fgj
    leader.set_cookie("lang", "en")
    english = leader.get("/dashboard").get_data(as_text=True)
    assert "Gap analysis" in english and "Projected year-end" in english


def test_upload_preview_confirm_and_refusal(login: Login, dash_app: Flask) -> None:
    officer = login("pengtao")  # 发改局 数据监测: tertiary_share and scale_new_energy are 发改局's
    gxj_light = light_of(login("wangjianguo").get("/dashboard?period=2025-08").get_data(as_text=True),
                         "scale_smart_appliances")
    form = officer.get("/dashboard/data?period=2025-08")
    assert form.status_code == 200 and 'name="value:tertiary_share"' in form.get_data(as_text=True)
    token = csrf_of(officer, "/dashboard/data?period=2025-08")
    bad = officer.post("/dashboard/data/upload", data={
        "csrf_token": token, "period": "2025-08",
        "file": (__import__("io").BytesIO("指标代码,数值,单位\ntertiary_share,54,%\nscale_new_energy,3000,万元\n".encode()),
                 "八月.csv")}, content_type="multipart/form-data")
    text = bad.get_data(as_text=True)
    assert bad.status_code == 422 and 'data-line="3"' in text and "亿元" in text and "确认保存" not in text
    good = officer.post("/dashboard/data/upload", data={
        "csrf_token": token, "period": "2025-08",
        "file": (__import__("io").BytesIO("指标代码,数值,单位\ntertiary_share,54,%\n".encode()), "八月.csv")},
        content_type="multipart/form-data")
    page = good.get_data(as_text=True)
    assert good.status_code == 200 and 'data-kind="change"' in page and 'data-kind="remove"' in page
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    with dash_app.app_context():
        session = dash_app.extensions["jzflow.sessionmaker"]()
        assert session.scalar(select(IndicatorValue.value).join(IndicatorValue.indicator).where(
            IndicatorValue.period == "2025-08").where(IndicatorValue.indicator.has(code="tertiary_share"))) == 50
        session.close()
    tampered = officer.post("/dashboard/data/confirm", data={**fields, "sha256": "0" * 64})
    assert tampered.status_code == 422  # refused with a message, nothing stored
    done = officer.post("/dashboard/data/confirm", data=fields)
    assert done.status_code == 302 and done.headers["Location"].startswith("/dashboard?period=2025-08")
    assert "已保存 2025-08" in officer.get("/dashboard?period=2025-08").get_data(as_text=True)
    html = login("wangjianguo").get("/dashboard?period=2025-08").get_data(as_text=True)
    assert light_of(html, "tertiary_share") == "green"
    assert light_of(html, "scale_new_energy") == "none"  # 发改局's August figure not in the file: removed
    assert light_of(html, "scale_smart_appliances") == gxj_light  # 工信局's: not the officer's to remove
    template = officer.get("/dashboard/data/template.xlsx?period=2025-08")
    assert template.status_code == 200 and template.data[:2] == b"PK"


def test_form_entry(login: Login) -> None:
    officer = login("pengtao")  # 发改局 数据监测
    fields = _form_fields(officer.get("/dashboard/data?period=2025-08").get_data(as_text=True))
    token = fields["csrf_token"]
    saved = officer.post("/dashboard/data", data={"csrf_token": token, "period": "2025-08", "seen": fields["seen"],
                                                  "value:tertiary_share": "54", "source:tertiary_share": "统计局快报"})
    assert saved.status_code == 302
    html = login("wangjianguo").get("/dashboard?period=2025-08").get_data(as_text=True)
    assert light_of(html, "tertiary_share") == "green" and light_of(html, "scale_new_energy") == "none"
    bad = officer.post("/dashboard/data", data={"csrf_token": token, "period": "2025-08", "value:tertiary_share": "abc"},
                       headers={"Referer": "http://localhost/dashboard/data?period=2025-08"})
    assert bad.status_code == 302
    assert "不是数字" in officer.get("/dashboard/data?period=2025-08").get_data(as_text=True)


def test_a_count_over_parts_a_range_and_a_restated_target_on_the_indicator_page(login: Login, dash_app: Flask) -> None:
    with Session(dash_app.extensions["jzflow.engine"]) as session:
        for chain, value in (("red", "22"), ("yellow", "20.1"), ("black", "15"), ("white", "19"), ("grain_oil", "30")):
            dashboard_data.record(session, f"agri_chain_{chain}_output_growth", "2025-08", value)
        dashboard_data.record(session, "aerospace_leading_firms", "2025-08", "4")
        session.commit()
    leader = login("wangjianguo")
    whole = leader.get("/dashboard/indicators/agri_chains_on_target?period=2025-08").get_data(as_text=True)
    parts = whole.split('id="parts"')[1].split("</table>")[0]
    assert parts.count("<tr data-code=") == 5 and "“黑”产业链产值增速" in parts and "20%" in parts
    figures = whole.split('id="feeds"')[0]
    assert "3条" in figures and "5条" in figures  # three of the five chains met 20 %
    chain = leader.get("/dashboard/indicators/agri_chain_black_output_growth?period=2025-08").get_data(as_text=True)
    assert 'id="whole"' in chain and "/dashboard/indicators/agri_chains_on_target" in chain
    aerospace = leader.get("/dashboard/indicators/aerospace_leading_firms?period=2025-08").get_data(as_text=True)
    assert "3—5家" in aerospace and "区间目标" in aerospace
    vc = leader.get("/dashboard/indicators/vc_institutions_new?period=2025-08").get_data(as_text=True)
    assert "规划第26行" in vc and "规划第91行" in vc
    overview = leader.get("/dashboard?period=2025-08").get_data(as_text=True)
    assert "重点工程" in overview and 'data-code="new_city_bases"' in overview


@pytest.mark.parametrize("period", ["9999-12", "0000-06", "1900-01"])
def test_a_period_out_of_range_is_refused_naming_it(login: Login, period: str) -> None:
    leader, officer = login("wangjianguo"), login("pengtao")
    for client, path in ((leader, "/dashboard"), (leader, "/dashboard/charts/investment.json"),
                         (leader, "/dashboard/indicators/gdp_growth"), (officer, "/dashboard/data"),
                         (officer, "/dashboard/data/template.csv")):
        response = client.get(f"{path}?period={period}")
        assert response.status_code == 422, (path, response.status_code)
        assert "期间" in response.get_data(as_text=True), path
    token = csrf_of(officer, "/dashboard/data?period=2025-08")
    saved = officer.post("/dashboard/data", data={"csrf_token": token, "period": period, "value:gdp_growth": "5"})
    assert saved.status_code == 422, saved.status_code


@pytest.mark.parametrize("period", ["2025-08\n", "２０２５-08"])
def test_a_period_that_only_looks_like_a_month_is_refused_and_nothing_is_stored(login: Login, dash_app: Flask,
                                                                                period: str) -> None:
    """A period read as August but kept as sent ("2025-08\\n", full-width digits) stored its figures under a period
    of its own beside August's (and its template's Content-Disposition broke on the newline: 500). Refused, 422."""
    officer = login("pengtao")
    for path in ("/dashboard", "/dashboard/data", "/dashboard/data/template.csv"):
        response = officer.get(path, query_string={"period": period})
        assert response.status_code == 422 and "期间" in response.get_data(as_text=True), path
    fields = _form_fields(officer.get("/dashboard/data?period=2025-08").get_data(as_text=True))
    with Session(dash_app.extensions["jzflow.engine"]) as session:
        fields["seen"] = indicators.period_version(session, period)  # the version of the (empty) look-alike period
        before = session.execute(select(IndicatorValue.period, IndicatorValue.value)).all()
    saved = officer.post("/dashboard/data", data={**fields, "period": period, "value:gdp_growth": "5.9"})
    assert saved.status_code == 422, saved.status_code
    with Session(dash_app.extensions["jzflow.engine"]) as session:
        assert session.execute(select(IndicatorValue.period, IndicatorValue.value)).all() == before


def _form_fields(html: str) -> dict[str, str]:
    """The entry form's fields as the browser would post them (its hidden fields and every figure)."""
    form = html.split('id="form"')[1]
    return {**dict(re.findall(r'<input type="hidden" name="([\w:]+)" value="([^"]*)">', form)),
            **dict(re.findall(r'name="((?:value|source):\w+)" value="([^"]*)"', form))}


def test_a_form_opened_before_someone_else_saved_does_not_undo_their_figures(login: Login, dash_app: Flask) -> None:
    """The entry form replaces the whole period (an administrator's; an officer's part of it): posted from a page
    opened before another's save, it would put back every figure they changed, and say nothing. Refused instead
    (409), nothing changed."""
    first, second = login("admin"), login("pengtao")
    stale = _form_fields(first.get("/dashboard/data?period=2025-08").get_data(as_text=True))
    fresh = _form_fields(second.get("/dashboard/data?period=2025-08").get_data(as_text=True))
    assert second.post("/dashboard/data", data={**fresh, "value:tertiary_share": "53"}).status_code == 302
    late = first.post("/dashboard/data", data={**stale, "value:gdp_growth": "5.9"})
    assert late.status_code == 409 and "已被他人修改" in late.get_data(as_text=True)
    page = first.get("/dashboard/data?period=2025-08").get_data(as_text=True)
    assert _form_fields(page)["value:tertiary_share"] == "53"
    again = first.post("/dashboard/data", data={**_form_fields(page), "value:gdp_growth": "5.9"})
    assert again.status_code == 302  # re-opened, it saves
    # an upload previewed before someone else's save is refused at its confirmation the same way
    preview = first.post("/dashboard/data/upload", data={
        "csrf_token": stale["csrf_token"], "period": "2025-08",
        "file": (io.BytesIO("指标代码,数值,单位\ntertiary_share,54,%\n".encode()), "八月.csv")},
        content_type="multipart/form-data").get_data(as_text=True)
    confirm = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', preview))
    page = second.get("/dashboard/data?period=2025-08").get_data(as_text=True)
    assert second.post("/dashboard/data", data={**_form_fields(page), "value:tertiary_share": "52"}).status_code == 302
    assert first.post("/dashboard/data/confirm", data=confirm).status_code == 409
    assert _form_fields(second.get("/dashboard/data?period=2025-08").get_data(as_text=True))[
        "value:tertiary_share"] == "52"


def test_a_form_without_its_version_is_refused_not_stored_blind(login: Login, dash_app: Flask) -> None:
    """`seen` (the version of the period the page showed) is what tells a stale page: a post without it — a page
    from before the field, a script posting the form — would replace the period whatever was stored since. Refused
    (409, naming the field), nothing changed; the form and the upload's confirmation alike."""
    officer = login("pengtao")
    fields = _form_fields(officer.get("/dashboard/data?period=2025-08").get_data(as_text=True))
    assert fields.pop("seen")
    late = officer.post("/dashboard/data", data={**fields, "value:tertiary_share": "51"})
    assert late.status_code == 409 and "seen" in late.get_data(as_text=True)
    assert _form_fields(officer.get("/dashboard/data?period=2025-08").get_data(as_text=True))[
        "value:tertiary_share"].startswith("50")
    preview = officer.post("/dashboard/data/upload", data={
        "csrf_token": fields["csrf_token"], "period": "2025-08",
        "file": (io.BytesIO("指标代码,数值,单位\ntertiary_share,54,%\n".encode()), "八月.csv")},
        content_type="multipart/form-data").get_data(as_text=True)
    confirm = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', preview))
    assert confirm.pop("seen")
    assert officer.post("/dashboard/data/confirm", data=confirm).status_code == 409


def test_the_same_form_posted_twice_saves_once_and_says_so_twice(login: Login) -> None:
    """A double click on 保存: the second copy carries the version the first one changed, but puts back exactly
    what the first stored — no one else's figures are undone, so it is not refused as a stale page."""
    officer = login("pengtao")
    fields = _form_fields(officer.get("/dashboard/data?period=2025-08").get_data(as_text=True))
    posted = {**fields, "value:tertiary_share": "52"}
    assert [officer.post("/dashboard/data", data=posted).status_code for _ in range(2)] == [302, 302]
    assert _form_fields(officer.get("/dashboard/data?period=2025-08").get_data(as_text=True))[
        "value:tertiary_share"].startswith("52")


def test_a_page_sent_twice_by_its_officer_is_already_saved_not_changed_by_someone_else(login: Login,
                                                                                       dash_app: Flask) -> None:
    """The officer saves the entry form, then sends the same page again with another figure (back, edit, 保存): the
    period changed since that page was drawn, but by their own first post. Refused (409) as the `once` key refuses
    a form sent again — 此表单已提交过 — not 已被他人修改, which sent them looking for a colleague; nothing changed.
    The upload's 确认保存 clicked twice stores the file once: the second click is the first's answer again."""
    officer = login("pengtao")
    page = _form_fields(officer.get("/dashboard/data?period=2025-08").get_data(as_text=True))
    assert officer.post("/dashboard/data", data={**page, "value:tertiary_share": "52"}).status_code == 302
    again = officer.post("/dashboard/data", data={**page, "value:tertiary_share": "51"})
    text = again.get_data(as_text=True)
    assert again.status_code == 409 and "此表单已提交过" in text and "已被他人修改" not in text
    assert _form_fields(officer.get("/dashboard/data?period=2025-08").get_data(as_text=True))[
        "value:tertiary_share"].startswith("52")
    preview = officer.post("/dashboard/data/upload", data={
        "csrf_token": page["csrf_token"], "period": "2025-08",
        "file": (io.BytesIO("指标代码,数值,单位\ntertiary_share,54,%\n".encode()), "八月.csv")},
        content_type="multipart/form-data").get_data(as_text=True)
    confirm = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', preview))
    assert confirm.get("once")  # the confirmation carries its key
    answers = [officer.post("/dashboard/data/confirm", data=confirm) for _ in range(2)]
    assert [a.status_code for a in answers] == [302, 302]
    assert answers[0].headers["Location"] == answers[1].headers["Location"]
    with Session(dash_app.extensions["jzflow.engine"]) as session:
        replaced = session.scalars(select(AuditEvent).where(AuditEvent.stream == "indicator_period:2025-08")).all()
    assert [e.after["via"] for e in replaced] == ["form", "upload"]  # the second click stored nothing again
    malformed = officer.post("/dashboard/data", data={**page, "once": "x" * 65})
    assert malformed.status_code == 422 and "once" in malformed.get_data(as_text=True)


def test_a_chart_file_is_not_kept_for_the_next_person_at_the_same_browser(login: Login) -> None:
    """The SVG/PNG of a chart said `private, max-age=60`: a town's officer logging in after a city leader at the same
    counter's browser was served the leader's city-wide chart from its cache (the app's rule is no-store)."""
    leader = login("wangjianguo")
    for path in ("/dashboard/charts/investment.svg?period=2025-08", "/dashboard/charts/pipeline.png",
                 "/dashboard/indicators/gdp_growth/chart.svg", "/dashboard/charts/pipeline.json"):
        response = leader.get(path)
        assert response.status_code == 200, path
        assert response.headers["Cache-Control"] == "no-store", (path, response.headers["Cache-Control"])


def test_an_overview_chart_file_speaks_its_reader_s_language(login: Login) -> None:
    """The overview's charts were in the reader's language on the page, but Chinese in their SVG, PNG and JSON."""
    leader = login("wangjianguo")
    leader.set_cookie("lang", "en")
    data = leader.get("/dashboard/charts/investment.json?period=2025-08").get_json()
    assert data["title"] == "Investment: projects signed and started"
    svg = leader.get("/dashboard/charts/industries.svg?period=2025-08").get_data(as_text=True)
    assert "Progress towards the industries&#x27; scale targets" in svg or \
        "Progress towards the industries' scale targets" in svg
    assert "智能家电" in svg  # the industries' names are data, not translated
    chinese = login("wangjianguo").get("/dashboard/charts/investment.json?period=2025-08").get_json()
    assert chinese["title"] == "招商引资：新签约与新开工"


def test_an_applicant_from_outside_does_not_open_the_dashboard(login: Login) -> None:
    """docs/security.md: an applicant (项目单位, no government unit) may not open the dashboard. It opened for them,
    listing the city's 七步工作法 runs by month and state, the libraries' names and the approval savings."""
    applicant = login("gupeng")
    for path in ("/dashboard", "/dashboard/units", "/dashboard/charts/pipeline.json",
                 "/dashboard/charts/investment.svg"):
        response = applicant.get(path)
        assert response.status_code == 403, (path, response.status_code)
        assert "七步工作法" not in response.get_data(as_text=True)
    assert "/dashboard" not in re.findall(r'<nav.*?</nav>', applicant.get("/inbox").get_data(as_text=True), re.S)[0]
    assert login("zoujianjun").get("/dashboard").status_code == 200  # a town's head: their own scope


def test_an_officer_enters_their_own_units_figures_only(login: Login, dash_app: Flask) -> None:
    """发改局's data officer sees, downloads and uploads 发改局's indicators; a file holding 统计局's and 工信局's rows
    is refused at the preview naming those lines, nothing stored. An administrator's page lists every indicator."""
    officer = login("pengtao")
    page = officer.get("/dashboard/data?period=2025-08").get_data(as_text=True)
    assert 'name="value:tertiary_share"' in page and 'name="value:gdp_growth"' not in page
    assert "只列出本单位负责的指标" in page
    template = officer.get("/dashboard/data/template.csv?period=2025-08").get_data(as_text=True)
    assert "tertiary_share" in template and "gdp_growth" not in template
    everything = login("admin").get("/dashboard/data?period=2025-08").get_data(as_text=True)
    assert 'name="value:gdp_growth"' in everything and "只列出本单位负责的指标" not in everything
    with Session(dash_app.extensions["jzflow.engine"]) as session:
        before = session.execute(select(IndicatorValue.indicator_id, IndicatorValue.value)).all()
    refused = officer.post("/dashboard/data/upload", data={
        "csrf_token": csrf_of(officer, "/dashboard/data?period=2025-08"), "period": "2025-08",
        "file": (io.BytesIO("指标代码,数值\ntertiary_share,54\ngdp_growth,5.9\nscale_smart_appliances,400\n".encode()),
                 "八月.csv")}, content_type="multipart/form-data")
    text = refused.get_data(as_text=True)
    assert refused.status_code == 422 and 'data-line="3"' in text and 'data-line="4"' in text
    assert "统计局" in text and "确认保存" not in text
    posted = officer.post("/dashboard/data", data={**_form_fields(page), "value:gdp_growth": "9"})  # made by hand
    assert posted.status_code == 422 and "gdp_growth" in posted.get_data(as_text=True)
    with Session(dash_app.extensions["jzflow.engine"]) as session:
        assert session.execute(select(IndicatorValue.indicator_id, IndicatorValue.value)).all() == before
