"""Office review defects that only a browser shows (issue #14 item 8): the instance diagram's size and legend,
and the dashboard chart's unit running into its legend. Screenshots: instance-diagram.png, dashboard-charts.png."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.conftest import LiveServer, log_in

OVERLAPS = """(chart) => {
  const texts = [...chart.querySelectorAll('svg text')].map((t) => ({text: t.textContent, box: t.getBoundingClientRect()}))
    .filter((t) => t.text.trim() && t.box.width > 0);
  const top = chart.getBoundingClientRect().top;
  const head = texts.filter((t) => t.box.top - top < 110);  // title, subtitle, legend, axis name: above the plot
  const clash = [];
  for (let i = 0; i < head.length; i++) for (let j = i + 1; j < head.length; j++) {
    const a = head[i].box, b = head[j].box;
    if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1)
      clash.push([head[i].text, head[j].text]);
  }
  return clash;
}"""


def test_dashboard_charts_keep_their_unit_clear_of_the_legend(live_server: LiveServer, page: Any,
                                                              artifacts: Path) -> None:
    log_in(page, live_server, "wangjianguo")
    page.goto(f"{live_server.url}/dashboard")
    page.wait_for_selector("#investment .chart svg", timeout=15000)
    page.wait_for_timeout(500)  # ECharts' first animation frame
    page.screenshot(path=str(artifacts / "dashboard-charts.png"), full_page=True)
    charts = page.locator(".chart[data-chart]")
    assert charts.count() >= 3
    for n in range(charts.count()):
        assert charts.nth(n).evaluate(OVERLAPS) == [], n
    assert "单位：" in page.locator("#investment .chart").inner_text()


def test_the_instance_diagram_fills_its_box_and_its_legend_names_every_colour(live_server: LiveServer, page: Any,
                                                                           artifacts: Path) -> None:
    log_in(page, live_server, "admin")
    page.goto(f"{live_server.url}/instances")
    page.locator("table a[href^='/instances/']").first.click()
    page.wait_for_selector(".diagram .djs-container svg", timeout=15000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "instance-diagram.png"), full_page=True)
    box = page.locator(".diagram").bounding_box()
    svg = page.locator(".diagram .djs-container svg").first.bounding_box()
    assert box is not None and svg is not None
    assert svg["height"] >= box["height"] - 4, (svg, box)  # the drawing uses the whole box, not 150 px of it
    shapes = page.locator(".diagram .djs-element.djs-shape")
    for n in range(shapes.count()):
        shape = shapes.nth(n).bounding_box()
        if shape is None or shape["width"] == 0:
            continue
        assert shape["y"] + shape["height"] <= svg["y"] + svg["height"] + 2, n  # no lane clipped at the bottom
    used = page.locator(".diagram").evaluate("""(d) => [...new Set([...d.querySelectorAll('.djs-element')]
        .flatMap((e) => [...e.classList]).filter((c) => c.startsWith('jz-')).map((c) => c.replace(/-\\d+$/, '')))]""")
    legend = page.locator(".legend .swatch").evaluate_all("els => els.map(e => e.className)")
    names = {"jz-current": "current", "jz-completed": "completed", "jz-cancelled": "cancelled", "jz-heat": "heat"}
    assert used, "the diagram marks no step"
    for marker in used:
        assert any(names[marker] in c for c in legend), (marker, legend)


def test_save_filter_and_clear_appear_as_soon_as_the_list_is_filtered(live_server: LiveServer, page: Any,
                                                                      artifacts: Path) -> None:
    log_in(page, live_server, "wangjianguo")
    page.goto(f"{live_server.url}/inbox")
    assert page.locator("#filter-clear a").count() == 0 and page.locator(".save-filter").count() == 0
    options = page.locator("select[name=process] option").evaluate_all("els => els.map(e => e.value).filter(Boolean)")
    assert options
    with page.expect_response(lambda r: "/inbox?" in r.url):
        page.select_option("select[name=process]", options[0])  # htmx filters the list in place: no reload
    page.wait_for_selector("#filter-clear a", timeout=5000)
    assert "process=" in page.url
    assert page.locator(".save-filter button").is_visible()
    page.screenshot(path=str(artifacts / "inbox-filtered.png"), full_page=False)
    page.fill(".save-filter input[name=name]", "我的筛选")
    page.click(".save-filter button")
    page.wait_for_load_state("networkidle")
    assert "我的筛选" in page.locator("#saved-filters").inner_text()
    page.click("#filter-clear a")
    page.wait_for_load_state("networkidle")
    assert page.locator(".save-filter").count() == 0


PANEL_ENGLISH = ("General", "Name", "Documentation", "Element documentation", "Process documentation", "Executable",
                 "Select an element")


def test_the_modeller_speaks_chinese_in_zh(live_server: LiveServer, page: Any, artifacts: Path) -> None:
    log_in(page, live_server, "admin")
    page.goto(f"{live_server.url}/modeller")
    page.click("a[href='/modeller/processes/parallel_approval']")
    page.click("text=在建模器中打开最新版本")
    page.wait_for_selector("[data-jz-modeller][data-ready='1']", timeout=30000)
    page.wait_for_selector(".bio-properties-panel-group-header", timeout=15000)
    page.evaluate("""() => { const m = window.jzModeller.modeler;
        m.get('selection').select(m.get('elementRegistry').get('department_review')); }""")
    page.wait_for_selector(".bio-properties-panel-header-type", timeout=5000)
    page.wait_for_timeout(200)
    panel = page.locator(".bio-properties-panel-container, .bio-properties-panel").first.inner_text()
    page.screenshot(path=str(artifacts / "modeller-zh.png"), full_page=False)
    assert "常规" in panel and "名称" in panel and "用户任务" in panel, panel[:400]
    for words in PANEL_ENGLISH:
        assert words not in panel, (words, panel[:600])
    titles = page.locator(".djs-palette .entry").evaluate_all("els => els.map(e => e.getAttribute('title') || '')")
    assert titles and all(not any(c.isascii() and c.isalpha() for c in t) for t in titles if t), titles
