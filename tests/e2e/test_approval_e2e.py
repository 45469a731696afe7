"""并联审批 in the browser, on jzflow started the way the README starts it (`make run`, see conftest).

An applicant (项目单位) starts 并联审批 from /processes and fills the application (a 服务业 project under
1亿元 at 立项用地规划许可: the DMN table picks exactly two departments, 发改局 3 and 自然资源局 10 working
days); the window (窗口受理) accepts; the two departments' reviewers submit at the same moment from two
browser contexts, one approving and one asking for 补正; the applicant supplements; only the department
that asked reviews again and approves; the window issues the joint certificate; the instance page shows
the approval completed with its working days. A refused form (a wrong phone number) keeps the input,
names the field and changes nothing. Screenshots go to test-artifacts/e2e/.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from uuid import uuid4

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from engine import clock
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from tests.e2e.conftest import AppProcess, Desk, flash_texts, open_from_inbox, submit_task

APPLICANT, WINDOW = "gupeng", "maxiaoyan"  # data/seed/users.yaml: 项目单位, 窗口受理 (行政审批服务局)
REVIEWERS = {"fgj": "linzhiyuan", "zrzyj": "luocheng"}  # 审批部门 reviewers of 发改局 and 自然资源局


def instance_row(server: AppProcess, title: str) -> tuple[ProcessInstance, list[HumanTask]]:
    """Read the instance and its human tasks straight from the server's database (for the final checks)."""
    engine = create_engine(server.database_url)
    try:
        with Session(engine) as session:
            row = session.scalar(select(ProcessInstance).where(ProcessInstance.title == title))
            assert row is not None, title
            found = list(session.scalars(select(HumanTask).where(HumanTask.instance_id == row.id)
                                         .order_by(HumanTask.id)))
            session.expunge_all()
            return row, found
    finally:
        engine.dispose()


def test_parallel_approval_with_a_supplement_round(app_process: AppProcess, desk: Desk, e2e_artifacts: Path) -> None:
    url = app_process.url
    title = f"E2E 并联审批 {uuid4().hex[:6]}"
    key = f"E2E-{uuid4().hex[:8].upper()}"

    # -- the applicant starts 并联审批 from /processes -------------------------------------------------------
    applicant = desk(APPLICANT)
    applicant.goto(f"{url}/processes")
    with applicant.expect_navigation():
        applicant.locator("a[href='/processes/parallel_approval/start']").click()
    applicant.fill("input[name=title]", title)
    applicant.fill("input[name=business_key]", key)
    with applicant.expect_navigation():
        applicant.locator("main form button[type=submit]").click()
    assert re.search(r"/tasks/\d+$", applicant.url), applicant.url  # the first task is the applicant's
    assert "流程已发起" in flash_texts(applicant)
    applicant.locator("h1", has_text="提交并联审批申请").wait_for()
    instance_href = applicant.locator(".crumbs a[href^='/instances/']").get_attribute("href")
    assert instance_href

    # The application, first with a wrong phone number: refused at the field, the input kept, nothing done.
    applicant.fill("#fld-f-project_code", "2025-370281-72-03-E2E001")
    applicant.fill("#fld-f-project_name", "胶州湾临空商务服务中心（E2E）")
    applicant.check("input[name='f/project_type'][value=service]")
    applicant.fill("#fld-f-investment", "8000")
    applicant.check("input[name='f/stage'][value=land_planning]")
    applicant.fill("#fld-f-applicant_unit", "青岛临空商务发展有限公司")
    applicant.fill("#fld-f-contact_name", "王小川")
    applicant.fill("#fld-f-contact_phone", "12345")
    for material in ("application_form", "business_license", "project_document", "land_documents"):
        applicant.check(f"input[name='f/materials'][value={material}]")
    submit_task(applicant)
    assert "表单有误，请修改标出的字段" in flash_texts(applicant)
    assert applicant.locator("#fld-f-contact_phone-error").inner_text().strip()
    assert applicant.locator("#fld-f-project_name").input_value() == "胶州湾临空商务服务中心（E2E）"
    _row, tasks = instance_row(app_process, title)
    assert [(t.bpmn_id, t.state) for t in tasks] == [("submit_application", "ready")]
    applicant.screenshot(path=str(e2e_artifacts / "approval-1-refused-form.png"), full_page=True)

    applicant.fill("#fld-f-contact_phone", "13806425566")
    assert "已提交" in submit_task(applicant)
    assert applicant.url.endswith("/inbox")

    # -- 一窗受理 ----------------------------------------------------------------------------------------------
    window = desk(WINDOW)
    open_from_inbox(window, app_process, title, "一窗受理")
    window.check("input[name='f/acceptance'][value=accept]")
    window.fill("#fld-f-window_opinion", "材料齐全，予以受理。")
    assert "已提交" in submit_task(window)

    # -- the two departments in parallel: both pages open, both forms sent at once ---------------------------
    pages = {}
    for code, username in REVIEWERS.items():
        reviewer = desk(username)
        open_from_inbox(reviewer, app_process, title, "部门审查")
        department = {"fgj": "发展和改革局", "zrzyj": "自然资源局"}[code]
        assert department in reviewer.locator(".instructions").inner_text()
        pages[code] = reviewer
    fgj, zrzyj = pages["fgj"], pages["zrzyj"]
    fgj.screenshot(path=str(e2e_artifacts / "approval-2-department-review.png"), full_page=True)
    fgj.check("input[name='f/review_decision'][value=approve]")
    fgj.fill("#fld-f-review_opinion", "符合产业政策，同意备案。")
    zrzyj.check("input[name='f/review_decision'][value=supplement]")
    zrzyj.fill("#fld-f-review_opinion", "用地材料需补正。")
    zrzyj.fill("#fld-f-supplement_materials", "请补交经测绘机构确认的宗地红线图。")
    submit = "() => document.querySelector('form.task-form').requestSubmit()"
    with fgj.expect_navigation(), zrzyj.expect_navigation():
        fgj.evaluate(submit)  # returns at once: both requests are in flight together
        zrzyj.evaluate(submit)
    assert "已提交" in flash_texts(fgj) and "已提交" in flash_texts(zrzyj), (flash_texts(fgj), flash_texts(zrzyj))

    # -- 补正 by the applicant: the request is in the task's instructions ---------------------------------------
    open_from_inbox(applicant, app_process, title, "补正材料")
    instructions = applicant.locator(".instructions").inner_text()
    assert "自然资源局" in instructions and "红线图" in instructions and "发展和改革局" not in instructions
    applicant.screenshot(path=str(e2e_artifacts / "approval-3-supplement.png"), full_page=True)
    applicant.fill("#fld-f-supplement_reply", "已补交经青岛市勘测院确认的宗地红线图。")
    applicant.check("#fld-f-supplement_pledge")
    assert "已提交" in submit_task(applicant)

    # Only the department that asked reviews again; 发改局 has nothing more to do.
    fgj.goto(f"{url}/inbox?q={title}")
    assert fgj.locator("table.tasks tbody tr", has_text=title).count() == 0
    open_from_inbox(zrzyj, app_process, title, "部门审查")
    assert "第 2 轮" in zrzyj.locator(".instructions").inner_text()
    zrzyj.check("input[name='f/review_decision'][value=approve]")
    zrzyj.fill("#fld-f-review_opinion", "补正材料符合要求，同意。")
    assert "已提交" in submit_task(zrzyj)

    # -- 联合出证 -----------------------------------------------------------------------------------------------
    open_from_inbox(window, app_process, title, "联合出证")
    earlier = window.locator("#earlier-steps").inner_text()  # 联合出证 reads the departments' opinions
    assert "补正材料符合要求，同意。" in earlier and "审查结论" in earlier
    assert window.locator("#fld-f-certificate_no").count() == 0  # the engine numbers it, nobody types it
    window.screenshot(path=str(e2e_artifacts / "approval-3b-certificate-reads-opinions.png"), full_page=True)
    window.fill("#fld-f-issued_on", datetime.now(clock.SHANGHAI).date().isoformat())
    assert "已提交" in submit_task(window)

    # -- the instance page: completed, with the working days used against the serial sum of SLAs -------------
    applicant.goto(f"{url}{instance_href}")
    assert applicant.locator(".status-completed").inner_text().strip() == "已完成"
    # the instance's data (every step's form values: the window's and the departments' among them) is not the
    # outside applicant's to read: an administrator reads it
    assert applicant.locator("dl.data").count() == 0
    admin = desk("admin")
    admin.goto(f"{url}{instance_href}")
    data = dict(zip(admin.locator("dl.data dt").all_inner_texts(), admin.locator("dl.data dd").all_inner_texts(),
                    strict=True))
    days = json.loads(data["working_days"])
    assert days["departments"] == ["fgj", "zrzyj"] and days["sla_serial_wd"] == 13 and days["sla_parallel_wd"] == 10
    assert days["working_days_used"] == 0 and days["working_days_saved"] == 13  # accepted and certified today
    assert data["outcome"] == "certified"
    history = applicant.locator("ol.timeline").inner_text()
    for who in ("顾鹏", "马晓燕", "林志远", "罗成"):
        assert who in history
    issued = applicant.locator("#issued-documents").inner_text()
    assert re.search(r"胶审〔\d{4}〕\d{4}号", issued), issued
    applicant.screenshot(path=str(e2e_artifacts / "approval-4-completed.png"), full_page=True)

    row, tasks = instance_row(app_process, title)
    assert row.status == "completed" and row.business_key == key
    done = [(t.bpmn_id, t.state) for t in tasks if t.kind == "bpmn"]
    assert done == [("submit_application", "completed"), ("window_accept", "completed"),
                    ("department_review", "completed"), ("department_review", "completed"),
                    ("submit_supplement", "completed"), ("department_review", "completed"),
                    ("issue_certificate", "completed")], done
    assert desk.errors == [], desk.errors
