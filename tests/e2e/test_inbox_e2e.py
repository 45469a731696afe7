"""The task inbox in the browser, on jzflow started the way the README starts it (`make run`, see conftest).

A leader 认领s a plan task of the demo's running 七步工作法 period and submits it; a window officer transfers a
并联审批 acceptance to a colleague (after a refused transfer to nobody), who sends it back to the applicant;
the applicant finds it in 待办 again with the reason. Screenshots of the inbox and the task pages go to
test-artifacts/e2e/.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from engine import clock
from tests.e2e.conftest import AppProcess, Desk, children, flash_texts, open_from_inbox, step_name, submit_task

LEADER = "wangjianguo"  # 市级领导: the demo leaves the current period's plan tasks for him to 认领
WINDOW, COLLEAGUE = "maxiaoyan", "gaowenjing"  # 窗口受理, both of 行政审批服务局


def facts(page: Any) -> dict[str, str]:
    """The task page's facts (事项标题, 状态, 办理人, …)."""
    head = page.locator("section.task-head dl.facts")
    return dict(zip(head.locator("dt").all_inner_texts(), head.locator("dd").all_inner_texts(), strict=True))


def rows(page: Any, task_name: str) -> Any:
    return page.locator("table.tasks tbody tr").filter(has=page.get_by_role("link", name=step_name(task_name)))


def test_make_run_prints_the_url_and_the_demo_logins_and_runs_a_worker(app_process: AppProcess) -> None:
    banner = app_process.output()
    assert f"{app_process.url}/" in banner and "demo logins (password: jzflow-dev-2025)" in banner, banner
    for username in ("gupeng", "maxiaoyan", "linzhiyuan", "wangjianguo", "admin"):
        assert f"    {username} " in banner, username
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in children(app_process.pid)
                if Path(f"/proc/{pid}/cmdline").exists()]
    assert any(b"celery" in c and b"worker" in c and b"--beat" in c for c in commands), commands


def test_a_leader_claims_a_plan_task_and_submits_it(app_process: AppProcess, desk: Desk, e2e_artifacts: Path) -> None:
    leader = desk(LEADER)
    leader.goto(f"{app_process.url}/inbox?process=investment_loop&stage=claim_item")
    claimable = rows(leader, "认领计划任务").filter(has_text="可认领")
    assert claimable.count() >= 1, leader.locator("main").inner_text()
    leader.screenshot(path=str(e2e_artifacts / "inbox-leader.png"), full_page=True)
    before = claimable.count()
    with leader.expect_navigation():
        claimable.first.get_by_role("link", name=step_name("认领计划任务")).click()
    task_url = leader.url
    assert facts(leader)["办理人"] == "待认领"
    item = leader.locator(".instructions").inner_text()
    assert item.startswith("请认领计划任务：")

    with leader.expect_navigation():
        leader.locator("section.task-head form[action$='/claim'] button").click()
    assert "已认领" in flash_texts(leader) and leader.url == task_url
    assert facts(leader)["办理人"] == "王建国"
    assert leader.locator("section.task-head form[action$='/unclaim']").count() == 1  # 取消认领 is offered now
    leader.screenshot(path=str(e2e_artifacts / "task-claimed.png"), full_page=True)
    leader.goto(f"{app_process.url}/inbox?process=investment_loop&stage=claim_item")
    assert rows(leader, "认领计划任务").filter(has_text="我的").count() == 1
    assert rows(leader, "认领计划任务").filter(has_text="可认领").count() == before - 1

    leader.goto(task_url)
    leader.fill("#fld-f-measures", "成立工作专班，按周调度，逐项对接链主企业。")
    finish_by = (datetime.now(clock.SHANGHAI).date() + timedelta(days=60)).isoformat()
    leader.fill("#fld-f-finish_by", finish_by)
    assert "已提交" in submit_task(leader)
    leader.goto(f"{app_process.url}/inbox/done?stage=claim_item")
    path = task_url[len(app_process.url):]
    assert leader.locator(f"main a[href='{path}']").count() == 1  # now in 已办
    leader.goto(f"{app_process.url}/inbox?process=investment_loop&stage=claim_item")
    assert leader.locator(f"main a[href='{path}']").count() == 0  # and no longer in 待办
    assert desk.errors == [], desk.errors


def test_transfer_then_send_back_to_the_applicant(app_process: AppProcess, desk: Desk, e2e_artifacts: Path) -> None:
    url = app_process.url
    window = desk(WINDOW)
    window.goto(f"{url}/inbox?process=parallel_approval&stage=window_accept")
    demo_rows = rows(window, "一窗受理").filter(has_not_text="E2E")
    assert demo_rows.count() >= 1, window.locator("main").inner_text()  # the demo's application waiting today
    with window.expect_navigation():
        demo_rows.first.get_by_role("link", name="一窗受理").click()
    task_url = window.url
    title = facts(window)["事项标题"]
    window.screenshot(path=str(e2e_artifacts / "task-window-accept.png"), full_page=True)

    # 转办 offers the people of the window's scope only: searching someone unknown finds nobody.
    window.locator("details", has_text="转办").first.locator("summary").click()
    transfer = window.locator("form[action$='/transfer']")
    search = transfer.locator("input.jz-picker-search")
    search.fill("nobody-e2e")
    transfer.locator(".jz-picker-results li.none").wait_for()
    assert transfer.locator(".jz-picker-results [role=option]").count() == 0
    window.goto(task_url)
    assert facts(window)["办理人"] == "待认领"

    # 转办 to the colleague, found by her pinyin initials (高文静 → gwj), with a note.
    window.locator("details", has_text="转办").first.locator("summary").click()
    search.fill("gwj")
    transfer.locator(".jz-picker-results [role=option]", has_text="高文静").click()
    assert transfer.locator("select[name=to_username]").input_value() == COLLEAGUE
    transfer.locator("textarea[name=note]").fill("本人外出培训，请高文静代为受理。")
    with window.expect_navigation():
        transfer.locator("button[type=submit]").click()
    assert "已转办给 高文静（行政审批服务局）" in flash_texts(window)  # name and unit, not the username
    assert window.url.endswith("/inbox")
    window.goto(f"{url}/inbox?q={title}")
    assert rows(window, "一窗受理").count() == 0

    colleague = desk(COLLEAGUE)
    colleague.goto(f"{url}/inbox?q={title}")
    mine = rows(colleague, "一窗受理")
    assert mine.count() == 1 and "我的" in mine.inner_text()
    colleague.screenshot(path=str(e2e_artifacts / "inbox-transferred.png"), full_page=True)
    open_from_inbox(colleague, app_process, title, "一窗受理")
    assert facts(colleague)["办理人"] == "高文静"
    history = colleague.locator("#history").inner_text()
    assert "转办" in history and "本人外出培训" in history

    # 退回 to the applicant's step, with a reason.
    colleague.locator("details", has_text="退回").first.locator("summary").click()
    send_back = colleague.locator("form[action$='/send-back']")
    send_back.locator("select[name=to]").select_option("previous")
    send_back.locator("textarea[name=reason]").fill("缺少项目备案文件，请补充后重新提交。")
    colleague.screenshot(path=str(e2e_artifacts / "task-send-back.png"), full_page=True)
    with colleague.expect_navigation():
        send_back.locator("button[type=submit]").click()
    assert "已退回到「提交并联审批申请」" in flash_texts(colleague), flash_texts(colleague)

    # The application is back with the applicant (待办理 on the instance page), the reason in the history;
    # the acceptance task is closed.
    colleague.goto(task_url)
    assert not facts(colleague)["状态"].startswith("待办理"), facts(colleague)
    assert colleague.locator("form.task-form").count() == 0
    instance_href = colleague.locator(".crumbs a[href^='/instances/']").get_attribute("href")
    colleague.goto(f"{url}{instance_href}")
    reopened = colleague.locator("table.grid tbody tr").filter(has_text="提交并联审批申请").filter(has_text="待办理")
    assert reopened.count() == 1, colleague.locator("main").inner_text()
    assert "缺少项目备案文件" in colleague.locator("ol.timeline").inner_text()
    colleague.screenshot(path=str(e2e_artifacts / "instance-sent-back.png"), full_page=True)
    assert desk.errors == [], desk.errors
