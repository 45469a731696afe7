"""A process owner edits 并联审批 in the browser modeller, deploys version 2, and a bad condition is refused at its element.

The running instance started before the deploy stays on version 1 and finishes there; a new one uses
version 2 (the department lane and the changed SLA). Drives the real modeller (bpmn-js + properties
panel) in headless chromium; screenshots go to test-artifacts/ (gitignored).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import clock, deploy, tasks
from engine.db import make_engine, make_sessionmaker
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances
from engine.runtime.models import ProcessDefinition, ProcessInstance, ProcessVersion
from engine.tasks.models import HumanTask
from plan.data import seed
from tests.conftest import PgDatabases
from tests.e2e.conftest import NOW, ROOT, LiveServer, log_in, require_bundle, serving
from tests.processes.test_parallel_approval import APPLICATION

ARTIFACTS = ROOT / "test-artifacts"
# Seed users (data/seed/users.yaml): applicant, window, the three departments' reviewers, the process owner.
APPLICANT, WINDOW, OWNER = "gupeng", "maxiaoyan", "suxiaoming"
REVIEWERS = {"fgj": "linzhiyuan", "zrzyj": "luocheng", "sthjj": "songjia"}


@pytest.fixture(scope="module", autouse=True)
def _modeller_bundle() -> None:
    """The modeller's entries are in the bundle `make setup` built (tests never run npm)."""
    require_bundle()


@pytest.fixture(scope="module")
def pg_live_server(pg_databases: PgDatabases) -> Iterator[LiveServer]:
    """The same server on a fresh PostgreSQL database: the seed and bpmn/ (no demo data)."""
    url = pg_databases.fresh()
    clock.freeze(NOW)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        seed.load_seed(session)
        deploy.deploy(session, deploy.read_directory(ROOT / "bpmn"), actor=SYSTEM)
        session.commit()
    engine.dispose()
    with serving(url) as live:
        yield live
    pg_databases.drop(url)


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest) -> LiveServer:
    """The shared SQLite live server (seed, bpmn/, demo) or the PostgreSQL one; the clock frozen at NOW."""
    found: LiveServer = request.getfixturevalue("live_server" if request.param == "sqlite" else "pg_live_server")
    clock.freeze(NOW)
    return found


@pytest.fixture
def db(server: LiveServer) -> Iterator[Any]:
    """A session factory on the live server's database (sessions stay short: SQLite has one writer)."""
    engine = make_engine(server.database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def db_name(server: LiveServer) -> str:
    return "postgres" if server.database_url.startswith("postgresql") else "sqlite"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"modeller-{name}.png"), full_page=True)


def act(session: Session, instance_id: int, bpmn_id: str, username: str, data: dict[str, Any]) -> None:
    """Claim and complete the instance's open task `bpmn_id` as `username`, as the inbox does."""
    actor = actor_for(session, username)
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.state == "ready",
                                                  HumanTask.bpmn_id == bpmn_id).order_by(HumanTask.id))
    assert task is not None, bpmn_id
    tasks.claim(session, task_id=task.id, actor=actor)
    assert tasks.complete(session, task_id=task.id, actor=actor, data=data).incident is None
    session.commit()


def review_all(session: Session, instance_id: int) -> None:
    for code, username in REVIEWERS.items():
        actor: Actor = actor_for(session, username)
        task = next(t for t in session.scalars(select(HumanTask).where(
            HumanTask.instance_id == instance_id, HumanTask.state == "ready", HumanTask.bpmn_id == "department_review"))
            if tasks.is_candidate(t, actor))
        tasks.claim(session, task_id=task.id, actor=actor)
        tasks.complete(session, task_id=task.id, actor=actor,
                       data={"review_decision": "approve", "review_opinion": f"{code}：同意"})
        session.commit()


def version_of(session: Session, instance_id: int) -> int:
    return session.scalar(select(ProcessVersion.version)
                          .join(ProcessInstance, ProcessInstance.version_id == ProcessVersion.id)
                          .where(ProcessInstance.id == instance_id)) or 0


def versions_of_approval(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ProcessVersion).join(ProcessDefinition)
                          .where(ProcessDefinition.key == "parallel_approval")) or 0


def select_by_search(page: Any, element_id: str) -> None:
    """Select a diagram element the way a user finds one: the modeller's search (Ctrl+F), then Enter."""
    canvas = page.locator(".jz-canvas").bounding_box()
    page.mouse.click(canvas["x"] + canvas["width"] / 2, canvas["y"] + 6)  # the empty margin above the diagram: focus
    page.keyboard.press("Control+f")
    page.locator(".djs-search-container input").press_sequentially(element_id)  # the pad searches on keyup
    page.wait_for_selector(".djs-search-result")
    page.keyboard.press("Enter")
    page.wait_for_selector(f".djs-element.selected[data-element-id='{element_id}']", state="attached")


def click_lane_band(page: Any, lane_id: str) -> None:
    """Click a lane's name band at its left edge (how a lane is selected on the canvas)."""
    box = page.locator(f'g.djs-element[data-element-id="{lane_id}"] .djs-visual > *').first.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + box["height"] / 2)


def press_deploy(page: Any) -> None:
    """Press 部署为新版本 and wait until the server has answered (the button is enabled again)."""
    page.click('[data-action="deploy"]')
    page.wait_for_selector("[data-action='deploy']:not([disabled])")


def test_process_owner_edits_parallel_approval_and_deploys_version_2(server: LiveServer, page: Any, db: Any) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400
            and not r.url.endswith("/favicon.ico") and not r.url.endswith("/modeller/deploy") else None)

    # An application already under way on version 1: submitted, waiting at the window.
    with db() as session:
        assert versions_of_approval(session) == 1
        running = instances.start(session, process_key="parallel_approval", actor=actor_for(session, APPLICANT),
                                  business_key="E2E-V1", title="E2E 并联审批 v1").id
        session.commit()
        act(session, running, "submit_application", APPLICANT, APPLICATION)
        assert version_of(session, running) == 1

    log_in(page, server, OWNER)
    page.goto(f"{server.url}/modeller")
    page.click("a[href='/modeller/processes/parallel_approval']")
    page.click("text=在建模器中打开最新版本")
    page.wait_for_selector("[data-jz-modeller][data-ready='1']", timeout=30000)
    page.locator(".jz-canvas").scroll_into_view_if_needed()

    # A department lane: add a lane below 审批部门 from its context pad, map it to 发展和改革局 in the jzflow group.
    click_lane_band(page, "lane_departments")
    page.click('.djs-context-pad .entry[data-action="lane-insert-below"]')
    new_lane = page.locator('g.djs-element.djs-shape[data-element-id^="Lane_"]')
    assert new_lane.count() == 1
    lane_id = new_lane.first.get_attribute("data-element-id")
    click_lane_band(page, lane_id)
    page.select_option("#bio-properties-panel-jz-lane-target", "发展和改革局")
    page.locator(f"g.djs-element[data-element-id='{lane_id}']").filter(has_text="发展和改革局").wait_for()

    # An SLA on 一窗受理 (version 1 says 1wd).
    select_by_search(page, "window_accept")
    assert page.input_value("#bio-properties-panel-jz-sla") == "1wd"
    page.fill("#bio-properties-panel-jz-sla", "2wd")
    page.locator("#bio-properties-panel-jz-sla").press("Tab")  # leave the field: the debounced value is applied
    page.wait_for_timeout(500)
    shot(page, f"1-edited-{db_name(server)}")

    press_deploy(page)
    page.wait_for_selector(".jz-deployed[data-key='parallel_approval'][data-version='2']")
    assert "版本 2" in page.locator(".jz-status").inner_text()
    shot(page, f"2-deployed-{db_name(server)}")

    # The version list: who deployed what, and version 1 still has the running instance.
    with page.expect_navigation():
        page.click(".jz-status a")
    rows = page.locator("table.versions tbody tr")
    assert rows.first.get_attribute("data-version") == "2"
    assert "苏晓明" in rows.first.inner_text()
    assert int(page.locator("tr[data-version='1'] td.running").inner_text()) >= 1
    shot(page, f"3-versions-{db_name(server)}")
    page.goto(f"{server.url}/modeller/processes/parallel_approval/diff")
    page.wait_for_selector("[data-jz-diff][data-ready='1']", timeout=30000)
    assert page.locator(f"tr.diff-added[data-element-id='{lane_id}']").count() == 1
    assert "2wd" in page.locator("tr.diff-changed[data-element-id='window_accept']").inner_text()
    new_side = page.locator(".jz-diff-canvas[data-side='new']")
    assert new_side.locator(f".djs-element.jz-diff-added[data-element-id='{lane_id}']").count() == 1
    shot(page, f"4-diff-{db_name(server)}")

    with db() as session:
        # The running instance stays on version 1 and finishes there.
        act(session, running, "window_accept", WINDOW, {"acceptance": "accept", "window_opinion": "材料齐全，予以受理"})
        review_all(session, running)
        act(session, running, "issue_certificate", WINDOW, {"issued_on": "2025-09-01"})
        row = session.get(ProcessInstance, running)
        assert row is not None and row.status == "completed" and version_of(session, running) == 1
        # A new instance uses version 2: its window task carries the new SLA, the new lane maps to the department.
        fresh = instances.start(session, process_key="parallel_approval", actor=actor_for(session, APPLICANT),
                                business_key="E2E-V2", title="E2E 并联审批 v2").id
        session.commit()
        assert version_of(session, fresh) == 2
        act(session, fresh, "submit_application", APPLICANT, APPLICATION)
        window = session.scalar(select(HumanTask).where(HumanTask.instance_id == fresh,
                                                        HumanTask.bpmn_id == "window_accept"))
        assert window is not None and window.sla == "2wd"
        v2 = session.scalar(select(ProcessVersion).join(ProcessDefinition).where(
            ProcessDefinition.key == "parallel_approval", ProcessVersion.version == 2))
        assert v2 is not None and "发展和改革局" in v2.lane_map_json

    # An invalid edit: a bad condition is refused, shown at its flow, and nothing is stored.
    page.goto(f"{server.url}/modeller/processes/parallel_approval")
    page.click("text=在建模器中打开最新版本")  # version 2 now
    assert "v2" in page.locator("h1").inner_text()
    page.wait_for_selector("[data-jz-modeller][data-ready='1']", timeout=30000)
    page.locator(".jz-canvas").scroll_into_view_if_needed()
    select_by_search(page, "flow_send_back")
    page.fill("#bio-properties-panel-jz-condition", "acceptance >> > 1")
    page.locator("#bio-properties-panel-jz-condition").press("Tab")
    page.wait_for_timeout(500)
    press_deploy(page)
    page.wait_for_selector(".jz-problem[data-element-id='flow_send_back']")
    assert "acceptance >> > 1" in page.locator(".jz-problems").inner_text()
    assert page.locator(".jz-error-overlay[data-element-id='flow_send_back']").count() == 1
    assert page.locator("g.djs-element.jz-error[data-element-id='flow_send_back']").count() == 1
    assert "未保存" in page.locator(".jz-status").inner_text()
    shot(page, f"5-refused-{db_name(server)}")
    with db() as session:
        assert versions_of_approval(session) == 2
    assert errors == [], errors


def test_an_auditor_reads_the_modeller_but_cannot_deploy(live_server: LiveServer, page: Any) -> None:
    log_in(page, live_server, "qianlihua")  # 审计督查
    page.goto(f"{live_server.url}/modeller/processes/parallel_approval")
    page.click("text=在建模器中打开最新版本")
    page.wait_for_selector("[data-jz-modeller][data-ready='1']", timeout=30000)
    assert page.locator("[data-action='deploy']").count() == 0
    status = page.evaluate("""async () => (await fetch('/modeller/deploy', {method: 'POST',
        headers: {'Content-Type': 'application/json', 'X-CSRFToken': document.querySelector('[data-csrf]').dataset.csrf},
        body: JSON.stringify({files: {'x.bpmn': '<x/>'}})})).status""")
    assert status == 403
    shot(page, "6-auditor")



def test_defect2_a_stale_edit_in_the_modeller_gets_409_naming_the_other_owner_with_the_diff_link(
        pg_live_server: LiveServer, page: Any) -> None:
    """The owner opens issue_ledger's latest version; someone else deploys meanwhile; the owner's deploy is refused
    naming who deployed which version, nothing is stored, and the diff between the two opens from the message."""
    server = pg_live_server
    clock.freeze(NOW)
    engine = make_engine(server.database_url)
    factory = make_sessionmaker(engine)
    try:
        with factory() as session:
            base = deploy.latest_version(session, "issue_ledger")
            assert base is not None
            base_version, base_id = base.version, base.id
        log_in(page, server, OWNER)
        page.goto(f"{server.url}/modeller/versions/{base_id}/edit")
        page.wait_for_selector("[data-jz-modeller][data-ready='1']", timeout=30000)
        with factory() as session:  # 林志远 deploys his own edit while the page is open
            files = deploy.read_directory(ROOT / "bpmn")
            files["issue_ledger.bpmn"] = files["issue_ledger.bpmn"].replace(
                'name="派单"'.encode(), 'name="派单（林）"'.encode())
            deploy.deploy(session, files, actor=actor_for(session, REVIEWERS["fgj"]))
            session.commit()
        press_deploy(page)
        page.wait_for_selector(".jz-status.jz-stale")
        status = page.locator(".jz-status").inner_text()
        assert "林志远" in status and f"v{base_version + 1}" in status and "未部署" in status
        assert page.locator(f".jz-stale-versions li[data-version='{base_version + 1}']").count() == 1
        shot(page, "7-stale-postgres")
        with factory() as session:
            latest = deploy.latest_version(session, "issue_ledger")
            assert latest is not None and latest.version == base_version + 1
        href = page.locator("a.jz-stale-diff").get_attribute("href")
        assert href == f"/modeller/processes/issue_ledger/diff?old={base_id}&new={latest.id}"
        page.goto(f"{server.url}{href}")
        page.wait_for_selector("[data-jz-diff][data-ready='1']", timeout=30000)
        assert page.locator("tr.diff-changed[data-element-id='dispatch']").count() == 1
    finally:
        engine.dispose()
