"""待办 / 已办 / 我发起的 / 抄送我的: filters, keyset pages, counts, saved filters and bulk actions."""
from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from flask.testing import FlaskClient
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, tasks
from engine.errors import EngineError
from engine.org.actors import actor_for
from engine.org.models import Role, User
from engine.tasks import collab, inbox, taskview
from engine.tasks.collab_models import Comment
from engine.tasks.models import HumanTask, TaskCandidate
from tests.web.test_authz_existence import answer
from tests.web.test_task_page import deployed, finish, flashes, post, row, start, task_of  # noqa: F401

Login = Callable[[str], FlaskClient]


def listed(html: str) -> list[int]:
    """Task ids of a list page's rows, in order."""
    body = html[html.index("<tbody>"):html.index("</tbody>")]
    return [int(i) for i in re.findall(r'<td><span translate="no"><a href="/tasks/(\d+)">', body)]


def next_link(html: str) -> str | None:
    match = re.search(r'<a href="([^"]+)" rel="next">', html)
    return htmllib.unescape(match.group(1)) if match else None


def user_id(factory: sessionmaker[Session], username: str) -> int:
    with factory() as s:
        found = s.scalar(select(User.id).where(User.username == username))
        s.rollback()
    assert found is not None
    return found


def minimal_task(factory: sessionmaker[Session], title: str, business_key: str | None = None) -> int:
    return task_of(factory, start(factory, "minimal", title=title, business_key=business_key), "approve")


def set_due(factory: sessionmaker[Session], task_id: int, due: timedelta | None, warn: timedelta | None) -> None:
    now = clock.now()
    with factory() as s:
        s.execute(update(HumanTask).where(HumanTask.id == task_id).values(
            due_at=now + due if due is not None else None, warn_at=now + warn if warn is not None else None))
        s.commit()


@pytest.fixture
def many(deployed: sessionmaker[Session], frozen: Any) -> dict[str, Any]:  # noqa: F811
    """120 projection rows for the reviewers: ties on due_at, undated ones, mine, others', claimable, closed."""
    instance_id = start(deployed, "minimal", title="批量")
    fg, zr = user_id(deployed, "fg"), user_id(deployed, "zr")
    base = clock.now()
    with deployed() as s:
        reviewer = s.scalar(select(Role.id).where(Role.code == "reviewer"))
        for i in range(120):
            due = None if i % 6 == 0 else base + timedelta(hours=i % 13)
            task = HumanTask(instance_id=instance_id, task_guid=str(uuid4()), bpmn_id=f"step_{i % 4}",
                             name=f"任务{i:03d}", process_key="minimal", state="completed" if i % 17 == 0 else "ready",
                             assignee_id=fg if i % 5 == 0 else zr if i % 11 == 0 else None, due_at=due,
                             warn_at=due - timedelta(hours=1) if due else None, created_at=base)
            task.candidates.append(TaskCandidate(role_id=reviewer))
            s.add(task)
        s.commit()
        expected = s.execute(select(HumanTask.due_at, HumanTask.id).where(
            HumanTask.state == "ready", or_(HumanTask.assignee_id == fg, HumanTask.assignee_id.is_(None)))).all()
        s.rollback()
    order = [i for _, i in sorted(expected, key=lambda k: (k[0] is None, k[0] or base, k[1]))]
    return {"expected": order, "instance_id": instance_id}


def test_keyset_pages_have_no_gaps_and_no_duplicates(many: dict[str, Any], login: Login) -> None:
    expected = many["expected"]
    assert 60 < len(expected) < 120
    client = login("fg")
    seen: list[int] = []
    url: str | None = "/inbox"
    pages = 0
    while url:
        html = client.get(url).get_data(as_text=True)
        rows = listed(html)
        assert 0 < len(rows) <= inbox.PAGE_SIZE
        seen += rows
        url = next_link(html)
        pages += 1
        assert "offset" not in (url or "")
    assert pages == -(-len(expected) // inbox.PAGE_SIZE)
    assert seen == expected  # in due order, undated last; every task once


def test_small_pages_cross_ties_and_the_undated(many: dict[str, Any], deployed: sessionmaker[Session]) -> None:  # noqa: F811
    with deployed() as s:
        fg = actor_for(s, "fg")
        seen: list[int] = []
        after = None
        while True:
            page = inbox.todo_page(s, fg, after=after, limit=7)
            seen += [r.task.id for r in page.rows]
            if page.next_cursor is None:
                break
            after = page.next_cursor
        s.rollback()
    assert seen == many["expected"]


def test_filters_lights_and_counts(deployed: sessionmaker[Session], login: Login, frozen: Any) -> None:  # noqa: F811
    late = minimal_task(deployed, "滨海新区产业园", "JZ-2025-0088")
    near = minimal_task(deployed, "胶东临空产业园")
    calm = minimal_task(deployed, "上合示范区项目")
    set_due(deployed, late, timedelta(hours=-1), timedelta(hours=-5))
    set_due(deployed, near, timedelta(hours=2), timedelta(hours=-1))
    set_due(deployed, calm, timedelta(days=3), timedelta(days=2))
    ops = start(deployed, "web_ops", title="新材料项目")
    finish(deployed, task_of(deployed, ops, "fill"), "applicant", {})
    review = task_of(deployed, ops, "review")
    client = login("fg")

    html = client.get("/inbox").get_data(as_text=True)
    assert listed(html)[:3] == [late, near, calm]  # due first
    assert re.search(rf'<tr class="light-red">\s*<td><input type="checkbox" name="ids" value="{late}"', html)
    assert re.search(rf'<tr class="light-yellow">\s*<td><input type="checkbox" name="ids" value="{near}"', html)
    assert re.search(rf'<tr class="light-green">\s*<td><input type="checkbox" name="ids" value="{calm}"', html)
    assert re.search(r'待办\s*<span class="count"[^>]*>4</span>', html)

    def ids(query: str) -> list[int]:
        return listed(client.get(f"/inbox?{query}").get_data(as_text=True))

    assert ids("process=web_ops") == [review]
    assert ids("process=minimal") == [late, near, calm]
    assert ids("stage=review") == [review] and ids("stage=部门") == [review]  # bpmn id, or the name's start
    assert ids("due=overdue") == [late] and ids("due=warn") == [near]
    assert ids("q=0088") == [late] and ids("q=临空") == [near] and ids("q=审查") == [review]
    assert ids("q=%25") == [] and ids("due=bogus") == ids("")  # LIKE wildcards are text; unknown choices ignored
    htmx = client.get("/inbox?due=overdue", headers={"HX-Request": "true"})
    assert htmx.status_code == 200 and 'id="inbox-main"' in htmx.get_data(as_text=True)
    assert client.get("/inbox?after=garbage").status_code == 422


def test_saved_filters_are_per_user(deployed: sessionmaker[Session], login: Login) -> None:  # noqa: F811
    fg, zr = login("fg"), login("zr")
    response = post(fg, "/inbox/filters", {"name": "逾期的审批", "list": "index", "due": "overdue", "process": "minimal"})
    assert response.status_code == 302 and response.headers["Location"] == "/inbox?process=minimal&due=overdue"
    html = fg.get("/inbox").get_data(as_text=True)
    assert '<a href="/inbox?process=minimal&amp;due=overdue">逾期的审批</a>' in html
    assert "逾期的审批" not in zr.get("/inbox").get_data(as_text=True)
    post(fg, "/inbox/filters", {"name": "逾期的审批", "list": "done", "q": "园区"})  # the same name replaces it
    html = fg.get("/inbox").get_data(as_text=True)
    assert '<a href="/inbox/done?q=%E5%9B%AD%E5%8C%BA">逾期的审批</a>' in html and html.count(">逾期的审批</a>") == 1
    filter_id = int(re.search(r'action="/inbox/filters/(\d+)/delete"', html).group(1))  # type: ignore[union-attr]
    assert post(zr, f"/inbox/filters/{filter_id}/delete").status_code == 404
    assert post(fg, "/inbox/filters", {"name": " ", "list": "index", "q": "x"}).status_code == 422
    assert post(fg, "/inbox/filters", {"name": "空", "list": "index"}).status_code == 422
    assert fg.post("/inbox/filters", data={"name": "x", "list": "index", "q": "x"}).status_code == 400  # no CSRF
    assert post(fg, f"/inbox/filters/{filter_id}/delete").status_code == 302
    assert "逾期的审批" not in fg.get("/inbox").get_data(as_text=True)


def test_bulk_claim_and_transfer_show_each_result(deployed: sessionmaker[Session], login: Login) -> None:  # noqa: F811
    a, b, c, taken = (minimal_task(deployed, f"项目{i}") for i in range(4))
    with deployed() as s:
        tasks.claim(s, task_id=taken, actor=actor_for(s, "zr"))
        s.commit()
    fg = login("fg")
    assert fg.post("/inbox/bulk", data={"ids": [a, b], "action": "claim"}).status_code == 400  # no CSRF
    response = post(fg, "/inbox/bulk", {"ids": [a, b, c, taken], "action": "claim"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    results = html[html.index("bulk-results"):html.index("</section>", html.index("bulk-results"))]
    assert results.count('class="ok"') == 3 and results.count('class="failed"') == 1
    assert "此任务已由他人认领" in results and "成功 3 项，失败 1 项" in "".join(flashes(html))
    fg_id = user_id(deployed, "fg")
    assert [row(deployed, t).assignee_id for t in (a, b, c)] == [fg_id] * 3
    response = post(fg, "/inbox/bulk", {"ids": [a, b], "action": "transfer", "to_username": "st", "note": "<b>请办</b>"},
                    headers={"HX-Request": "true"})
    assert response.status_code == 200 and 'id="inbox-main"' in response.get_data(as_text=True)
    st_id = user_id(deployed, "st")
    assert row(deployed, a).assignee_id == st_id and row(deployed, b).assignee_id == st_id
    assert post(fg, "/inbox/bulk", {"ids": [c], "action": "transfer"}).status_code == 422
    response = post(fg, "/inbox/bulk", {"action": "claim"}, follow_redirects=True)
    assert "请先勾选任务" in "".join(flashes(response.get_data(as_text=True)))


def test_bulk_complete_validates_each_task(deployed: sessionmaker[Session], login: Login) -> None:  # noqa: F811
    first, second = minimal_task(deployed, "甲项目"), minimal_task(deployed, "乙项目")
    other_form = task_of(deployed, start(deployed, "form_features", who="fg"), "fill_all")
    fg = login("fg")
    response = post(fg, "/inbox/bulk", {"ids": [first, other_form, second], "action": "complete"})
    assert response.status_code == 302 and response.headers["Location"].startswith("/inbox/bulk/complete?ids=")
    hx = post(fg, "/inbox/bulk", {"ids": [first], "action": "complete"}, headers={"HX-Request": "true"})
    assert hx.status_code == 204 and hx.headers["HX-Redirect"].startswith("/inbox/bulk/complete")
    form = fg.get(response.headers["Location"]).get_data(as_text=True)
    assert 'name="f/approved"' in form and "表单不同，可能无法提交" in form and form.count('name="ids"') == 3
    response = post(fg, "/inbox/bulk", {"ids": [first, other_form, second], "action": "complete", "confirm": "1",
                                        "f/approved": "true", "f/comment": "批量同意", "opinion": "同意"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "成功 2 项，失败 1 项" in "".join(flashes(html)) and "表单数据无效" in html
    assert row(deployed, first).state == row(deployed, second).state == "completed"
    assert row(deployed, other_form).state == "ready"
    done = fg.get("/inbox/done").get_data(as_text=True)
    assert set(listed(done)) == {first, second}


def test_a_bulk_opinion_is_kept_whole_or_refused_naming_the_field(deployed: sessionmaker[Session],  # noqa: F811
                                                                   login: Login) -> None:
    """批量办理's 意见 was cut at 4,000 characters without a word — and one typed to the textarea's `maxlength` with
    line breaks arrived longer (CR LF) and lost its end. Read as the browser counted it; past the limit refused
    (422, the form again naming `opinion`), no task completed."""
    first, second = minimal_task(deployed, "甲项目"), minimal_task(deployed, "乙项目")
    fg = login("fg")
    sent = {"ids": [first, second], "action": "complete", "confirm": "1", "f/approved": "true"}
    refused = post(fg, "/inbox/bulk", {**sent, "opinion": "意" * 4001})
    assert refused.status_code == 422 and "opinion" in refused.get_data(as_text=True)
    assert row(deployed, first).state == row(deployed, second).state == "ready"
    lines = "\n".join(["同意，请按程序办理。" + "。" * 30] * 110)[:4000]
    assert post(fg, "/inbox/bulk", {**sent, "opinion": lines.replace("\n", "\r\n")}).status_code == 200
    assert row(deployed, first).state == row(deployed, second).state == "completed"
    with deployed() as s:
        kept = s.scalars(select(Comment.body).where(Comment.kind == "opinion")).all()
    assert kept == [lines, lines]


def test_bulk_form_names_only_the_tasks_the_user_may_see(deployed: sessionmaker[Session], login: Login) -> None:  # noqa: F811
    mine = minimal_task(deployed, "申请人自己的项目")  # the applicant started it: they may see its task
    hidden = [task_of(deployed, start(deployed, "minimal", who="fg", title=f"他人机密项目{i}"), "approve")
              for i in range(3)]
    with deployed() as s:
        applicant = actor_for(s, "applicant")
        taskview.get_visible(s, applicant, mine)
        for task_id in hidden:
            with pytest.raises(EngineError):
                taskview.get_visible(s, applicant, task_id)
        s.rollback()
    client = login("applicant")
    query = "&".join(f"ids={i}" for i in [mine, *hidden])
    response = client.get(f"/inbox/bulk/complete?{query}")
    assert response.status_code == 200
    html = htmllib.unescape(response.get_data(as_text=True))
    assert f'href="/tasks/{mine}"' in html and f'name="ids" value="{mine}"' in html
    assert not [t for t in hidden if f'href="/tasks/{t}"' in html or f'name="ids" value="{t}"' in html]
    assert html.count('name="ids"') == 1
    # Only others' tasks: answered like an id that does not exist.
    unknown = client.get("/inbox/bulk/complete?ids=99999999")
    only_hidden = client.get("/inbox/bulk/complete?" + "&".join(f"ids={i}" for i in hidden))
    assert only_hidden.status_code == unknown.status_code == 404
    assert answer(only_hidden, ())[2] == answer(unknown, ())[2]  # the form's token aside (its time may tick between)


def test_started_done_and_cc_lists(deployed: sessionmaker[Session], login: Login) -> None:  # noqa: F811
    ops = start(deployed, "web_ops", title="新材料项目", business_key="JZ-9")
    fill = task_of(deployed, ops, "fill")
    applicant = login("applicant")
    html = applicant.get("/inbox/started").get_data(as_text=True)
    assert "新材料项目" in html and "JZ-9" in html and f'href="/tasks/{fill}">填写申请</a>' in html
    finish(deployed, fill, "applicant", {})
    html = applicant.get("/inbox/started?stage=review").get_data(as_text=True)
    assert "部门审查" in html and "新材料项目" in html
    assert "新材料项目" not in applicant.get("/inbox/started?stage=fill").get_data(as_text=True)
    assert "新材料项目" in applicant.get("/inbox/started?q=JZ-9").get_data(as_text=True)
    assert f"/tasks/{fill}" in applicant.get("/inbox/done").get_data(as_text=True)

    review = task_of(deployed, ops, "review")
    second = row(deployed, minimal_task(deployed, "另一项目")).instance_id
    with deployed() as s:
        fg = actor_for(s, "fg")
        collab.carbon_copy(s, instance_id=ops, actor=fg, usernames=["boss"], note="请阅", task_id=review)
        collab.carbon_copy(s, instance_id=second, actor=actor_for(s, "admin"),  # boss has no part in `minimal`:
                           usernames=["boss"], note="知悉")  # out of the applicant's scope, the admin's to copy
        s.commit()
    boss = login("boss")
    html = boss.get("/inbox/cc").get_data(as_text=True)
    assert re.search(r'抄送我的\s*<span class="count"[^>]*>2</span>', html)
    assert "请阅" in html and "知悉" in html and html.count("标为已读") == 3  # two rows and "全部标为已读"
    cc_id = int(re.search(r'action="/inbox/cc/(\d+)/read"', html).group(1))  # type: ignore[union-attr]
    assert post(login("zr"), f"/inbox/cc/{cc_id}/read").status_code == 404
    assert post(boss, f"/inbox/cc/{cc_id}/read").status_code == 302
    html = boss.get("/inbox/cc?unread=1").get_data(as_text=True)
    assert re.search(r'抄送我的\s*<span class="count"[^>]*>1</span>', html) and html.count("已读</td>") == 0
    response = post(boss, "/inbox/cc/read-all", follow_redirects=True)
    assert "已将 1 条抄送标为已读" in "".join(flashes(response.get_data(as_text=True)))
    assert re.search(r'抄送我的\s*<span class="count"[^>]*>0</span>', boss.get("/inbox/cc").get_data(as_text=True))


def test_lists_in_english(deployed: sessionmaker[Session], login: Login) -> None:  # noqa: F811
    client = login("fg")
    client.get("/lang/en")
    for path, word in (("/inbox", "Inbox"), ("/inbox/done", "Done"), ("/inbox/started", "Started by me"),
                       ("/inbox/cc", "Copied to me")):
        html = client.get(path).get_data(as_text=True)
        assert word in html and "筛选" not in html, path
