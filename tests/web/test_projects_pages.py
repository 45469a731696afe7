"""项目库 pages: who sees which project, the filters, keyset paging, hostile input, the links that lead here."""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.org.models import OrgUnit, User
from engine.runtime.models import ProcessInstance
from engine.tasks.queries import encode_cursor
from plan.indicators.models import Industry
from plan.ledger.models import LedgerIssue
from plan.projects.models import STAGES, Project, ProjectLibrary
from tests.web import pages_world as pw
from tests.web.conftest import PASSWORD, csrf_of
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
    nav,
)

TODAY = NOW.date()
PLANNED = {"signed": "planned_sign", "started": "planned_start", "completed": "planned_complete",
           "producing": "planned_produce"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[PagesWorld]:
    yield from pw.open_world(tmp_path_factory, sqlite_template)



def codes(html: str) -> list[str]:
    return re.findall(r'<tr data-code="([^"]+)" data-light="', html)


def all_projects(world: PagesWorld) -> list[Project]:
    with world.session() as s:
        found = list(s.scalars(select(Project).order_by(Project.code)))
        s.expunge_all()
        return found


def expected_codes(world: PagesWorld, username: str) -> list[str]:
    if username in (ADMIN, CITY_LEADER, AUDITOR):
        return [p.code for p in all_projects(world)]
    units = world.units_of(username)
    with world.session() as s:
        user_id = s.scalar(select(User.id).where(User.username == username))
    return [p.code for p in all_projects(world) if p.responsible_unit_id in units or p.location_unit_id in units
            or p.responsible_leader_id == user_id]


def behind(p: Project) -> bool:
    reached = STAGES.index(p.stage)
    return any(getattr(p, column) is not None and getattr(p, column) < TODAY and STAGES.index(stage) > reached
               for stage, column in PLANNED.items())


def outsider_project(world: PagesWorld, username: str) -> Project:
    """A project the user's units and leader area have nothing to do with."""
    mine = set(expected_codes(world, username))
    return next(p for p in all_projects(world) if p.code not in mine)


# -- who sees what ------------------------------------------------------------------------------------

@pytest.mark.parametrize("username", [ADMIN, CITY_LEADER, AUDITOR, REVIEWER, TOWN, LEADER, AREA_HEAD])
def test_each_role_lists_exactly_the_projects_in_its_reach_across_pages(world: PagesWorld, username: str) -> None:
    listed = collect(world, username, "/projects", codes, limit=7)
    assert listed == expected_codes(world, username)
    assert len(listed) == len(set(listed)) and listed
    for code in listed[:3]:
        project = next(p for p in all_projects(world) if p.code == code)
        status, html = get(world, username, f"/projects/{project.id}")
        assert status == 200 and project.name in html


def test_staff_see_only_their_units_projects_and_city_roles_see_all(world: PagesWorld) -> None:
    everyone = {p.code for p in all_projects(world)}
    staff = set(collect(world, REVIEWER, "/projects", codes, limit=50))
    town = set(collect(world, TOWN, "/projects", codes, limit=50))
    assert staff and town and staff < everyone and town < everyone and not staff & town
    with world.session() as s:
        lgz = s.scalar(select(OrgUnit.id).where(OrgUnit.code == "lgz"))
    assert all(p.location_unit_id == lgz or p.responsible_unit_id == lgz for p in all_projects(world) if p.code in town)


def test_a_unit_head_outside_the_unit_sees_its_projects_through_the_leader_area(world: PagesWorld) -> None:
    with world.session() as s:
        head = s.scalar(select(User.id).where(User.username == AREA_HEAD))
        lgz = s.scalar(select(OrgUnit).where(OrgUnit.code == "lgz"))
        assert lgz is not None and lgz.leader_id == head
    assert not world.units_of(TOWN) - {lgz.id}  # the town's staff: members of 李哥庄镇 only
    assert collect(world, AREA_HEAD, "/projects", codes) == collect(world, TOWN, "/projects", codes) != []


def test_an_applicant_may_open_neither_the_list_nor_a_project(world: PagesWorld) -> None:
    project = all_projects(world)[0]
    status, html = get(world, APPLICANT, "/projects")
    assert status == 403 and project.name not in html
    status, html = get(world, APPLICANT, f"/projects/{project.id}")
    assert status in (403, 404) and project.name not in html and project.code not in html


@pytest.mark.parametrize("username", [REVIEWER, TOWN, LEADER, AREA_HEAD])
def test_another_units_project_id_is_a_404_like_a_missing_one(world: PagesWorld, username: str) -> None:
    other = outsider_project(world, username)
    status, html = get(world, username, f"/projects/{other.id}")
    assert status == 404 and other.name not in html and other.code not in html
    missing_status, missing_html = get(world, username, "/projects/999999")
    assert missing_status == 404
    assert pw.main(html).replace(str(other.id), "N") == pw.main(missing_html).replace("999999", "N")  # nothing tells apart


def test_the_menu_shows_the_project_library_only_to_who_may_open_it(world: PagesWorld) -> None:
    for username in (ADMIN, CITY_LEADER, AUDITOR, REVIEWER, TOWN, LEADER, AREA_HEAD):
        menu = nav(get(world, username, "/inbox")[1])
        assert 'href="/projects"' in menu and 'href="/ledger"' in menu, username
    menu = nav(get(world, APPLICANT, "/inbox")[1])
    assert menu and 'href="/projects"' not in menu and 'href="/ledger"' not in menu


def test_the_list_offers_entering_and_importing_only_to_who_may_enter(world: PagesWorld) -> None:
    """录入项目 / 导入项目 lead to pages that answer 403 to everyone but a unit's data or investment officers
    (and admins): the list must not offer them to the others (the window clerk, a reviewer, a leader)."""
    for username in (REVIEWER, TOWN, LEADER, CITY_LEADER, AUDITOR):
        status, html = get(world, username, "/projects")
        assert status == 200, username
        assert 'href="/projects/new"' not in html and 'href="/projects/import"' not in html, username
        assert get(world, username, "/projects/new")[0] == 403, username
    status, html = get(world, ADMIN, "/projects")
    assert status == 200 and 'href="/projects/new"' in html and 'href="/projects/import"' in html
    assert get(world, ADMIN, "/projects/new")[0] == 200


def test_the_schedule_prints_without_inline_script(world: PagesWorld) -> None:
    """挂图作战's 打印 button: the CSP (script-src 'self') blocks an inline onclick, so the bundle's data-jz-print
    handler must carry it."""
    status, html = get(world, REVIEWER, "/projects/schedule")
    assert status == 200
    assert re.search(r'<button type="button" data-jz-print>打印</button>', html), html
    assert not re.search(r"\son[a-z]+=", pw.main(html))


# -- the project page ---------------------------------------------------------------------------------

def test_the_project_page_has_its_timeline_approvals_issues_and_history(world: PagesWorld) -> None:
    with world.session() as s:
        approval = s.scalar(select(ProcessInstance).where(ProcessInstance.business_key.like("XM-%"))
                            .order_by(ProcessInstance.id))
        assert approval is not None
        project = s.scalar(select(Project).where(Project.code == approval.business_key))
        assert project is not None
        stages = {st.stage: st.on for st in project.stages}
        issues = list(s.scalars(select(LedgerIssue).where(LedgerIssue.project_id == project.id)))
        approvals = list(s.scalars(select(ProcessInstance.id).where(ProcessInstance.business_key == project.code)))
    status, html = get(world, ADMIN, f"/projects/{project.id}")
    assert status == 200 and project.name in html and project.code in html
    for stage, on in stages.items():
        assert f'<tr data-stage="{stage}" data-reached="{on.isoformat()}">' in html
    for stage in set(STAGES) - set(stages):
        assert f'<tr data-stage="{stage}"><th>' in html
    section = html.split('id="approvals"')[1].split("</section>")[0]
    assert sorted(int(i) for i in re.findall(r'href="/instances/(\d+)"', section)) == sorted(approvals)
    section = html.split('id="issues"')[1].split("</section>")[0]
    assert sorted(int(i) for i in re.findall(r'href="/ledger/(\d+)"', section)) == sorted(i.id for i in issues)


def test_a_slow_projects_page_shows_its_lag_and_its_issue(world: PagesWorld) -> None:
    with world.session() as s:
        issue = s.scalar(select(LedgerIssue).where(LedgerIssue.source == "project", LedgerIssue.project_id.is_not(None),
                                                   LedgerIssue.status != "closed").order_by(LedgerIssue.id))
        assert issue is not None
        project = s.get(Project, issue.project_id)
        assert project is not None
    status, html = get(world, ADMIN, f"/projects/{project.id}")
    assert status == 200 and f'href="/ledger/{issue.id}"' in html
    if behind(project):
        assert "data-lag=" in html


def test_the_next_planned_date_carries_a_light(world: PagesWorld) -> None:
    status, html = get(world, ADMIN, "/projects?limit=200")
    assert status == 200
    lights = dict(re.findall(r'<tr data-code="([^"]+)" data-light="(\w+)"', html))
    for p in all_projects(world):
        if behind(p) and p.stage != "producing":
            column = PLANNED[STAGES[STAGES.index(p.stage) + 1]]
            if getattr(p, column) is not None and getattr(p, column) < TODAY:
                assert lights[p.code] == "red", p.code
        if p.stage == "producing":
            assert lights[p.code] == "none"
    assert 'class="light red"' in html


# -- filters ------------------------------------------------------------------------------------------

def test_filters_narrow_the_list(world: PagesWorld) -> None:
    projects = all_projects(world)
    with world.session() as s:
        libraries = {lib.id: lib.code for lib in s.scalars(select(ProjectLibrary))}
        industries = {i.id: i.code for i in s.scalars(select(Industry))}
        units = {u.id: u.code for u in s.scalars(select(OrgUnit))}
    some = projects[0]
    cases = {
        "library=key": [p.code for p in projects if libraries[p.library_id] == "key"],
        "stage=signed": [p.code for p in projects if p.stage == "signed"],
        f"industry={industries[some.industry_id]}": [p.code for p in projects if p.industry_id == some.industry_id],
        f"unit={units[some.responsible_unit_id]}": [p.code for p in projects
                                                     if p.responsible_unit_id == some.responsible_unit_id],
        "behind=yes": [p.code for p in projects if behind(p)],
        "behind=no": [p.code for p in projects if not behind(p)],
        f"q={some.code[-4:]}": [p.code for p in projects if some.code[-4:] in p.code or some.code[-4:] in p.name],
        f"q={some.name[2:6]}": [p.code for p in projects if some.name[2:6] in p.name],
        "q=%25": [p.code for p in projects if "%" in p.code or "%" in p.name],  # a LIKE wildcard is a plain character
        "library=key&stage=started": [p.code for p in projects if libraries[p.library_id] == "key"
                                      and p.stage == "started"],
    }
    for query, expected in cases.items():
        listed = collect(world, ADMIN, f"/projects?{query}", codes, limit=5)
        assert listed == expected, query
    assert cases["behind=yes"] and cases["behind=no"] and cases["library=key"]
    assert collect(world, REVIEWER, "/projects?behind=yes", codes) == [
        c for c in expected_codes(world, REVIEWER) if c in cases["behind=yes"]]


@pytest.mark.parametrize("query", ["q=%00", "q=a%00b", "q=" + "x" * 101, "stage=built", "behind=maybe",
                                   "library=" + "k" * 41, "unit=%00", "industry=" + "i" * 61])
def test_bad_filter_values_are_refused_with_a_4xx(world: PagesWorld, query: str) -> None:
    status, _html = get(world, ADMIN, f"/projects?{query}")
    assert 400 <= status < 500


@pytest.mark.parametrize("cursor", ["bad", "%00", "eyJ", encode_cursor([1]), encode_cursor(["a", "b"]),
                                    encode_cursor([None]), encode_cursor(["x" * 41]), encode_cursor([{"a": 1}]),
                                    "x" * 5000])
def test_a_bad_cursor_is_a_4xx_never_a_500(world: PagesWorld, cursor: str) -> None:
    status, _html = get(world, ADMIN, f"/projects?after={cursor}")
    assert 400 <= status < 500


def test_a_cursor_continues_after_its_code_whoever_made_it(world: PagesWorld) -> None:
    everything = collect(world, ADMIN, "/projects", codes, limit=50)
    middle = everything[len(everything) // 2]
    status, html = get(world, ADMIN, f"/projects?limit=200&after={encode_cursor([middle])}")
    assert status == 200 and codes(html) == [c for c in everything if c > middle]
    mine = expected_codes(world, REVIEWER)
    status, html = get(world, REVIEWER, f"/projects?limit=200&after={encode_cursor([everything[0]])}")
    assert codes(html) == [c for c in mine if c > everything[0]]  # a cursor never widens the reach


# -- links that lead here -----------------------------------------------------------------------------

def test_the_dashboard_and_approval_instances_link_to_the_project_page(world: PagesWorld) -> None:
    with world.session() as s:
        approval = s.scalar(select(ProcessInstance).where(ProcessInstance.business_key.like("XM-%"))
                            .order_by(ProcessInstance.id))
        assert approval is not None
        project = s.scalar(select(Project).where(Project.code == approval.business_key))
        assert project is not None
    status, html = get(world, ADMIN, f"/instances/{approval.id}")
    assert status == 200 and f'href="/projects/{project.id}"' in html
    status, html = get(world, ADMIN, f"/dashboard/projects/{project.code}")
    assert status == 200 and f'href="/projects/{project.id}"' in html


def test_an_approval_instance_does_not_link_a_project_out_of_reach(world: PagesWorld) -> None:
    with world.session() as s:
        rows = s.execute(select(ProcessInstance.id, Project.id).join(
            Project, Project.code == ProcessInstance.business_key)).all()
    mine = {p.id for p in all_projects(world) if p.code in expected_codes(world, APPLICANT)}
    for instance_id, project_id in rows:
        status, html = get(world, APPLICANT, f"/instances/{instance_id}")
        if status == 200:  # the applicant's own application: the project page is not theirs to open
            assert f'href="/projects/{project_id}"' not in html or project_id in mine


def test_the_planned_dates_are_the_projects(world: PagesWorld) -> None:
    project = next(p for p in all_projects(world) if p.planned_produce is not None)
    status, html = get(world, ADMIN, f"/projects/{project.id}")
    assert status == 200
    row = html.split('<tr data-stage="producing"')[1].split("</tr>")[0]
    assert isinstance(project.planned_produce, date) and project.planned_produce.isoformat() in row


def test_the_pages_speak_english_when_asked(world: PagesWorld) -> None:
    client = world.app.test_client()
    response = client.post("/login", data={"username": ADMIN, "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert response.status_code == 302
    client.get("/lang/en")
    project = all_projects(world)[0]
    for path, words in (("/projects", ("Behind plan", "Next planned milestone")),
                        (f"/projects/{project.id}", ("Approvals", "Supervision history")),
                        ("/ledger", ("Overdue only", "Handler"))):
        html = client.get(path).get_data(as_text=True)
        assert all(w in html for w in words), path
        assert "滞后于计划" not in html and "意见与评论" not in html
