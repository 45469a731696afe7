"""Menus by role in the browser: each role's menu, screenshotted, and the window clerk's refusal page.

The live server (conftest) holds the seed and the demo. Each person logs in through the form; the menu
must hold what their role may open and nothing else, and clicking every entry must open a page (never the
403). The window clerk typing /audit gets the Chinese 403 page naming the right and her unit head.
Screenshots: $JZFLOW_E2E_ARTIFACTS (default instance/e2e/) menu-<username>.png and forbidden-window.png.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer, log_in

# username → (role, entries the menu must show, entries it must not show)
ROLES: dict[str, tuple[str, set[str], set[str]]] = {
    "maxiaoyan": ("窗口受理", {"待办", "发起流程", "通知"}, {"督办", "报表", "流程建模", "审计", "管理"}),
    "gupeng": ("项目单位", {"待办", "发起流程"}, {"督办", "报表", "流程建模", "审计", "管理"}),
    "linzhiyuan": ("审查人员", {"待办", "项目库"}, {"督办", "流程建模", "审计", "管理"}),
    "sunmingyuan": ("单位负责人", {"督办", "报表", "项目库"}, {"流程建模", "审计", "管理"}),
    "qianlihua": ("审计督查", {"审计", "流程建模", "报表"}, {"管理"}),
    "admin": ("系统管理员", {"管理", "审计", "流程建模", "报表"}, set()),
}


def menu(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("nav.mainnav a").all_inner_texts()]


@pytest.mark.parametrize("username", list(ROLES))
def test_each_role_sees_the_menu_it_may_open(live_server: LiveServer, page: Any, artifacts: Path,
                                             username: str) -> None:
    _role, must, must_not = ROLES[username]
    log_in(page, live_server, username)
    labels = menu(page)
    page.screenshot(path=str(artifacts / f"menu-{username}.png"), full_page=False)
    assert must <= set(labels), (username, labels)
    assert not must_not & set(labels), (username, labels)
    hrefs = page.locator("nav.mainnav a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    for href in hrefs:
        response = page.goto(f"{live_server.url}{href}")
        assert response is not None and response.status == 200, (username, href, response and response.status)
        assert "无权访问" not in page.locator("main").inner_text()


def test_the_window_clerk_is_told_why_and_whom_to_ask(live_server: LiveServer, page: Any, artifacts: Path) -> None:
    log_in(page, live_server, "maxiaoyan")
    response = page.goto(f"{live_server.url}/audit")
    assert response is not None and response.status == 403
    text = page.locator("main").inner_text()
    page.screenshot(path=str(artifacts / "forbidden-window.png"), full_page=True)
    assert "无权访问" in text and "审计督查人员或系统管理员" in text
    assert "行政审批服务局负责人：褚红梅" in text
    assert "Something went wrong" not in text and "出错了" not in text
