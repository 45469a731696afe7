"""管理: admins only; users (create, deactivate), org units with leaders, incidents; API tokens."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from engine import clock, org, tasks
from engine.audit.models import AuditEvent
from engine.org.actors import actor_for
from engine.org.models import OrgUnit, User
from engine.org.token_models import ApiToken
from engine.runtime.models import Incident
from engine.tasks.models import HumanTask
from plan.ledger.models import LedgerIssue
from tests.web.conftest import csrf_of, form_at
from tests.web.flows import Api, db, deploy_good, post, started_review, token_for, user_id

Login = Callable[[str], FlaskClient]


def test_staff_get_403_admins_see_users_units_and_incidents(app: Flask, login: Login) -> None:
    deploy_good(app)
    row = started_review(app, login("applicant"))
    with db(app) as s:
        s.add(Incident(instance_id=row.id, bpmn_id="compute_fee", kind="script_error", message="ZeroDivisionError"))
        org.add_unit(s, code="jdj", name="胶东街道", kind="town")
        org.add_user(s, username="jd_head", display_name="胶东主任", unit_codes=["jdj"], is_head=True)
    for who in ("fg", "applicant"):
        staff = login(who)
        assert staff.get("/admin").status_code == 403, who
        assert post(staff, "/admin/users", {"username": "x", "display_name": "x", "password": "long-enough-1"},
                    page="/processes").status_code == 403
    html = login("admin").get("/admin").get_data(as_text=True)
    assert "发改王五" in html and "胶东街道" in html and "胶东主任" in html  # a unit with its leader
    assert "ZeroDivisionError" in html and f"/instances/{row.id}" in html


def test_admin_creates_and_deactivates_users(app: Flask, login: Login) -> None:
    admin = login("admin")
    short = post(admin, "/admin/users", {"username": "li", "display_name": "李", "password": "short"}, page="/admin")
    assert short.status_code == 422
    created = post(admin, "/admin/users", {"username": "li", "display_name": "李明", "password": "Secret-pass-1",
                                           "units": ["fgj"], "roles": ["reviewer"]}, page="/admin")
    assert created.status_code == 302
    with db(app) as s:
        user = s.scalar(select(User).where(User.username == "li"))
        assert user is not None and user.password_hash and "Secret-pass-1" not in user.password_hash
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.stream == f"user:{user.id}")))
        assert [e.action for e in events] == ["org.user.add"] and "Secret" not in str(events[0].after)
    duplicate = post(admin, "/admin/users", {"username": "li", "display_name": "x", "password": "Secret-pass-2"},
                     page="/admin")
    assert duplicate.status_code == 409
    li = app.test_client()
    assert li.post("/login", data={"username": "li", "password": "Secret-pass-1",
                                   "csrf_token": csrf_of(li)}).status_code == 302
    assert "李明" in li.get("/processes").get_data(as_text=True)

    li_id = user_id(app, "li")
    fg = login("fg")
    assert post(fg, f"/admin/users/{li_id}/deactivate", page="/processes").status_code == 403
    assert post(admin, f"/admin/users/{user_id(app, 'admin')}/deactivate", page="/admin").status_code == 422
    assert post(admin, f"/admin/users/{li_id}/deactivate", page="/admin").status_code == 302
    with db(app) as s:
        assert s.scalar(select(User.is_active).where(User.id == li_id)) is False
    assert li.get("/processes").status_code == 302  # the session of a deactivated user ends
    again = app.test_client()
    assert again.post("/login", data={"username": "li", "password": "Secret-pass-1",
                                      "csrf_token": csrf_of(again)}).status_code == 401


def test_deactivating_a_leader_on_the_page_hands_over_their_items_and_says_so(app: Flask, login: Login) -> None:
    """boss is 发改's responsible leader and an open issue's; fg takes over. The page says where it went."""
    boss, fg = user_id(app, "boss"), user_id(app, "fg")
    with db(app) as s:
        unit = s.scalar(select(OrgUnit).where(OrgUnit.code == "fgj"))
        assert unit is not None
        unit.responsible_leader_id = boss
        issue = LedgerIssue(code="WT-2025-0001", title="企业用电增容迟迟未落实", unit_id=unit.id, source="manual",
                            responsible_leader_id=boss, status="in_progress", created_at=clock.now())
        s.add(issue)
        s.flush()
        issue_id, unit_id = issue.id, unit.id
    admin = login("admin")
    answer = admin.post(f"/admin/users/{boss}/deactivate", data={"csrf_token": csrf_of(admin, "/admin"),
                                                                 "successor": "fg"}, follow_redirects=True)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "1 项问题、招商线索或项目的责任领导已移交" in html
    assert "1 个单位的负责人或责任领导已取消" in html
    with db(app) as s:
        assert s.scalar(select(LedgerIssue.responsible_leader_id).where(LedgerIssue.id == issue_id)) == fg
        assert s.scalar(select(OrgUnit.responsible_leader_id).where(OrgUnit.id == unit_id)) is None


def _new_token(html: str) -> str:
    match = re.search(r'<pre class="token">(jzf_[\w-]+)</pre>', html)
    assert match is not None
    return match.group(1)


def test_tokens_are_shown_once_stored_hashed_and_revocable(app: Flask, login: Login) -> None:
    fg = login("fg")
    page = fg.get("/admin/tokens")
    assert page.status_code == 200 and "没有令牌" in page.get_data(as_text=True)
    made = post(fg, "/admin/tokens", {"name": "统计接口"}, page="/admin/tokens")
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    plaintext = _new_token(made.get_data(as_text=True))
    assert plaintext not in fg.get("/admin/tokens").get_data(as_text=True)  # never shown again
    with db(app) as s:
        token = s.scalar(select(ApiToken))
        assert token is not None and token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
        audit_text = str(s.scalars(select(AuditEvent.after).where(AuditEvent.action == "api_token.issue")).all())
        assert plaintext not in audit_text and token.token_hash not in audit_text
        token_id = token.id
    assert Api(app, plaintext).get("/api/tasks").status_code == 200

    # Staff make tokens only for themselves and revoke only their own.
    assert post(fg, "/admin/tokens", {"name": "冒名", "username": "boss"}, page="/admin/tokens").status_code == 403
    st = login("st")  # another's token answers as one that does not exist (as notifications, filters, 抄送 do)
    refused = post(st, f"/admin/tokens/{token_id}/revoke", page="/admin/tokens")
    absent = post(st, f"/admin/tokens/{token_id + 1000}/revoke", page="/admin/tokens")
    assert (refused.status_code, absent.status_code) == (404, 404)
    assert "令牌不存在" in refused.get_data(as_text=True) and "令牌不存在" in absent.get_data(as_text=True)
    assert "统计接口" not in st.get("/admin/tokens").get_data(as_text=True)
    assert Api(app, plaintext).get("/api/tasks").status_code == 200

    admin = login("admin")
    assert "统计接口" in admin.get("/admin/tokens").get_data(as_text=True)
    for_boss = post(admin, "/admin/tokens", {"name": "领导看板", "username": "boss"}, page="/admin/tokens")
    assert for_boss.status_code == 201
    boss_api = Api(app, _new_token(for_boss.get_data(as_text=True)))
    assert boss_api.get("/api/tasks").status_code == 200
    assert post(admin, f"/admin/tokens/{token_id}/revoke", page="/admin/tokens").status_code == 302
    assert Api(app, plaintext).get("/api/tasks").status_code == 401
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "api_token.revoke")) == 1


def test_a_token_form_sent_twice_issues_one_token_and_never_shows_its_secret_again(app: Flask, login: Login) -> None:
    """创建令牌 answers with the secret (a page, not a redirect): a double click or a refresh issued a second valid
    token whose secret nobody saw. The form carries `once`: the second copy issues nothing and says which token the
    form issued (its name and prefix, to revoke it if the secret was lost), not the secret."""
    fg = login("fg")
    fields = {**form_at(fg, "/admin/tokens", "/admin/tokens"), "name": "统计接口"}
    assert fields.get("once")
    first = fg.post("/admin/tokens", data=fields)
    assert first.status_code == 201
    plaintext = _new_token(first.get_data(as_text=True))
    again = fg.post("/admin/tokens", data=fields, follow_redirects=True)
    text = again.get_data(as_text=True)
    assert again.status_code == 200 and plaintext not in text and 'class="token"' not in text
    assert "统计接口" in text and plaintext[:12] in text and "已签发" in text
    assert plaintext not in (again.history[0].headers.get("Location") or "")
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ApiToken)) == 1
        assert plaintext not in str(s.scalars(select(AuditEvent.after)).all())
    other = fg.post("/admin/tokens", data={**fields, "name": "另一个"})  # the same page used again for another
    assert other.status_code == 409 and "此表单已提交过" in other.get_data(as_text=True)
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ApiToken)) == 1


def test_a_service_issued_token_and_an_empty_name(app: Flask, login: Login) -> None:
    assert Api(app, token_for(app, "boss")).get("/api/processes").status_code == 200
    fg = login("fg")
    assert post(fg, "/admin/tokens", {"name": "  "}, page="/admin/tokens").status_code == 422


def test_tokens_expire_as_chosen_and_the_list_shows_when(app: Flask, login: Login) -> None:
    fg = login("fg")
    page = fg.get("/admin/tokens").get_data(as_text=True)
    assert 'name="expires_in_days"' in page and 'value="90" selected' in page and 'value="400"' not in page
    assert post(fg, "/admin/tokens", {"name": "默认"}, page="/admin/tokens").status_code == 201
    assert post(fg, "/admin/tokens", {"name": "一个月", "expires_in_days": "30"}, page="/admin/tokens").status_code \
        == 201
    too_long = post(fg, "/admin/tokens", {"name": "两年", "expires_in_days": "730"}, page="/admin/tokens")
    assert too_long.status_code == 422 and "有效期须为 1 到 365 天" in too_long.get_data(as_text=True)
    with db(app) as s:
        lives = {t.name: t.expires_at - t.created_at for t in s.scalars(select(ApiToken))}
        assert lives == {"默认": timedelta(days=90), "一个月": timedelta(days=30)}
        s.execute(update(ApiToken).where(ApiToken.name == "一个月").values(expires_at=clock.now() - timedelta(days=1)))
    html = fg.get("/admin/tokens").get_data(as_text=True)
    assert "到期时间" in html and html.count("已过期") == 1
    row = html[html.index("<td>一个月</td>"):]
    assert row.index("已过期") < row.index("</tr>")


def test_an_admin_may_not_issue_a_token_for_another_admin(app: Flask, login: Login) -> None:
    with db(app) as s:
        org.add_user(s, username="admin2", display_name="另一位管理员", is_admin=True)
    admin = login("admin")
    page = admin.get("/admin/tokens").get_data(as_text=True)
    assert 'value="boss"' in page and 'value="admin"' in page and 'value="admin2"' not in page  # not offered
    refused = post(admin, "/admin/tokens", {"name": "冒名", "username": "admin2"}, page="/admin/tokens")
    assert refused.status_code == 403 and "所属用户不能是其他管理员: admin2" in refused.get_data(as_text=True)
    assert post(admin, "/admin/tokens", {"name": "自己", "username": "admin"}, page="/admin/tokens").status_code == 201
    assert post(admin, "/admin/tokens", {"name": "看板", "username": "boss"}, page="/admin/tokens").status_code == 201
    with db(app) as s:
        assert sorted(s.scalars(select(ApiToken.name))) == ["看板", "自己"]


def _accept_held_by_window(app: Flask, login: Login) -> int:
    deploy_good(app)
    row = started_review(app, login("applicant"))
    with db(app) as s:
        submit = s.scalar(select(HumanTask.id).where(HumanTask.instance_id == row.id,
                                                     HumanTask.bpmn_id == "submit_application"))
        assert submit is not None
        tasks.complete(s, task_id=submit, actor=actor_for(s, "applicant"), data={
            "project_name": "胶州智能家电产业园", "investment": 6000.5, "project_type": "industrial"})
        s.commit()
        accept = s.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == "accept",
                                                  HumanTask.state == "ready"))
        assert accept is not None
        tasks.claim(s, task_id=accept.id, actor=actor_for(s, "window"))
        return accept.id


def test_deactivating_hands_over_the_persons_tasks_and_says_how_many(app: Flask, login: Login) -> None:
    accept = _accept_held_by_window(app, login)
    window = login("window")
    token = Api(app, token_for(app, "window"))
    assert token.get("/api/tasks").status_code == 200
    admin = login("admin")
    assert 'name="successor"' in admin.get("/admin").get_data(as_text=True)
    done = post(admin, f"/admin/users/{user_id(app, 'window')}/deactivate", page="/admin")
    assert done.status_code == 302
    page = admin.get("/admin").get_data(as_text=True)
    assert "已停用用户 window" in page and "1 项待办已移交：退回候选人或委派人" in page
    with db(app) as s:
        task = s.get(HumanTask, accept)
        assert task is not None and task.assignee_id is None and task.state == "ready"
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "task.return_to_candidates", AuditEvent.object_id == str(accept))) == 1
    assert window.get("/inbox").status_code == 302  # the logged-in session is refused at its next request
    assert token.get("/api/tasks").status_code == 401  # and so is the API token


def test_a_named_successor_receives_the_tasks_in_english_too(app: Flask, login: Login) -> None:
    accept = _accept_held_by_window(app, login)
    admin = login("admin")
    admin.get("/lang/en")
    done = post(admin, f"/admin/users/{user_id(app, 'window')}/deactivate", {"successor": "fg"}, page="/admin")
    assert done.status_code == 302
    page = admin.get("/admin").get_data(as_text=True)
    assert "1 task(s) handed over to fg" in page
    fg = user_id(app, "fg")
    with db(app) as s:
        task = s.get(HumanTask, accept)
        assert task is not None and task.assignee_id == fg


def _issue_handled_by_window(app: Flask) -> int:
    with db(app) as s:
        issue = LedgerIssue(code="WT-2025-0001", title="企业用电增容迟迟未落实", status="in_progress",
                            unit_id=s.scalar(select(OrgUnit.id).where(OrgUnit.code == "window")),
                            handler_id=s.scalar(select(User.id).where(User.username == "window")))
        s.add(issue)
        s.commit()
        return issue.id


def test_the_flash_counts_the_persons_plan_items_with_their_tasks(app: Flask, login: Login) -> None:
    accept = _accept_held_by_window(app, login)
    issue = _issue_handled_by_window(app)
    admin = login("admin")
    done = post(admin, f"/admin/users/{user_id(app, 'window')}/deactivate", {"successor": "fg"}, page="/admin")
    assert done.status_code == 302
    assert "2 项待办已移交给 fg" in admin.get("/admin").get_data(as_text=True)  # the task and the issue
    fg = user_id(app, "fg")
    with db(app) as s:
        found = s.get(LedgerIssue, issue)
        task = s.get(HumanTask, accept)
        assert found is not None and task is not None and found.handler_id == task.assignee_id == fg


def test_without_a_successor_the_page_says_where_the_plan_items_went(app: Flask, login: Login) -> None:
    issue = _issue_handled_by_window(app)
    admin = login("admin")
    admin.get("/lang/en")
    done = post(admin, f"/admin/users/{user_id(app, 'window')}/deactivate", page="/admin")
    assert done.status_code == 302
    assert "1 issue(s) or lead(s) handed over" in admin.get("/admin").get_data(as_text=True)
    with db(app) as s:
        found = s.get(LedgerIssue, issue)
        assert found is not None and found.handler_id is None  # the unit 窗口 has no head: back to the unit


def test_a_bad_successor_or_a_non_admin_changes_nothing(app: Flask, login: Login) -> None:
    accept = _accept_held_by_window(app, login)
    window_id = user_id(app, "window")
    for who in ("fg", "applicant"):  # hostile: no admin right, even naming themself as the successor
        assert post(login(who), f"/admin/users/{window_id}/deactivate", {"successor": who}).status_code == 403
    admin = login("admin")
    for bad, status in (("nobody", 404), ("window", 422), ("x\x00y", 400), ("长" * 300, 404)):
        refused = post(admin, f"/admin/users/{window_id}/deactivate", {"successor": bad}, page="/admin")
        assert refused.status_code == status, bad
        assert ("接手人" if status != 400 else "NUL") in refused.get_data(as_text=True), bad
    with db(app) as s:
        assert s.scalar(select(User.is_active).where(User.id == window_id)) is True
        task = s.get(HumanTask, accept)
        assert task is not None and task.assignee_id == window_id
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.stream == f"user:{window_id}", AuditEvent.action == "org.user.deactivate")) == 0


def test_a_display_name_too_long_or_with_a_bidi_override_is_refused_naming_the_field(app: Flask, login: Login) -> None:
    """Was: a 5,000-character name answered PostgreSQL's generic "invalid value" (naming no field) and was kept whole
    on SQLite; "\u202e" + a name was kept and shown reversed in every list."""
    admin = login("admin")
    for name in ("张" * 5000, "\u202e九八七", "李\x1b[31m明"):
        refused = post(admin, "/admin/users", {"username": "li", "display_name": name, "password": "Secret-pass-1"},
                       page="/admin")
        assert refused.status_code == 422 and "姓名（显示名）" in refused.get_data(as_text=True), name[:9]
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(User).where(User.username == "li")) == 0
