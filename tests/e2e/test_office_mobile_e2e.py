"""Office-ready in the browser, on the demo (live_server): the people picker (pinyin initials find a person),
掌上办 at 390 px (no sideways page scroll on 待办, the task page, 督办 and the dashboard; the menu folds), the
English menu at 1440 px, and axe-core on the four pages with no serious or critical violation.
Screenshots and axe's results are kept in $JZFLOW_E2E_ARTIFACTS (default instance/e2e/)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, LiveServer, log_in

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
LEADER = "sunmingyuan"  # 孙明远, head of 发改局 (责任领导): an inbox with tasks
SUPERVISOR = "admin"    # a 督办 area of every unit: the demo's overdue work fills the page
WINDOW = "maxiaoyan"    # 马晓燕, 一窗受理 of 行政审批服务局, whose colleague is 高文静 (gaowenjing → gwj)


PHONE_OPTIONS = {"viewport": PHONE, "locale": "zh-CN", "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
DESKTOP_OPTIONS = {"viewport": {"width": 1400, "height": 1000}, "locale": "zh-CN"}


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    context = browser.new_context(bypass_csp=True, **PHONE_OPTIONS)
    context.set_default_timeout(20000)
    yield context.new_page()
    context.close()


def first_task_url(page: Any, server: LiveServer) -> str:
    page.goto(f"{server.url}/inbox")
    link = page.locator("table.tasks tbody tr a[href^='/tasks/']").first
    assert link.count() == 1, page.locator("main").inner_text()
    return f"{server.url}{link.get_attribute('href')}"


def four_pages(browser: Any, server: LiveServer, **options: Any) -> Iterator[tuple[str, Any]]:
    """Open 待办 and a task page as a unit head, 督办 and the dashboard as a supervisor of everything; yield each."""
    for user, names in ((LEADER, ("inbox", "task")), (SUPERVISOR, ("supervision", "dashboard"))):
        context = browser.new_context(bypass_csp=True, **options)
        context.set_default_timeout(20000)
        page = context.new_page()
        try:
            log_in(page, server, user)
            for name in names:
                page.goto(first_task_url(page, server) if name == "task" else f"{server.url}/{name}")
                page.wait_for_load_state("networkidle")
                if name == "supervision":
                    assert page.locator("main table tbody tr").count() > 0, "nothing to supervise in the demo"
                yield name, page
        finally:
            context.close()


def scrolls_sideways(page: Any) -> tuple[int, int]:
    return page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")  # type: ignore[no-any-return]


def too_wide(page: Any, width: int) -> list[str]:
    """The innermost elements wider than `width` (what makes a page scroll sideways), for the failure message."""
    return page.evaluate("""(w) => {
        const wide = (e) => e.getBoundingClientRect().right > w + 1;
        return [...document.querySelectorAll('body *')].filter((e) => wide(e) && ![...e.children].some(wide))
          .slice(0, 8).map((e) => `${e.tagName}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`);
    }""", width)  # type: ignore[no-any-return]


def test_the_picker_finds_a_colleague_by_pinyin_initials(live_server: LiveServer, page: Any, artifacts: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, live_server, WINDOW)
    page.goto(f"{live_server.url}/inbox?stage=window_accept")
    page.locator("table.tasks tbody tr a[href^='/tasks/']").first.click()
    page.wait_for_load_state("networkidle")
    page.locator("details", has_text="转办").first.locator("summary").click()
    form = page.locator("form[action$='/transfer']")
    options = form.locator("select[name=to_username] option")
    offered = set(options.evaluate_all("os => os.map(o => o.value)"))
    assert "gaowenjing" in offered and "gupeng" not in offered and "wangjianguo" in offered  # scope, not directory
    search = form.locator("input.jz-picker-search")
    search.fill("gwj")
    choice = form.locator(".jz-picker-results [role=option]", has_text="高文静")
    choice.wait_for()
    assert "行政审批服务局" in choice.inner_text()
    page.screenshot(path=str(artifacts / "picker-pinyin.png"), full_page=False)
    search.press("Enter")
    assert form.locator("select[name=to_username]").input_value() == "gaowenjing"
    assert form.locator(".jz-picker-chosen").inner_text() == "已选择：高文静（行政审批服务局）"
    search.fill("nobody-zzz")
    form.locator(".jz-picker-results li.none").wait_for()
    assert errors == [], errors


def test_four_pages_fit_a_phone_and_the_menu_folds(live_server: LiveServer, browser: Any, phone: Any,
                                                   artifacts: Path) -> None:
    seen = []
    for name, page in four_pages(browser, live_server, **PHONE_OPTIONS):
        width, inner = scrolls_sideways(page)
        assert inner == PHONE["width"] and width <= inner, \
            f"{name}: the page scrolls sideways ({width}px, window {inner}px): {too_wide(page, PHONE['width'])}"
        page.screenshot(path=str(artifacts / f"phone-{name}.png"), full_page=True)
        seen.append(name)
    assert seen == ["inbox", "task", "supervision", "dashboard"]
    log_in(phone, live_server, LEADER)
    phone.goto(f"{live_server.url}/inbox")
    nav, toggle = phone.locator("#mainnav"), phone.locator(".menu-toggle")
    assert toggle.is_visible() and not nav.is_visible()
    toggle.click()
    assert nav.is_visible() and toggle.get_attribute("aria-expanded") == "true"
    heights = nav.locator("a").evaluate_all("links => links.map(a => a.getBoundingClientRect().height)")
    assert max(heights) < 60, heights  # one line per item, never a character per line
    assert scrolls_sideways(phone)[0] <= PHONE["width"]
    phone.screenshot(path=str(artifacts / "phone-menu-open.png"))


def test_the_english_menu_fits_on_one_line_at_1440(live_server: LiveServer, browser: Any, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en")
    page = context.new_page()
    try:
        log_in(page, live_server, "admin")  # the longest menu
        page.goto(f"{live_server.url}/lang/en")
        page.goto(f"{live_server.url}/inbox")
        tops = page.locator("#mainnav a").evaluate_all("links => links.map(a => Math.round(a.getBoundingClientRect().top))")
        assert len(tops) > 3 and len(set(tops)) == 1, f"the menu wraps: {tops}"
        assert scrolls_sideways(page)[0] <= 1440
        page.screenshot(path=str(artifacts / "menu-en-1440.png"))
    finally:
        context.close()


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_axe_finds_no_serious_or_critical_violation(live_server: LiveServer, browser: Any, artifacts: Path,
                                                    viewport: str) -> None:
    assert AXE.is_file(), f"axe-core is missing ({AXE}): run `npm ci` (it is a devDependency)"
    found: dict[str, list[dict[str, Any]]] = {}
    options = DESKTOP_OPTIONS if viewport == "desktop" else PHONE_OPTIONS
    for name, page in four_pages(browser, live_server, **options):
        page.add_script_tag(path=str(AXE))  # the context bypasses the CSP for this one injected script
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        assert len(result["passes"]) > 10, result["passes"]  # axe did check the page
        (artifacts / f"axe-{viewport}-{name}.json").write_text(json.dumps(result["violations"], ensure_ascii=False,
                                                                          indent=1), encoding="utf-8")
        bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
        if bad:
            found[name] = [{"id": v["id"], "impact": v["impact"], "help": v["help"],
                            "nodes": [n["target"] for n in v["nodes"][:5]]} for v in bad]
    assert not found, json.dumps(found, ensure_ascii=False, indent=1)
