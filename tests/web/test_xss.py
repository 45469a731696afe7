"""Free text comes back escaped everywhere; every form refuses bad input with a message and changes nothing.

XSS: a 并联审批 is taken through the web from application to certificate with a script and an attribute-breaking
image tag in every free-text field a user can reach (title, business key, application fields, opinions,
comments, notes of urge/CC/transfer/delegate/co-sign, the delegation's answer, the send-back and withdraw
reasons, 补正 and certificate notes, an attachment's name, a saved filter's name and query, a user's display
name, an API token's name, 督办 messages, an indicator figure's source, a process owner's BPMN names) and in
reflected query strings; then every GET route of the app is fetched as several users: no HTML response holds
the payload raw, and each field's payload shows up escaped somewhere.

Bad input: a table of forms with wrong values: each answer is a 4xx with a message naming the problem, and the
database is unchanged afterwards.
"""
from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from engine import deploy
from engine.audit.models import AuditEvent
from engine.org.actors import SYSTEM
from engine.org.models import OrgUnit, User
from engine.runtime.models import ProcessInstance
from engine.tasks.collab_models import Attachment
from engine.tasks.models import HumanTask, TaskCandidate
from plan import dates
from plan.supervision import actions as supervision_actions
from plan.supervision.area import target_of
from tests.conftest import FIXTURES
from tests.web.conftest import csrf_of
from tests.web.test_authz_matrix import PASSWORD, World, changed, endpoints, open_world, snapshot


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    """The authorisation matrix's world: seed, bpmn/, the demo, every role logged in."""
    yield from open_world(db_url)


RAW = ("<script>alert", "<img src=x", '"><img', "onerror=alert(1)>")


def payload(tag: str, short: bool = False) -> str:
    """A script and an attribute breaker, marked with `tag` so each field can be found again."""
    breaker = '"><img src=x onerror=alert(1)>'
    return f"{tag}{breaker}" if short else f"{tag}<script>alert(1)</script>{breaker}"


def escaped(tag: str) -> tuple[str, ...]:
    """How the payload of `tag` reads once escaped (plain HTML, or inside JSON shown in a <pre>)."""
    return (f"{tag}&lt;script&gt;", f"{tag}&#34;&gt;&lt;img", f"{tag}\\&#34;&gt;&lt;img")


def login(world: World, username: str) -> FlaskClient:
    client = world.app.test_client()
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert response.status_code == 302, (username, response.status_code)
    return client


def send(client: FlaskClient, path: str, data: dict[str, Any] | None = None, *, ok: bool = True, **kw: Any) -> Any:
    form = {"csrf_token": csrf_of(client, "/inbox"), **(data or {})}
    response = client.post(path, data=form, **kw)
    if ok:
        assert response.status_code in (200, 201, 302), (path, response.status_code,
                                                          response.get_data(as_text=True)[:3000])
    return response


def open_task(world: World, instance_id: int, bpmn_id: str, kind: str = "bpmn") -> int:
    with world.session() as s:
        ids = list(s.scalars(select(HumanTask.id).where(HumanTask.instance_id == instance_id, HumanTask.kind == kind,
                                                        HumanTask.bpmn_id == bpmn_id, HumanTask.state == "ready")
                             .order_by(HumanTask.id)))
        s.rollback()
    assert ids, (instance_id, bpmn_id, kind)
    return ids[-1]


def task_of_unit(world: World, instance_id: int, unit: str) -> int:
    """The open 部门审查 whose candidate is the unit `unit`."""
    with world.session() as s:
        found = s.scalar(select(HumanTask.id).join(TaskCandidate, TaskCandidate.task_id == HumanTask.id)
                         .join(OrgUnit, OrgUnit.id == TaskCandidate.org_unit_id)
                         .where(HumanTask.instance_id == instance_id, HumanTask.bpmn_id == "department_review",
                                HumanTask.state == "ready", OrgUnit.code == unit))
        s.rollback()
    assert found is not None, unit
    return found


XSS_BPMN_NAMES = ("B01", "B02")  # the process's and its user task's names, as a process owner would type them


def deploy_names(world: World) -> None:
    """A process owner's BPMN with markup in the process and task names (deploy runs the same checks as the modeller)."""
    text = (FIXTURES / "good" / "minimal.bpmn").read_text(encoding="utf-8")
    text = re.sub(r'(id|processRef)="minimal"', r'\1="xss_names"', text)
    text = text.replace('name="最小审批流程"', f'name="{_attr(payload("B01"))}"')
    text = re.sub(r'(<bpmn:userTask id="approve" name=")[^"]*"', lambda m: m.group(1) + _attr(payload("B02")) + '"', text)
    forms = FIXTURES / "good" / "forms"
    files = {"xss_names.bpmn": text.encode(), "approve.schema.json": (forms / "approve.schema.json").read_bytes(),
             "approve.uischema.json": (forms / "approve.uischema.json").read_bytes()}
    with world.session() as s:
        deploy.deploy(s, files, actor=SYSTEM)
        s.commit()


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def test_free_text_comes_back_escaped_everywhere(world: World) -> None:
    applicant, admin = world.clients["applicant"], world.clients["admin"]
    window, colleague = login(world, "maxiaoyan"), login(world, "gaowenjing")
    fgj, fgj_2, zrzyj = world.clients["reviewer"], login(world, "pengtao"), login(world, "luocheng")

    # 发起 with a title and business key, then the application with markup in every string.
    started = send(applicant, "/processes/parallel_approval/start", {"title": payload("T01"),
                                                                     "business_key": payload("T02")})
    with world.session() as s:
        found = s.scalar(select(ProcessInstance.id).where(ProcessInstance.business_key == payload("T02")))
        s.rollback()
    assert found is not None and started.headers["Location"].startswith("/tasks/")
    iid = found
    submit = open_task(world, iid, "submit_application")
    send(applicant, f"/tasks/{submit}/comments", {"body": payload("C01")})
    send(applicant, f"/tasks/{submit}/attachments", {"file": (io.BytesIO(b"x"), payload("A01") + ".txt")},
         content_type="multipart/form-data")
    send(applicant, f"/tasks/{submit}/complete", {
        "f/project_code": "XSS-2025-001", "f/project_name": payload("F01"), "f/project_type": "service",
        "f/investment": "8000", "f/stage": "land_planning", "f/applicant_unit": payload("F02"),
        "f/contact_name": payload("F03", short=True), "f/contact_phone": "13806425566",
        "f/materials": "application_form", "f/application_note": payload("F04"), "opinion": payload("O01")})

    # 一窗受理: urged and CC'd by the applicant, transferred, delegated and answered, then accepted.
    accept = open_task(world, iid, "window_accept")
    send(applicant, f"/tasks/{accept}/urge", {"message": payload("N01")})
    send(applicant, f"/tasks/{accept}/cc", {"usernames": "gaowenjing", "note": payload("N02")})
    send(window, f"/tasks/{accept}/claim")
    send(window, f"/tasks/{accept}/transfer", {"to_username": "gaowenjing", "note": payload("N03")})
    send(colleague, f"/tasks/{accept}/delegate", {"to_username": "maxiaoyan", "note": payload("N04")})
    send(window, f"/tasks/{accept}/resolve", {"opinion": payload("N05")})
    send(colleague, f"/tasks/{accept}/complete", {"f/acceptance": "accept", "f/window_opinion": payload("F05"),
                                                  "opinion": payload("O02")})

    # 部门审查: 发改局 with a co-signer before it; 自然资源局 asks for 补正.
    review_fgj, review_zr = task_of_unit(world, iid, "fgj"), task_of_unit(world, iid, "zrzyj")
    send(fgj, f"/tasks/{review_fgj}/claim")
    send(fgj, f"/tasks/{review_fgj}/cosigners", {"usernames": "pengtao", "position": "before", "note": payload("N06")})
    cosign = open_task(world, iid, "department_review", kind="cosign")
    send(fgj_2, f"/tasks/{cosign}/complete", {"opinion": payload("O03")})
    send(fgj, f"/tasks/{review_fgj}/complete", {"f/review_decision": "approve", "f/review_opinion": payload("F06")})
    send(zrzyj, f"/tasks/{review_zr}/complete", {"f/review_decision": "supplement", "f/review_opinion": payload("F07"),
                                                 "f/supplement_materials": payload("F08")})

    # 补正, withdrawn with a reason (the department has not acted yet) and sent again; approved; 联合出证.
    supplement = open_task(world, iid, "submit_supplement")
    send(applicant, f"/tasks/{supplement}/complete", {"f/supplement_reply": payload("F09"),
                                                      "f/supplement_pledge": "true"})
    send(applicant, f"/tasks/{supplement}/withdraw", {"reason": payload("N07")})
    supplement = open_task(world, iid, "submit_supplement")
    send(applicant, f"/tasks/{supplement}/complete", {"f/supplement_reply": payload("F10"),
                                                      "f/supplement_pledge": "true"})
    send(zrzyj, f"/tasks/{task_of_unit(world, iid, 'zrzyj')}/complete", {"f/review_decision": "approve",
                                                                         "f/review_opinion": "同意"})
    certificate = open_task(world, iid, "issue_certificate")
    send(window, f"/tasks/{certificate}/complete", {"f/issued_on": dates.today().isoformat(),  # 出证日期: not before
                                                    "f/certificate_note": payload("F11")})  # the application

    # A second application sent back by the window with a reason.
    send(applicant, "/processes/parallel_approval/start", {"title": "退回用", "business_key": "XSS-BACK"})
    with world.session() as s:
        back_id = s.scalar(select(ProcessInstance.id).where(ProcessInstance.business_key == "XSS-BACK"))
        s.rollback()
    assert back_id is not None
    send(applicant, f"/tasks/{open_task(world, back_id, 'submit_application')}/complete", {
        "f/project_code": "XSS-2025-002", "f/project_name": "退回用", "f/project_type": "service", "f/investment": "1",
        "f/stage": "land_planning", "f/applicant_unit": "x", "f/contact_name": "x", "f/contact_phone": "13806425566",
        "f/materials": "application_form"})
    back_accept = open_task(world, back_id, "window_accept")
    send(window, f"/tasks/{back_accept}/claim")
    send(window, f"/tasks/{back_accept}/send-back", {"to": "previous", "reason": payload("N08")})

    # Names users give things: a saved filter, a user, an API token; 督办 messages; an indicator's source.
    send(applicant, "/inbox/filters", {"list": "index", "name": payload("S01"), "q": payload("S02")})
    send(admin, "/admin/users", {"username": "xss_user", "display_name": payload("U01"), "password": "xss-Passw0rd-1",
                                 "email": "xss_user@jiaozhou.test"})  # a hostile address is refused (below)
    send(applicant, "/admin/tokens", {"name": payload("K01")})
    urged = open_task(world, back_id, 'submit_application')
    with world.session() as s:  # the versions a 督办 page listing the task would carry (plan.stale)
        deadline_seen = supervision_actions.deadline_version(target_of(s, "task", urged))
        s.rollback()
    send(admin, f"/supervision/task/{urged}/urge",
         {"message": payload("V01"), "due_date": "2030-01-01", "seen": deadline_seen})
    send(admin, f"/supervision/task/{urged}/escalate",
         {"note": payload("V02"), "seen": supervision_actions.level_version(0)})
    entry_form = world.clients["data_officer"].get("/dashboard/data?period=2025-08").get_data(as_text=True)
    seen = re.search(r'name="seen" value="(\w+)"', entry_form)
    assert seen is not None
    send(world.clients["data_officer"], "/dashboard/data", {"period": "2025-08", "value:gdp_growth": "5.1",
                                                            "source:gdp_growth": payload("D01"), "seen": seen.group(1)})
    deploy_names(world)
    xss_process = send(admin, "/processes/xss_names/start", {"title": "流程名称"})
    assert xss_process.status_code == 302

    # Every GET route, as the people who see these things, plus reflected query strings.
    with world.session() as s:
        event = s.scalar(select(AuditEvent.id).where(AuditEvent.stream == f"instance:{iid}")
                         .order_by(AuditEvent.id.desc()))
        attachment = s.scalar(select(Attachment.id).where(Attachment.instance_id == iid))
        user_id = s.scalar(select(User.id).where(User.username == "xss_user"))
        s.rollback()
    values = {"task_id": accept, "instance_id": iid, "attachment_id": attachment, "event_id": event,
              "key": "parallel_approval", "process_key": "parallel_approval", "user_id": user_id,
              "code": "gdp_growth", "fmt": "json", "name": "investment"}
    pages: list[str] = []
    for rule in endpoints(world.app).values():
        if "GET" not in (rule.methods or ()) or not set(rule.arguments) <= set(values):
            continue
        pages.append(rule.build({k: values[k] for k in rule.arguments}, append_unknown=False)[1])
    pages += [f"/tasks/{t}" for t in (submit, review_fgj, cosign, supplement, certificate, back_accept)]
    pages += [f"/inbox?q={quote(payload('R01'))}", f"/inbox/done?q={quote(payload('R02'))}",
              f"/instances?q={quote(payload('R03'))}", f"/audit?actor={quote(payload('R04'))}",
              f"/inbox/cc?q={quote(payload('R05'))}", f"/login?next={quote(payload('R06'))}",
              f"/dashboard?period={quote(payload('R07'))}", "/processes/xss_names/start"]
    readers = {"applicant": applicant, "window": window, "colleague": colleague, "admin": admin,
               "auditor": world.clients["auditor"], "city_leader": world.clients["city_leader"],
               "data_officer": world.clients["data_officer"], "anonymous": world.app.test_client()}
    seen: dict[str, str] = {}
    raw: list[str] = []
    for who, client in readers.items():
        for path in pages:
            response = client.get(path)
            body = response.get_data()  # read and close streamed bodies (the CSV export) before the next request
            response.close()
            if not response.mimetype.startswith("text/html"):
                continue
            html = body.decode()
            raw += [f"{who} GET {path}: raw {r!r}" for r in RAW if r.lower() in html.lower()]
            for tag in re.findall(r"\b([A-Z]\d\d)(?:&lt;script&gt;|\\?&#34;&gt;&lt;img)", html):
                seen.setdefault(tag, f"{who} {path}")
    # The login form keeps a wrong username; a refused start form keeps the title.
    anonymous = readers["anonymous"]
    refused_login = anonymous.post("/login", data={"username": payload("L01"), "password": "x",
                                                   "csrf_token": csrf_of(anonymous)})
    refused_start = send(applicant, "/processes/parallel_approval/start", {"title": payload("L02") + "x" * 300},
                         ok=False)
    for name, response in (("login", refused_login), ("start", refused_start)):
        html = response.get_data(as_text=True)
        raw += [f"refused {name}: raw {r!r}" for r in RAW if r.lower() in html.lower()]
        seen.update({tag: name for tag in ("L01", "L02") if any(e in html for e in escaped(tag))})
    assert raw == [], "\n".join(raw)
    # Not shown at all: a saved filter's query (S02: only its name is listed); a hostile e-mail address (U02) is
    # refused when the user is added (below). Attachment
    # names are cleaned when stored (below).
    expected = {"T01", "T02", "C01", "F01", "F02", "F03", "F04", "F05", "F06", "F07", "F08", "F09", "F10",
                "F11", "O01", "O02", "O03", "N01", "N02", "N03", "N04", "N05", "N06", "N07", "N08", "S01",
                "U01", "K01", "V01", "V02", "D01", "B01", "B02", "R01", "R02", "R03", "R04", "R05", "R07",
                "L01", "L02"}
    assert expected - set(seen) == set(), f"payloads never shown (escaped) on any page: {sorted(expected - set(seen))}"
    with world.session() as s:
        stored = s.scalar(select(Attachment.name).where(Attachment.id == attachment))
        s.rollback()
    assert stored and not set(stored) & set('<>"/'), stored  # cleaned: the path and markup characters are gone
    assert f">{stored}</a>" in applicant.get(f"/tasks/{submit}").get_data(as_text=True)


# --- bad input -------------------------------------------------------------------------------------------------

def test_forms_refuse_bad_input_with_a_message_and_change_nothing(world: World) -> None:
    applicant, admin = world.clients["applicant"], world.clients["admin"]
    window = login(world, "maxiaoyan")
    send(applicant, "/processes/parallel_approval/start", {"title": "坏输入", "business_key": "BAD-1"})
    with world.session() as s:
        iid = s.scalar(select(ProcessInstance.id).where(ProcessInstance.business_key == "BAD-1"))
        s.rollback()
    assert iid is not None
    submit = open_task(world, iid, "submit_application")
    good = {"f/project_code": "BAD-2025-001", "f/project_name": "项目", "f/project_type": "service",
            "f/investment": "8000", "f/stage": "land_planning", "f/applicant_unit": "单位", "f/contact_name": "联系人",
            "f/contact_phone": "13806425566", "f/materials": "application_form"}
    world_task = world.ids["task"]
    cases: list[tuple[FlaskClient, str, dict[str, Any], str]] = [
        # the start page
        (applicant, "/processes/parallel_approval/start", {"title": "x" * 301}, "标题不能超过300字"),
        (applicant, "/processes/parallel_approval/start", {"business_key": "x" * 201}, "业务编号不能超过200字"),
        (applicant, "/processes/no_such_process/start", {}, "流程不存在"),
        # a task form: each wrong value named at its field
        (applicant, f"/tasks/{submit}/complete", {**good, "f/investment": "八千"}, 'id="fld-f-investment-error"'),
        (applicant, f"/tasks/{submit}/complete", {**good, "f/investment": "-5"}, 'id="fld-f-investment-error"'),
        (applicant, f"/tasks/{submit}/complete", {**good, "f/contact_phone": "12345"},
         'id="fld-f-contact_phone-error"'),
        (applicant, f"/tasks/{submit}/complete", {**good, "f/project_type": "casino"}, "fld-f-project_type"),
        (applicant, f"/tasks/{submit}/complete", {**good, "f/project_code": "<script>"},
         'id="fld-f-project_code-error"'),
        (applicant, f"/tasks/{submit}/complete", {**good, "f/project_name": ""}, 'id="fld-f-project_name-error"'),
        (applicant, f"/tasks/{submit}/complete", {**good, "f/materials": "gold"}, "fld-f-materials"),
        (applicant, f"/tasks/{submit}/complete", {**good, "f/planned_start_date": "2025-13-45"},
         'id="fld-f-planned_start_date-error"'),
        # the task page's operations
        (applicant, f"/tasks/{submit}/transfer", {"to_username": "nobody-here"}, "nobody-here"),
        (applicant, f"/tasks/{submit}/transfer", {"to_username": "gupeng"}, "不能转办给自己"),
        (applicant, f"/tasks/{submit}/delegate", {"to_username": ""}, "用户"),
        (applicant, f"/tasks/{submit}/cosigners", {"usernames": "", "position": "before"}, "请选择加签人"),
        (applicant, f"/tasks/{submit}/cosigners", {"usernames": "jiangtao", "position": "sideways"}, "加签位置"),
        (applicant, f"/tasks/{submit}/send-back", {"to": "somewhere", "reason": "x"}, "退回目标无效"),
        (applicant, f"/tasks/{submit}/send-back", {"to": "previous", "reason": ""}, "退回理由"),
        (applicant, f"/tasks/{submit}/comments", {"body": "   "}, "评论"),
        (applicant, f"/tasks/{submit}/cc", {"usernames": "nobody-here"}, "nobody-here"),
        (applicant, f"/tasks/{submit}/attachments", {}, "请选择文件"),
        (applicant, f"/tasks/{submit}/resolve", {"opinion": "x"}, "委派"),
        (window, f"/tasks/{world_task}/urge", {"message": "x"}, "任务不存在"),  # not theirs to see: as if absent
        # the inbox: saved filters and bulk actions
        (applicant, "/inbox/filters", {"list": "index", "name": "", "q": "x"}, "请填写筛选名称"),
        (applicant, "/inbox/filters", {"list": "index", "name": "空的"}, "当前没有筛选条件"),
        (applicant, "/inbox/bulk", {"ids": submit, "action": "transfer", "to_username": ""}, "请填写转办给谁"),
        # admin: users and tokens
        (admin, "/admin/users", {"username": "new_user", "display_name": "x", "password": "short"}, "密码至少8位"),
        (admin, "/admin/users", {"username": "<b>bad name</b>", "display_name": "x", "password": "long-Passw0rd"},
         "用户名只能包含"),
        (admin, "/admin/users", {"username": "gupeng", "display_name": "x", "password": "long-Passw0rd"}, "用户已存在"),
        (admin, "/admin/users", {"username": "new_user", "display_name": "x", "password": "long-Passw0rd",
                                 "email": payload("U02", short=True)}, "电子邮箱格式不正确"),
        (admin, "/admin/users", {"username": "new_user", "display_name": "x", "password": "long-Passw0rd",
                                 "units": "no_such_unit"}, "单位不存在"),
        (admin, "/admin/tokens", {"name": ""}, "令牌名称不能为空"),
        (admin, "/admin/tokens", {"name": "x", "username": "nobody-here"}, "nobody-here"),
        (admin, "/admin/tokens", {"name": "x", "expires_in_days": "3650"}, "有效期须为 1 到 365 天"),
        # reports, 督办, indicator figures
        (world.clients["leader"], "/reports", {"kind": "weekly", "day": "yesterday"}, "日期格式应为"),
        (world.clients["leader"], "/reports", {"kind": "yearly", "day": "2025-09-01"}, "报表类型须为"),
        (world.clients["leader"], "/reports", {"kind": "monthly", "day": "9999-12-05"}, "超出范围"),
        (admin, f"/supervision/task/{world_task}/extension", {"decision": "maybe"}, "请选择批准或不批准"),
        (admin, f"/supervision/task/{world_task}/extension", {"decision": "grant", "due_date": "2025/09/01"},
         "日期格式应为"),
        (admin, f"/supervision/task/{world_task}/extension",
         {"decision": "grant", "due_date": "9999-12-31", "opinion": "同意"}, "2000–2100"),
        (admin, f"/supervision/task/{world_task}/urge", {"message": "x", "due_date": "9999-12-31"}, "2000–2100"),
        (admin, f"/supervision/nothing/{world_task}/urge", {"message": "x"}, "未知的督办对象"),
        (admin, f"/supervision/task/{world_task}/reassign", {"to_username": "nobody-here"}, "nobody-here"),
        (world.clients["data_officer"], "/dashboard/data", {"period": "2025-08", "value:gdp_growth": "很多"},
         "第1行 数值: 不是数字"),
        (world.clients["data_officer"], "/dashboard/data", {"period": "2025-99", "value:gdp_growth": "1"}, "2025-99"),
        (world.clients["data_officer"], "/dashboard/data/upload", {"period": "2025-08"}, "请选择 XLSX 或 CSV 文件"),
        (world.clients["data_officer"], "/dashboard/data/confirm", {"period": "2025-08", "payload": "!!",
                                                                    "sha256": "x"}, "上传内容已损坏"),
    ]
    before = snapshot(world)
    wrong: list[str] = []
    for client, path, data, message in cases:
        response = send(client, path, data, ok=False)
        body = response.get_data(as_text=True)
        if response.headers.get("Location"):  # a redirect back with a flash: follow it to read the message
            body = client.get(response.headers["Location"]).get_data(as_text=True)
            wrong += [] if response.status_code in (302, 303) else [f"{path}: {response.status_code}"]
        elif not 400 <= response.status_code < 500:
            wrong.append(f"{path} {data}: {response.status_code}, expected a 4xx")
        if message not in body:
            wrong.append(f"{path} {data}: no {message!r} in the answer ({response.status_code})")
    assert wrong == [], "\n".join(wrong)
    assert changed(before, snapshot(world)) == [], "a refused form changed the database"
    # The refused form kept what was typed.
    kept = send(applicant, f"/tasks/{submit}/complete", {**good, "f/contact_phone": "12345"}, ok=False)
    assert kept.status_code == 422 and 'value="12345"' in kept.get_data(as_text=True)
