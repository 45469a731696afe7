"""A city leader opens 经济运行监测 on the demo data: lights, a chart; drills into a red indicator to the
project or issue that addresses it. Screenshots are kept (see conftest: $JZFLOW_E2E_ARTIFACTS)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.conftest import LiveServer, log_in


def test_city_leader_drills_from_a_red_indicator_to_a_project_or_issue(live_server: LiveServer, page: Any,
                                                                       artifacts: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    log_in(page, live_server, "wangjianguo")  # 市级领导: sees everything
    page.goto(f"{live_server.url}/dashboard")
    assert page.locator("h1").first.inner_text().startswith("经济运行监测")
    assert page.locator("#indicators tr[data-light=red]").count() > 0
    assert page.locator("#indicators tr[data-light=green]").count() > 0
    # ECharts drew the charts in the browser (its SVG renderer), from the data-chart attributes
    page.wait_for_selector("#investment .chart svg", timeout=15000)
    assert page.locator(".chart svg").count() == 3
    assert "聚焦突破" in page.locator("#investment .chart").inner_text()
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    # a red gap with something addressing it (a project or a ledger issue)
    rows = page.locator("#gaps tbody tr")
    target = None
    for n in range(rows.count()):
        row = rows.nth(n)
        if row.locator("[data-light=red]").count() and (
                row.locator("a[href^='/dashboard/projects/']").count() or row.locator("a[href^='/instances/']").count()
                or row.locator("a[href^='/ledger/']").count()):
            target = row
            break
    assert target is not None, "no red indicator with a project or issue addressing it"
    code = target.get_attribute("data-code")
    target.locator(f"a[href^='/dashboard/indicators/{code}']").click()
    page.wait_for_load_state("networkidle")
    assert f"/dashboard/indicators/{code}" in page.url
    assert page.locator("h1 [data-light=red]").count() == 1
    page.wait_for_selector(".chart svg", timeout=15000)  # the indicator's trend chart
    page.screenshot(path=str(artifacts / f"indicator-{code}.png"), full_page=True)
    addressing = page.locator("#addressing")
    project_links = addressing.locator("a[href^='/dashboard/projects/']")
    if project_links.count():
        name = project_links.first.inner_text()
        project_links.first.click()
        page.wait_for_load_state("networkidle")
        assert "/dashboard/projects/" in page.url and name in page.locator("h1").inner_text()
    else:
        addressing.locator("a[href^='/instances/'], a[href^='/ledger/']").first.click()  # a plan item or an issue
        page.wait_for_load_state("networkidle")
        assert "/instances/" in page.url or "/ledger/" in page.url
    page.screenshot(path=str(artifacts / "addressing.png"), full_page=True)
    assert errors == [], errors
