"""The smaller defects found in the office review (issue #14 item 8), each pinned by a test written before its fix."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from engine.org.actors import actor_for
from engine.org.models import User
from engine.runtime.models import ProcessInstance
from engine.tasks import people as people_picker
from engine.tasks import sendback
from engine.tasks.models import HumanTask
from tests.web import pages_world as pw


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[pw.PagesWorld]:
    yield from pw.open_world(tmp_path_factory, sqlite_template)


def withdraw_buttons(html: str) -> set[int]:
    return {int(n) for n in re.findall(r'action="/tasks/(\d+)/withdraw"', html)}


@pytest.mark.parametrize("username", [pw.APPLICANT, pw.REVIEWER, pw.TOWN, pw.CITY_LEADER, pw.ADMIN])
def test_withdraw_is_offered_only_on_what_can_still_be_withdrawn(world: pw.PagesWorld, username: str) -> None:
    _status, html = pw.get(world, username, "/inbox/done?limit=200")
    offered = withdraw_buttons(html)
    with world.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None
        actor = actor_for(s, username)
        done = s.scalars(select(HumanTask).where(HumanTask.completed_by_id == user.id, HumanTask.kind == "bpmn")).all()
        possible = {t.id for t in done if sendback.withdraw_refusal(s, actor, t) is None}
        s.rollback()
    assert offered == possible, (sorted(offered - possible), sorted(possible - offered))
    for task_id in list(offered)[:3]:
        _s, page = pw.get(world, username, f"/tasks/{task_id}")
        assert f'action="/tasks/{task_id}/withdraw"' in page


def test_a_refused_withdraw_speaks_one_language(world: pw.PagesWorld) -> None:
    found = None
    with world.session() as s:
        for username in pw.EVERYONE:
            actor = actor_for(s, username)
            stuck = next((t for t in s.scalars(select(HumanTask).where(HumanTask.completed_by_id == actor.user_id,
                                                                      HumanTask.kind == "bpmn"))
                          if sendback.withdraw_refusal(s, actor, t) is not None), None)
            if stuck is not None:
                found = (username, stuck.id)
                break
        s.rollback()
    assert found is not None
    username, task_id = found
    client = world.clients[username]
    _status, html = pw.get(world, username, "/inbox/done")
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token is not None
    response = client.post(f"/tasks/{task_id}/withdraw", data={"csrf_token": token.group(1)},
                           headers={"Referer": "http://localhost/inbox/done"}, follow_redirects=True)
    page = pw.main(response.get_data(as_text=True))
    assert "无法撤回" in page or "只能撤回" in page, page[:800]
    assert not re.search(r"\((the|only|that) [a-z ]+\)", page), page[:800]


def test_no_instance_is_left_without_a_case_in_its_task_names(world: pw.PagesWorld) -> None:
    """Five 部门审查 of one approval, four 认领计划任务 of one period: each names its department or item."""
    with world.session() as s:
        rows = s.execute(select(HumanTask.instance_id, HumanTask.bpmn_id, HumanTask.name)
                         .where(HumanTask.bpmn_id.in_(("department_review", "claim_item")))).all()
        titles = dict(s.execute(select(ProcessInstance.id, ProcessInstance.title)).all())
    assert rows
    by_step: dict[tuple[int, str], list[str]] = {}
    for instance_id, bpmn_id, name in rows:
        by_step.setdefault((instance_id, bpmn_id), []).append(name)
    for (instance_id, bpmn_id), names in by_step.items():
        assert all(" · " in n for n in names), (titles[instance_id], bpmn_id, names)


def test_api_has_a_json_landing_naming_its_description(world: pw.PagesWorld) -> None:
    anonymous = world.app.test_client()
    for path in ("/api", "/api/"):
        response = anonymous.get(path, headers={"Accept": "text/html"})
        assert response.status_code == 200, path
        assert response.is_json and response.get_json()["openapi"] == "/api/openapi.json"
    assert anonymous.get("/api/openapi.json").status_code == 200


@pytest.mark.parametrize("path", ["/api/nothing-here", "/api/tasks/999999999"])
def test_api_404s_are_json_even_for_a_browser(world: pw.PagesWorld, path: str) -> None:
    response = world.clients[pw.ADMIN].get(path, headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json" and response.get_json()["status"] == 404


def test_every_page_has_a_real_icon(world: pw.PagesWorld) -> None:
    response = world.app.test_client().get("/favicon.ico")
    assert response.status_code == 200
    assert response.data[:4] == b"\x00\x00\x01\x00"  # an ICO file
    _status, html = pw.get(world, pw.APPLICANT, "/inbox")
    assert '<link rel="icon" href="/favicon.ico"' in html


def test_audit_exports_put_the_login_under_actor_and_the_name_under_actor_name(world: pw.PagesWorld) -> None:
    import csv
    import io

    from openpyxl import load_workbook
    client = world.clients[pw.AUDITOR]
    body = client.get("/audit/export.csv?action=plan_item.create").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))
    people = {r["actor"]: r["actor_name"] for r in client_rows(world)}
    assert rows
    for row in rows:
        assert row["actor"] in people, row["actor"]  # a username
        assert row["actor_name"] == people[row["actor"]]
    sheet = load_workbook(io.BytesIO(client.get("/audit/export.xlsx?action=plan_item.create").data), read_only=True).active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][2:4] == ("actor", "actor_name")
    assert all(v[2] in people and v[3] == people[v[2]] for v in values[1:])


def client_rows(world: pw.PagesWorld) -> list[dict[str, str]]:
    with world.session() as s:
        return [{"actor": u.username, "actor_name": u.display_name} for u in s.scalars(select(User))] + \
            [{"actor": "system", "actor_name": "系统"}]


def test_count_projections_are_whole_numbers(world: pw.PagesWorld) -> None:
    """年末预计 of a count (新开工项目 …个) is a whole number in plan items, inbox rows and the dashboard."""
    from plan import investment as plan
    with world.session() as s:
        assessments = [a for a in plan.indicator_statuses(s, "2025-08") if a.kind == "count" and a.projected is not None
                       and a.target == a.target.to_integral_value()]
        titles = s.scalars(select(HumanTask.name).where(HumanTask.bpmn_id == "claim_item")).all()
    assert assessments
    assert all(a.projected == a.projected.to_integral_value() and a.gap == a.gap.to_integral_value() for a in assessments), \
        [(a.code, a.projected, a.gap, a.target) for a in assessments
         if a.projected != a.projected.to_integral_value() or a.gap != a.gap.to_integral_value()]
    assert not [t for t in titles if re.search(r"\d+\.\d+个", t)], titles
    _status, html = pw.get(world, pw.CITY_LEADER, "/inbox")
    assert not re.search(r"\d+\.\d+个", pw.main(html))


def test_the_transfer_confirmation_names_the_person(world: pw.PagesWorld) -> None:
    with world.session() as s:
        people = {u.id: u.username for u in s.scalars(select(User).where(User.username.in_(pw.EVERYONE)))}
        task = s.scalars(select(HumanTask).where(HumanTask.state == "ready", HumanTask.kind == "bpmn",
                                                 HumanTask.assignee_id.in_(people))).first()
        assert task is not None and task.assignee_id is not None
        task_id, holder = task.id, people[task.assignee_id]
        target = next(p for p in people_picker.search(s, actor_for(s, holder), "", task.instance_id)
                      if p.username != holder)  # someone the holder may hand it to
    _status, html = pw.get(world, holder, f"/tasks/{task_id}")
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token is not None and f"/tasks/{task_id}/transfer" in html
    response = world.clients[holder].post(f"/tasks/{task_id}/transfer", follow_redirects=True,
                                          data={"csrf_token": token.group(1), "to_username": target.username})
    page = pw.main(response.get_data(as_text=True))
    assert f"已转办给 {target.name}" in page, page[:600]  # the name (and unit), not the login
    assert f"已转办给 {target.username}" not in page


SUPERVISORS = (pw.CITY_LEADER, pw.LEADER, pw.AREA_HEAD)


def supervision_rows(html: str) -> list[str]:
    return re.findall(r'<tr id="((?:task|issue|project)-\d+)"', html)


@pytest.mark.parametrize("username", SUPERVISORS)
def test_supervision_shows_red_and_yellow_totals_at_the_top(world: pw.PagesWorld, username: str) -> None:
    _status, html = pw.get(world, username, "/supervision")
    body = pw.main(html)
    lights = re.findall(r'<tr id="(?:task|issue|project)-\d+" class="light-(\w+)"', body)
    summary = re.search(r'<p class="supervision-totals"[^>]*>(.*?)</p>', body, re.S)
    assert summary is not None, body[:600]
    assert f'data-red="{lights.count("red")}"' in summary.group(0)
    assert f'data-yellow="{lights.count("yellow")}"' in summary.group(0)
    assert body.index("supervision-totals") < body.index("<table")


@pytest.mark.parametrize("username", SUPERVISORS)
def test_supervision_rows_link_to_their_own_pages_and_name_their_case(world: pw.PagesWorld, username: str) -> None:
    _status, html = pw.get(world, username, "/supervision")
    body = pw.main(html)
    rows = re.findall(r'<tr id="(task|issue|project)-(\d+)"[^>]*>.*?<td><a href="([^"]+)"[^>]*>([^<]+)</a>', body, re.S)
    assert rows or "没有逾期" in body
    titles = [title for _kind, _id, _href, title in rows]
    assert len(set(titles)) == len(titles), titles  # no two rows read alike
    for kind, object_id, href, title in rows:
        expected = {"project": f"/projects/{object_id}", "issue": f"/ledger/{object_id}", "task": f"/tasks/{object_id}"}
        assert href == expected[kind], (kind, object_id, href)
        if kind == "task":
            assert "（" in title, title  # the step and its case
        assert pw.get(world, username, href)[0] == 200, href


def test_the_extension_form_is_not_squeezed_into_a_cell(world: pw.PagesWorld) -> None:
    for username in SUPERVISORS:
        _status, html = pw.get(world, username, "/supervision")
        body = pw.main(html)
        if "/extension" not in body:
            continue
        form = body.index("/extension")
        row_start = body.rindex("<tr", 0, form)
        assert 'class="extension-row"' in body[row_start:form], body[row_start:form][:300]
        assert 'colspan="7"' in body[row_start:form]
        return
    pytest.fail("no pending extension request in the demo's 督办 lists")


def test_the_certificate_instructions_name_the_project_once() -> None:
    """联合出证: "请为“X”出具X并联审批联合意见书" said the project's name twice."""
    from engine import deploy
    from web.tasks.instructions import render_text
    files = deploy.read_directory(pw.ROOT / "bpmn")
    text = files["parallel_approval.bpmn"].decode()
    task = text[text.index('<bpmn:userTask id="issue_certificate"'):]
    template = re.search(r"<spiffworkflow:instructionsForEndUser>(.*?)</spiffworkflow:instructionsForEndUser>",
                         task, re.S)
    assert template is not None
    shown = render_text(template.group(1), {"project_name": "临空冷链物流园",
                                            "certificate_title": "临空冷链物流园并联审批联合意见书"})
    assert shown.count("临空冷链物流园") == 1, shown
    # The system numbers the certificate (胶审〔年份〕序号号): the window was still asked to "填写证书编号".
    assert "填写证书编号" not in shown and "证书编号由系统自动生成" in shown and "出证日期" in shown, shown


# --- issue #14 item 5: every row and message names its case, its department and its step ------------------------

@pytest.mark.parametrize("username", [pw.CITY_LEADER, pw.REVIEWER, pw.TOWN, pw.LEADER, pw.APPLICANT])
def test_inbox_rows_tell_themselves_apart(world: pw.PagesWorld, username: str) -> None:
    _status, html = pw.get(world, username, "/inbox?limit=200")
    rows = re.findall(r'<tr[^>]*>\s*<td[^>]*>.*?</tr>', pw.main(html).split("<tbody>")[1].split("</tbody>")[0], re.S) \
        if "<tbody>" in pw.main(html) else []
    texts = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", r)).strip() for r in rows]
    texts = [t for t in texts if t and "没有" not in t]
    assert len(set(texts)) == len(texts), [t for t in texts if texts.count(t) > 1]


def test_deadline_messages_name_the_step_the_department_and_the_case(world: pw.PagesWorld) -> None:
    from engine.deadlines import escalation
    from engine.notify import texts
    with world.session() as s:
        tasks = s.execute(select(HumanTask.id, HumanTask.instance_id).where(HumanTask.bpmn_id == "department_review")).all()
        cases = dict(s.execute(select(ProcessInstance.id, ProcessInstance.title)).all())
        targets = escalation.load_targets(s, [("task", task_id) for task_id, _i in tasks])
        s.rollback()
    assert tasks
    for task_id, instance_id in tasks:
        target = targets[("task", task_id)]
        assert target.title.startswith("部门审查 · ") and cases[instance_id] in target.title, target.title
        watch = SimpleNamespace(due_at=target.due_at or pw.NOW)
        _kind, text, args = escalation._note("red", target, watch, pw.NOW, None, "")  # type: ignore[arg-type]
        subject, _body = texts.render(text, args)  # a notice is its text and arguments (engine.notify.texts)
        assert cases[instance_id] in subject and "部门审查 · " in subject, subject


def test_loop_call_documentation_says_what_the_process_does_in_the_plan_s_words() -> None:
    """启动并联审批's documentation spoke of “0001 约定的开始数据” and listed field names the diagram does not pass (it
    gives the service the project code and the applicant; the service fills the rest from the 项目库)."""
    text = (pw.ROOT / "bpmn" / "loop_call.bpmn").read_text(encoding="utf-8")
    docs = re.findall(r"<bpmn:documentation>(.*?)</bpmn:documentation>", text, re.S)
    assert docs
    for doc in docs:
        assert "0001" not in doc and "约定" not in doc, doc
    task = text[text.index('<bpmn:serviceTask id="start_approval"'):]
    doc = re.search(r"<bpmn:documentation>(.*?)</bpmn:documentation>", task, re.S)
    assert doc is not None
    for word in ("立项用地规划许可", "“标准地”出让", "项目库", "项目代码", "并联审批申请人",
                 "每个项目只办理一个第一阶段审批"):
        assert word in doc.group(1), word
    for field in ("project_name", "project_type", "investment", "stage"):  # not passed by the diagram
        assert field not in doc.group(1), field
    params = re.findall(r'<spiffworkflow:parameter id="(\w+)"', task.split("</bpmn:serviceTask>", 1)[0])
    assert params == ["project_code", "applicant"], params  # what the documentation says the diagram passes


def _shown_texts(text: str) -> list[str]:
    """What a diagram shows people: documentation, 办理说明, scripts (the modeller's panel), names and annotations."""
    found: list[str] = []
    for tag in ("bpmn:documentation", "spiffworkflow:instructionsForEndUser", "bpmn:script", "spiffworkflow:preScript",
                "spiffworkflow:postScript", "bpmn:text"):
        found += re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.S)
    found += re.findall(r'\bname="([^"]*)"', text)
    return found


@pytest.mark.parametrize("path", sorted((pw.ROOT / "bpmn").glob("*.bpmn")), ids=lambda p: p.name)
def test_no_diagram_speaks_of_the_0001_contract(path: Path) -> None:
    """investment_loop's 问题转入台账 told its readers (in Chinese) of “0001 约定” and issue_ledger / parallel_approval of
    “the docs/decisions/0001 contract”: a file in the repository, not something a 流程管理员 or an applicant knows. Every
    text a diagram shows says what the step does instead, in the plan's words."""
    text = path.read_text(encoding="utf-8")
    assert "0001" not in text and "docs/decisions" not in text
    for shown in _shown_texts(text):
        assert "约定：" not in shown and "contract" not in shown.lower(), shown


def test_raise_issues_documentation_says_what_the_step_does() -> None:
    text = (pw.ROOT / "bpmn" / "investment_loop.bpmn").read_text(encoding="utf-8")
    task = text[text.index('<bpmn:serviceTask id="raise_issues"'):].split("</bpmn:serviceTask>", 1)[0]
    doc = re.search(r"<bpmn:documentation>(.*?)</bpmn:documentation>", task, re.S)
    assert doc is not None
    for word in ("问题台账", "服务企业走访", "责任单位", "项目库", "退回", "一个也不登记"):
        assert word in doc.group(1), word
    for field in ("unit_code", "project_code", "due_date", "start_process"):  # identifiers, not the plan's words
        assert field not in doc.group(1), field
