"""流程实例: who may see an instance (IDOR), its data by role, the diagram, timeline, list and lifecycle."""
from __future__ import annotations

import json
import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from engine import tasks
from engine.audit.models import AuditEvent
from engine.org.actors import actor_for
from engine.org.models import Membership, Role
from engine.runtime.models import ProcessInstance
from engine.tasks import collab
from tests.web.flows import db, deploy_good, open_task, post, start_web, started_review, user_id

Login = Callable[[str], FlaskClient]
APPLICATION = {"project_name": "胶州智能家电产业园（一期）", "investment": 6000, "project_type": "industrial"}


def _submit(app: Flask, instance_id: int) -> None:
    """The applicant submits the application (through the service: the task page is another feature's)."""
    task = open_task(app, instance_id, "submit_application")
    with db(app) as s:
        applicant = actor_for(s, "applicant")
        tasks.claim(s, task_id=task.id, actor=applicant)
        tasks.complete(s, task_id=task.id, actor=applicant, data=APPLICATION, opinion="请审批")


def _attr(html: str, name: str) -> list[str]:
    match = re.search(rf"data-{name}='([^']*)'", html)
    assert match is not None, name
    return list(json.loads(match.group(1).replace("&#34;", '"').replace("&quot;", '"')))


def test_the_starter_sees_page_data_diagram_and_timeline(app: Flask, login: Login, frozen: object) -> None:
    deploy_good(app)
    applicant = login("applicant")
    row = started_review(app, applicant)
    _submit(app, row.id)
    page = applicant.get(f"/instances/{row.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "智能家电产业园并联审批" in html and "JZ-2025-001" in html and "运行中" in html
    # an applicant from outside: their own step, not the data (it holds the departments' form values too)
    assert "流程数据" not in html and "胶州智能家电产业园（一期）" in html
    assert "项目单位张三" in html and "2025-09-01 09:00" in html  # display names, Shanghai time
    assert "请审批" in html and "申请说明" in html  # the opinion (a Comment row): the applicant's own, no 审批意见
    assert "accept" in _attr(html, "current") and "submit_application" in _attr(html, "completed")
    assert "start" in _attr(html, "completed") and "issue_certificate" not in _attr(html, "completed")
    assert f'data-jz-diagram="/instances/{row.id}/diagram.bpmn?v={row.version_id}"' in html  # drawn by the bundle
    heat = re.search(r"data-heat='([^']*)'", html)
    assert heat is not None and set(json.loads(heat.group(1))) == {"submit_application", "accept"}
    assert "<script>" not in html.split("</main>")[0]  # no inline script (CSP 'self')
    assert "suspend" not in html  # lifecycle buttons are for admins
    xml = applicant.get(f"/instances/{row.id}/diagram.bpmn")
    assert xml.status_code == 200 and xml.mimetype == "application/octet-stream"  # an inert download (web.downloads)
    assert b'id="review_process"' in xml.data


def test_outsiders_are_answered_as_if_the_instance_did_not_exist(app: Flask, login: Login) -> None:
    deploy_good(app)
    row = started_review(app, login("applicant"))
    st = login("st")  # a reviewer of another unit: not involved before acceptance
    for path in (f"/instances/{row.id}", f"/instances/{row.id}/diagram.bpmn", f"/instances/{row.id}/sheet"):
        refused = st.get(path)
        assert refused.status_code == 404 and f"流程实例不存在: {row.id}" in refused.get_data(as_text=True), path
        absent = st.get(path.replace(f"/{row.id}", "/999999"))
        assert absent.status_code == 404 and "流程实例不存在: 999999" in absent.get_data(as_text=True), path
    assert "智能家电" not in st.get("/instances").get_data(as_text=True)
    assert st.get("/instances/999999").status_code == 404


def test_data_is_shown_to_admin_auditor_and_starter_only(app: Flask, login: Login) -> None:
    deploy_good(app)
    applicant = login("applicant")
    row = started_review(app, applicant)
    _submit(app, row.id)
    window = login("window")  # a candidate of 一窗受理: sees the timeline and the submitted forms, not the data
    html = window.get(f"/instances/{row.id}").get_data(as_text=True)
    assert "办理记录" in html and "流程数据" not in html
    before_sheet, sheet = html.split('id="approval-sheet"', 1)
    assert "6000" in sheet.split("</section>", 1)[0] and "6000" not in before_sheet  # what the applicant submitted
    assert "详情" not in html  # nor the audit events' values
    admin_html = login("admin").get(f"/instances/{row.id}").get_data(as_text=True)
    assert "流程数据" in admin_html and "6000" in admin_html and "详情" in admin_html
    st_id = user_id(app, "st")
    with db(app) as s:  # st becomes an auditor (审计督查): reads every instance, with its data
        role = Role(code="auditor", name="审计督查")
        s.add(role)
        s.flush()
        s.add(Membership(user_id=st_id, role_id=role.id))
    auditor_html = login("st").get(f"/instances/{row.id}").get_data(as_text=True)
    assert "流程数据" in auditor_html and "6000" in auditor_html


def test_a_starting_clerk_reads_the_labelled_forms_not_the_raw_data(app: Flask, login: Login) -> None:
    """A window clerk who started an instance (at the counter, for an enterprise) reads what was submitted as the
    审批单 shows it — the form's labels and choice labels — not the raw 流程数据 (keys, codes, usernames): that
    debugging view is the administrators', process owners' and auditors'."""
    deploy_good(app)
    window = login("window")
    row = started_review(app, window, business_key="JZ-W-001")
    task = open_task(app, row.id, "submit_application")
    hostile = "<script>alert('x')</script>园区"
    with db(app) as s:  # the enterprise's own account fills in the application
        applicant = actor_for(s, "applicant")
        tasks.claim(s, task_id=task.id, actor=applicant)
        tasks.complete(s, task_id=task.id, actor=applicant, data={**APPLICATION, "project_name": hostile})
    html = window.get(f"/instances/{row.id}").get_data(as_text=True)
    assert "流程数据" not in html, html
    assert "industrial" not in html  # no raw codes
    assert "项目类型" in html and "工业项目" in html and "总投资（万元）" in html  # labels and choice labels
    assert "&lt;script&gt;alert(" in html and "<script>alert" not in html  # escaped as before
    window.get("/lang/en")
    en = window.get(f"/instances/{row.id}").get_data(as_text=True)
    assert "Approval sheet" in en and "Instance data" not in en and "industrial" not in en
    admin_html = login("admin").get(f"/instances/{row.id}").get_data(as_text=True)
    assert "流程数据" in admin_html and "industrial" in admin_html  # the raw view stays for debugging
    assert admin_html.index("工业项目") < admin_html.index("流程数据")  # the readable one first
    assert "initiator" in admin_html and "（窗口李四）" in admin_html  # a username there: who that is
    assert "<script>alert" not in admin_html
    assert login("st").get(f"/instances/{row.id}").status_code == 404  # may not see it: as if it did not exist


def test_the_list_filters_and_pages_by_keyset(app: Flask, login: Login, frozen: Callable[..., object]) -> None:
    from datetime import timedelta

    from engine import clock
    deploy_good(app)
    applicant = login("applicant")
    for n in range(3):
        started_review(app, applicant, business_key=f"JZ-P{n}", title=f"项目{n}")
        clock.advance(timedelta(minutes=1))
    admin = login("admin")  # a process whose first task the applicant is no candidate of
    assert start_web(admin, "minimal", business_key="JZ-ADMIN", title="管理员发起").status_code == 302

    first = applicant.get("/instances?limit=2").get_data(as_text=True)
    assert "项目2" in first and "项目1" in first and "项目0" not in first and "管理员发起" not in first
    cursor = re.search(r'after=([\w-]+)', first)
    assert cursor is not None
    second = applicant.get(f"/instances?limit=2&after={cursor.group(1)}").get_data(as_text=True)
    assert "项目0" in second and "项目1" not in second and 'rel="next"' not in second

    everything = admin.get("/instances").get_data(as_text=True)
    assert all(t in everything for t in ("项目0", "项目1", "项目2", "管理员发起"))
    mine = admin.get("/instances?mine=1").get_data(as_text=True)
    assert "管理员发起" in mine and "项目0" not in mine
    found = admin.get("/instances?q=JZ-P1").get_data(as_text=True)
    assert "项目1" in found and "项目2" not in found
    assert "项目0" in admin.get("/instances?q=JZ-P0&process=review_process&status=running").get_data(as_text=True)
    assert "没有符合条件的流程实例" in admin.get("/instances?status=completed").get_data(as_text=True)
    assert admin.get("/instances?status=bogus").status_code == 422
    assert admin.get("/instances?after=not-a-cursor").status_code == 422


def test_lifecycle_is_for_admins_only(app: Flask, login: Login) -> None:
    deploy_good(app)
    applicant = login("applicant")
    row = started_review(app, applicant)
    for action in ("suspend", "terminate"):
        refused = post(applicant, f"/instances/{row.id}/{action}")
        assert refused.status_code == 403, action
    assert _status(app, row.id) == "running"

    admin = login("admin")
    page = admin.get(f"/instances/{row.id}").get_data(as_text=True)
    assert f"/instances/{row.id}/suspend" in page and f"/instances/{row.id}/terminate" in page
    assert admin.post(f"/instances/{row.id}/suspend").status_code == 400  # CSRF
    assert _status(app, row.id) == "running"
    assert post(admin, f"/instances/{row.id}/suspend").status_code == 302
    assert _status(app, row.id) == "suspended"
    assert "已挂起" in admin.get(f"/instances/{row.id}").get_data(as_text=True)
    assert post(admin, f"/instances/{row.id}/suspend").status_code == 409  # not running any more
    assert post(applicant, f"/instances/{row.id}/resume").status_code == 403
    assert _status(app, row.id) == "suspended"
    assert post(admin, f"/instances/{row.id}/resume").status_code == 302
    assert _status(app, row.id) == "running"
    assert post(admin, f"/instances/{row.id}/terminate").status_code == 302
    assert _status(app, row.id) == "terminated"
    html = admin.get(f"/instances/{row.id}").get_data(as_text=True)
    assert "已终止" in html and "submit_application" in _attr(html, "cancelled") and _attr(html, "current") == []
    with db(app) as s:
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.stream == f"instance:{row.id}")
                                 .order_by(AuditEvent.seq)))
    assert actions[-3:] == ["instance.suspend", "instance.resume", "instance.terminate"]


def _status(app: Flask, instance_id: int) -> str:
    with db(app) as s:
        status = s.scalar(select(ProcessInstance.status).where(ProcessInstance.id == instance_id))
        assert status is not None
        return status


def test_cc_and_incidents_show_on_the_page(app: Flask, login: Login) -> None:
    deploy_good(app)
    applicant = login("applicant")
    row = started_review(app, applicant)
    with db(app) as s:
        collab.carbon_copy(s, instance_id=row.id, actor=actor_for(s, "applicant"), usernames=["boss"],
                           note="请领导知悉")
        from engine.runtime.models import Incident
        s.add(Incident(instance_id=row.id, bpmn_id="compute_fee", kind="script_error",
                       message="NameError: name 'investment' is not defined <b>"))
    boss = login("boss")  # CC'd: may see the instance
    html = boss.get(f"/instances/{row.id}").get_data(as_text=True)
    assert "请领导知悉" in html and "领导孙八" in html and "抄送" in html
    assert "NameError: name &#39;investment&#39; is not defined &lt;b&gt;" in html
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.stream == f"instance:{row.id}", AuditEvent.action == "instance.cc")) == 1


def test_the_pages_speak_english_too(app: Flask, login: Login) -> None:
    deploy_good(app)
    applicant = login("applicant")
    row = started_review(app, applicant)
    applicant.get("/lang/en")
    html = applicant.get(f"/instances/{row.id}").get_data(as_text=True)
    assert "History" in html and "Running" in html and "办理记录" not in html
    admin = login("admin")  # the data: not for an applicant from outside
    admin.get("/lang/en")
    assert "Instance data" in admin.get(f"/instances/{row.id}").get_data(as_text=True)
    assert "Start a process" in applicant.get("/processes").get_data(as_text=True)
    assert "Started by me" in applicant.get("/instances").get_data(as_text=True)
