"""问题台账 pages: who sees which issue, the filters, keyset paging, hostile input, the issue page, links to it."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine import clock
from engine.audit.models import AuditEvent
from engine.deadlines.models import EscalationStep
from engine.org.actors import actor_for
from engine.org.models import OrgUnit, User
from engine.tasks import access
from engine.tasks.collab_models import Comment
from engine.tasks.models import HumanTask
from engine.tasks.queries import encode_cursor
from plan.ledger.models import LedgerIssue
from plan.projects.models import Project
from tests.web import pages_world as pw
from tests.web.pages_world import (
    ADMIN,
    APPLICANT,
    AREA_HEAD,
    AUDITOR,
    CITY_LEADER,
    LEADER,
    NOW,
    REVIEWER,
    TOWN,
    PagesWorld,
    collect,
    get,
)

OPEN = ("registered", "dispatched", "accepted", "in_progress", "feedback", "returned")
STAFF = (REVIEWER, TOWN, LEADER, AREA_HEAD)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[PagesWorld]:
    yield from pw.open_world(tmp_path_factory, sqlite_template)



def codes(html: str) -> list[str]:
    return re.findall(r'<tr data-code="(WT-[^"]+)">', html)


def all_issues(world: PagesWorld) -> list[LedgerIssue]:
    with world.session() as s:
        found = list(s.scalars(select(LedgerIssue)))
        s.expunge_all()
    return sorted(found, key=lambda i: (i.due_at is None, clock.as_utc(i.due_at) if i.due_at else NOW, i.id))


def expected(world: PagesWorld, username: str) -> list[str]:
    issues = all_issues(world)
    if username in (ADMIN, CITY_LEADER, AUDITOR):
        return [i.code for i in issues]
    units = world.units_of(username)
    with world.session() as s:
        user_id = s.scalar(select(User.id).where(User.username == username))
        projects = {p.id for p in s.scalars(select(Project)) if p.responsible_unit_id in units
                    or p.location_unit_id in units or p.responsible_leader_id == user_id}
    return [i.code for i in issues if i.unit_id in units or user_id in (i.responsible_leader_id, i.handler_id)
            or i.project_id in projects]


def issue(world: PagesWorld, code: str) -> LedgerIssue:
    return next(i for i in all_issues(world) if i.code == code)


# -- who sees what ------------------------------------------------------------------------------------

@pytest.mark.parametrize("username", [ADMIN, CITY_LEADER, AUDITOR, *STAFF])
def test_each_role_lists_exactly_the_issues_in_its_reach_deadline_first(world: PagesWorld, username: str) -> None:
    listed = collect(world, username, "/ledger", codes, limit=4)
    assert listed == expected(world, username) and listed
    for code in listed[:3]:
        status, html = get(world, username, f"/ledger/{issue(world, code).id}")
        assert status == 200 and code in html


def test_staff_see_fewer_issues_than_the_city(world: PagesWorld) -> None:
    everything = set(expected(world, ADMIN))
    for username in STAFF:
        assert set(expected(world, username)) < everything, username


def test_an_applicant_may_open_neither_the_ledger_nor_an_issue(world: PagesWorld) -> None:
    some = all_issues(world)[0]
    status, html = get(world, APPLICANT, "/ledger")
    assert status == 403 and some.title not in html
    status, html = get(world, APPLICANT, f"/ledger/{some.id}")
    assert status in (403, 404) and some.title not in html and some.code not in html


@pytest.mark.parametrize("username", STAFF)
def test_another_units_issue_id_is_a_404_like_a_missing_one(world: PagesWorld, username: str) -> None:
    mine = set(expected(world, username))
    other = next(i for i in all_issues(world) if i.code not in mine)
    status, html = get(world, username, f"/ledger/{other.id}")
    assert status == 404 and other.title not in html and other.code not in html
    _missing, missing_html = get(world, username, "/ledger/999999")
    assert pw.main(html).replace(str(other.id), "N") == pw.main(missing_html).replace("999999", "N")


# -- the issue page -----------------------------------------------------------------------------------

def test_the_issue_page_shows_fields_instance_open_task_deadline_and_log(world: PagesWorld) -> None:
    with world.session() as s:
        found = s.execute(select(LedgerIssue, HumanTask).join(HumanTask, HumanTask.instance_id == LedgerIssue.instance_id)
                          .where(HumanTask.state == "ready", LedgerIssue.status.in_(OPEN))
                          .order_by(LedgerIssue.id)).first()
        assert found is not None
        row, task = found
        unit = s.get(OrgUnit, row.unit_id) if row.unit_id else None
        progress = [e.after["text"] for e in s.scalars(select(AuditEvent).where(
            AuditEvent.stream == f"ledger_issue:{row.id}", AuditEvent.action == "ledger.progress"))]
    status, html = get(world, ADMIN, f"/ledger/{row.id}")
    assert status == 200 and row.title in html and row.code in html
    assert f'data-status="{row.status}"' in html
    assert f'href="/instances/{row.instance_id}"' in html
    assert f'href="/tasks/{task.id}"' in html.split('id="open-tasks"')[1].split("</dd>")[0]
    if unit is not None:
        assert unit.name in html
    deadline = html.split('id="deadline"')[1].split("</dd>")[0]
    if row.due_at is not None:
        level = "red" if clock.as_utc(row.due_at) <= NOW else ("yellow", "green")
        assert re.search(r'class="light (\w+)"', deadline).group(1) in level  # type: ignore[union-attr]
    log = html.split('id="log"')[1].split("</section>")[0]
    assert 'data-action="ledger.register"' in log
    for text in progress:
        assert text in log


def test_an_overdue_issue_shows_its_escalation_history(world: PagesWorld) -> None:
    with world.session() as s:
        issue_id = s.scalar(select(EscalationStep.object_id).where(EscalationStep.object_type == "issue")
                            .order_by(EscalationStep.id))
        assert issue_id is not None, "the sweep took no step on any issue"
        steps = s.scalar(select(func.count()).select_from(EscalationStep).where(
            EscalationStep.object_type == "issue", EscalationStep.object_id == issue_id))
    status, html = get(world, ADMIN, f"/ledger/{issue_id}")
    history = html.split('id="supervision"')[1].split("</section>")[0]
    assert status == 200 and history.count("<li>") == steps and "红灯逾期" in history


def test_decided_extensions_are_listed(world: PagesWorld) -> None:
    with world.session() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action.like("ledger.extension.%")).order_by(AuditEvent.id))
        assert event is not None
        issue_id = int(event.object_id)
    status, html = get(world, ADMIN, f"/ledger/{issue_id}")
    section = html.split('id="extensions"')[1].split("</section>")[0]
    assert status == 200 and ("批准延期" in section or "不批准延期" in section)
    if event.after.get("requested_due_date"):
        assert event.after["requested_due_date"] in section


def test_comments_show_only_to_who_may_see_the_instance(world: PagesWorld) -> None:
    issues = all_issues(world)
    reach = {u: set(expected(world, u)) for u in (ADMIN, *STAFF)}
    with world.session() as s:  # one session at a time: SQLite's BEGIN IMMEDIATE
        commented = [i for i in issues if i.instance_id and s.scalar(
            select(Comment.id).where(Comment.instance_id == i.instance_id).limit(1))]
        assert commented, "the demo has no comment on any issue"
        checks = []
        for username, mine in reach.items():
            actor = actor_for(s, username)
            for i in commented:
                if i.code in mine:
                    body = s.scalar(select(Comment.body).where(Comment.instance_id == i.instance_id)
                                    .order_by(Comment.id))
                    checks.append((username, i.id, body, access.can_view_instance(s, actor, i.instance_id)))
    assert {allowed for *_rest, allowed in checks} == {True, False}  # both sides are exercised
    for username, issue_id, body, allowed in checks:
        status, html = get(world, username, f"/ledger/{issue_id}")
        assert status == 200
        assert ('id="comments"' in html) == allowed, (username, issue_id)
        if allowed:
            assert body.strip()[:20] in html


# -- filters ------------------------------------------------------------------------------------------

def test_filters_narrow_the_list(world: PagesWorld) -> None:
    issues = all_issues(world)
    with world.session() as s:
        units = {u.id: u.code for u in s.scalars(select(OrgUnit))}
    some = next(i for i in issues if i.unit_id)
    cases = {
        "status=in_progress": [i.code for i in issues if i.status == "in_progress"],
        "status=closed": [i.code for i in issues if i.status == "closed"],
        f"unit={units[some.unit_id]}": [i.code for i in issues if i.unit_id == some.unit_id],  # type: ignore[index]
        "source=project": [i.code for i in issues if i.source == "project"],
        "source=service_visit": [i.code for i in issues if i.source == "service_visit"],
        "overdue=yes": [i.code for i in issues if i.status in OPEN and i.due_at and clock.as_utc(i.due_at) < NOW],
        f"q={some.code}": [some.code],
        f"q={some.title[:4]}": [i.code for i in issues if some.title[:4] in i.title or some.title[:4] in i.enterprise],
        "q=_": [i.code for i in issues if "_" in i.code + i.title + i.enterprise],
        "status=in_progress&overdue=yes": [i.code for i in issues if i.status == "in_progress" and i.due_at
                                           and clock.as_utc(i.due_at) < NOW],
    }
    for query, wanted in cases.items():
        assert collect(world, ADMIN, f"/ledger?{query}", codes, limit=3) == wanted, query
    assert cases["overdue=yes"] and cases["status=closed"] and cases["source=project"]
    assert collect(world, REVIEWER, "/ledger?overdue=yes", codes) == [
        c for c in expected(world, REVIEWER) if c in cases["overdue=yes"]]


@pytest.mark.parametrize("query", ["q=%00", "q=" + "x" * 101, "status=open", "source=%00", "overdue=no",
                                   "unit=" + "u" * 81, "status=closed%00"])
def test_bad_filter_values_are_refused_with_a_4xx(world: PagesWorld, query: str) -> None:
    status, _html = get(world, ADMIN, f"/ledger?{query}")
    assert 400 <= status < 500


@pytest.mark.parametrize("cursor", ["bad", "%00", encode_cursor([1]), encode_cursor(["x", 1]),
                                    encode_cursor([None, "1"]), encode_cursor(["2025-09-01T00:00:00", True]),
                                    encode_cursor([None, None, None]), "y" * 5000])
def test_a_bad_cursor_is_a_4xx_never_a_500(world: PagesWorld, cursor: str) -> None:
    status, _html = get(world, ADMIN, f"/ledger?after={cursor}")
    assert 400 <= status < 500


def test_a_cursor_never_widens_the_reach(world: PagesWorld) -> None:
    everything = all_issues(world)
    first = everything[0]
    assert first.due_at is not None
    cursor = encode_cursor([clock.as_utc(first.due_at).isoformat(), first.id])
    status, html = get(world, REVIEWER, f"/ledger?limit=200&after={cursor}")
    assert status == 200 and codes(html) == [c for c in expected(world, REVIEWER) if c != first.code]
    undated = encode_cursor([None, 0])
    status, html = get(world, ADMIN, f"/ledger?limit=200&after={undated}")
    assert codes(html) == [i.code for i in everything if i.due_at is None]


# -- links that lead here -----------------------------------------------------------------------------

def test_supervision_rows_link_issues_and_projects_to_their_pages(world: PagesWorld) -> None:
    status, html = get(world, ADMIN, "/supervision")
    assert status == 200
    issue_links = re.findall(r'<tr id="issue-(\d+)"[^>]*>\s*<td>.*?</td>\s*<td><a href="([^"]+)"', html, re.S)
    project_links = re.findall(r'<tr id="project-(\d+)"[^>]*>\s*<td>.*?</td>\s*<td><a href="([^"]+)"', html, re.S)
    assert issue_links and project_links
    assert all(href == f"/ledger/{i}" for i, href in issue_links)
    assert all(href == f"/projects/{i}" for i, href in project_links)
    for _object_id, href in issue_links[:2] + project_links[:2]:
        assert get(world, ADMIN, href)[0] == 200


def test_an_issues_instance_page_links_back_to_the_issue_for_who_may_see_it(world: PagesWorld) -> None:
    some = next(i for i in all_issues(world) if i.instance_id)
    status, html = get(world, ADMIN, f"/instances/{some.instance_id}")
    assert status == 200 and f'href="/ledger/{some.id}"' in html
    for username in STAFF:
        status, html = get(world, username, f"/instances/{some.instance_id}")
        if status == 200:
            assert (f'href="/ledger/{some.id}"' in html) == (some.code in expected(world, username)), username


def test_the_dashboard_links_issues_to_the_ledger_page(world: PagesWorld) -> None:
    status, html = get(world, CITY_LEADER, "/dashboard")
    assert status == 200
    links = re.findall(r'href="/ledger/(\d+)"', html)
    assert links
    assert {int(i) for i in links} <= {i.id for i in all_issues(world)}


def test_a_step_s_extension_requests_say_where_they_stand_in_words(world: PagesWorld) -> None:
    """申请延期 on the issue's steps: 待审批, 已批准, 未批准, 已取消 — not 待激活 (a co-signer's task state) nor the
    codes granted and refused, which the page printed as they are."""
    from engine.deadlines.models import ExtensionRequest
    target = next(i for i in all_issues(world) if i.instance_id)
    with world.session() as s:
        step = s.scalar(select(HumanTask.id).where(HumanTask.instance_id == target.instance_id).order_by(HumanTask.id))
        assert step is not None
        made = [ExtensionRequest(object_type="task", object_id=step, requested_due_at=NOW, reason=f"原因{n}",
                                 status=status) for n, status in enumerate(("pending", "granted", "refused", "cancelled"))]
        s.add_all(made)
        s.commit()
        ids = [r.id for r in made]
    try:
        status, html = get(world, ADMIN, f"/ledger/{target.id}")
        section = html.split('id="extensions"')[1].split("</section>")[0]
        lines = {code: next(li for li in section.split("<li>") if f"原因{n}" in li)
                 for n, code in enumerate(("pending", "granted", "refused", "cancelled"))}
        assert status == 200
        assert [w in lines[c] for c, w in (("pending", "待审批"), ("granted", "已批准"), ("refused", "未批准"),
                                           ("cancelled", "已取消"))] == [True] * 4, lines
        assert not any(word in section for word in ("待激活", "granted", "refused")), section
        english = world.clients[ADMIN]
        english.get("/lang/en")
        try:
            page = english.get(f"/ledger/{target.id}").get_data(as_text=True)
        finally:
            english.get("/lang/zh")
        section = page.split('id="extensions"')[1].split("</section>")[0]
        assert all(w in section for w in ("Pending", "Granted", "Not granted", "Cancelled")), section
    finally:
        with world.session() as s:
            s.query(ExtensionRequest).filter(ExtensionRequest.id.in_(ids)).delete()
            s.commit()
