"""项目落地 in the browser: a 投促局 officer enters a project, records 签约 and plans it backward (倒排工期),
reports 竣工 which a second officer confirms; the project page's stage line and the 挂图作战 chart show it.
Screenshots are kept (see conftest: $JZFLOW_E2E_ARTIFACTS)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.conftest import NOW, LiveServer, log_in

TODAY = NOW.date().isoformat()


def _watch(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 500 else None)
    return errors


def test_a_project_page_and_the_schedule_chart(live_server: LiveServer, browser: Any, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page = context.new_page()
    errors = _watch(page)
    log_in(page, live_server, "tangjian")  # 投促局 investment officer
    page.goto(f"{live_server.url}/projects/new")
    page.fill("input[name=name]", "浏览器录入的智能制造项目")
    page.fill("input[name=enterprise]", "青岛某智能制造有限公司")
    page.fill("input[name=investment]", "26000")
    page.select_option("select[name=unit_code]", "tcj")
    page.check("input[name=libraries][value=key]")
    page.check("input[name=libraries][value=investment]")
    page.select_option("select[name=category]", "focus")
    page.select_option("select[name=leader]", "wangjianguo")
    page.click("#new-project button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "/projects/" in page.url and "浏览器录入的智能制造项目" in page.locator("h1").inner_text()
    project_url = page.url.split("#")[0]
    page.click("#stage-form summary")
    page.select_option("#stage-form select[name=stage]", "signed")
    page.fill("#stage-form input[name=on]", TODAY)
    page.fill("#stage-form input[name=evidence]", "投资合同 TZ-2025-088")
    page.click("#stage-form button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.click("#plan-form summary")
    page.fill("#backward-form input[name=planned_complete]", "2026-10-30")
    page.fill("#backward-form input[name=construction_wd]", "220")
    page.click("#backward-form button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert page.locator("#timeline li[data-stage=signed].reached").count() == 1
    assert page.locator("tr[data-stage=started] td").first.inner_text() != ""  # planned 开工 by 倒排工期
    page.click("#stage-form summary")
    page.select_option("#stage-form select[name=stage]", "started")
    page.fill("#stage-form input[name=on]", TODAY)
    page.fill("#stage-form input[name=evidence]", "施工许可证 370281202509010101")
    page.click("#stage-form button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.click("#stage-form summary")
    page.select_option("#stage-form select[name=stage]", "completed")
    page.fill("#stage-form input[name=on]", TODAY)
    page.fill("#stage-form input[name=evidence]", "竣工验收备案 JB-01")
    page.click("#stage-form button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert page.locator("#reports tr[data-status=reported]").count() == 1
    assert page.locator("#reports button").count() == 0  # the reporter does not confirm
    page.fill("#needs input[name=description]", "配套电力增容")
    page.click("#needs form:not(.inline) button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert page.locator("#needs tr[data-status=open]").count() == 1
    page.screenshot(path=str(artifacts / "project-page-reported.png"), full_page=True)
    context.close()

    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    second = context.new_page()
    errors += _watch(second)
    log_in(second, live_server, "liming")  # the second officer of 投促局 confirms
    second.goto(project_url)
    second.click("#reports form[action$='/confirm'] button")
    second.wait_for_load_state("networkidle")
    assert second.locator("#timeline li[data-stage=completed].reached").count() == 1
    assert second.locator("#reports tr[data-status=confirmed]").count() == 1
    second.screenshot(path=str(artifacts / "project-page.png"), full_page=True)
    second.goto(f"{live_server.url}/projects/schedule?unit=tcj")
    chart = second.locator("svg#gantt")
    assert chart.count() == 1 and second.locator("#today-line").count() == 1
    row = second.locator("svg#gantt g", has_text="浏览器录入的智能制造项目")
    assert row.count() == 1 and row.locator("[data-mark=completed]").count() == 1
    assert second.locator("svg#gantt rect").count() >= 3
    second.screenshot(path=str(artifacts / "schedule-chart.png"), full_page=True)
    second.emulate_media(media="print")
    second.screenshot(path=str(artifacts / "schedule-chart-print.png"), full_page=True)
    assert second.locator("form.filters").is_hidden()
    context.close()
    assert errors == [], errors
