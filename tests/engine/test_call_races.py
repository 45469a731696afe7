"""揭榜挂帅 on PostgreSQL: the 挂帅 hand-over of a call's lead and an officer recording its 签约 at the same moment.

`calls.hand_over` gives the appointed unit the call's lead project with the date to sign by, and refuses a project
past the lead stage. Every change to a project locks its row before its checks (`core.lock_project`): an officer
recording 签约 on the project page while the leader's 挂帅 is being saved must not have the signed project handed to
another unit with a signing deadline behind its back.
"""
from __future__ import annotations

import threading
import time
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import org
from engine.errors import InvalidInput
from engine.org.actors import Actor, actor_for
from engine.org.models import OrgUnit
from plan.projects import calls, core
from plan.projects.models import Project, ProjectLibrary

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


@pytest.fixture
def world(session: Session, frozen: Any) -> dict[str, Any]:
    """工信局 holds a lead (线索) of the 招商引资项目 library; 临空经济区 is the unit a leader appoints."""
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_unit(session, code="lkq", name="临空经济区")
    org.add_user(session, username="officer", display_name="招商专员", unit_codes=["gxj"])
    org.add_user(session, username="leader", display_name="责任领导")
    session.add(ProjectLibrary(code=core.INVESTMENT_LIBRARY, name="招商引资项目"))
    session.flush()
    officer = actor_for(session, "officer")
    project = core.add_lead(session, actor=officer, name="智能家电配套", enterprise="海智电器",
                            investment=Decimal("5000"), category="key")
    gxj = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "gxj"))
    project.responsible_unit_id = gxj
    session.commit()
    return {"officer": officer, "leader": actor_for(session, "leader"), "code": project.code, "id": project.id,
            "gxj": gxj}


def test_a_lead_signed_while_its_call_is_appointed_is_not_handed_over(
        factory: sessionmaker[Session], world: dict[str, Any]) -> None:
    signing = factory()  # the officer records 签约: the project's row is locked until the commit
    project = signing.get(Project, world["id"])
    assert project is not None
    core.reach_stage(signing, project, "signed", on=core.today(), actor=world["officer"], evidence="合同")
    outcome: list[BaseException | None] = []

    def appoint() -> None:
        with factory() as s:
            leader: Actor = world["leader"]
            try:
                calls.hand_over(s, call={"code": "JB-2025-10-smart", "project_code": world["code"]},
                                unit_code="lkq", sign_by=date(2025, 12, 31), actor=leader)
                s.commit()
                outcome.append(None)
            except BaseException as exc:
                s.rollback()
                outcome.append(exc)

    thread = threading.Thread(target=appoint)
    thread.start()
    time.sleep(0.5)  # the 挂帅 has read the project (still a lead to it) and waits, or is waiting for the lock
    signing.commit()
    signing.close()
    thread.join(timeout=30)
    assert not thread.is_alive()

    [refused] = outcome
    assert isinstance(refused, InvalidInput) and "已过线索阶段" in refused.message, refused
    with factory() as s:
        after = s.get(Project, world["id"])
        assert after is not None and after.stage == "signed"
        assert after.responsible_unit_id == world["gxj"] and after.planned_sign is None  # nothing handed over


def test_the_first_approval_stage_started_twice_at_once_is_one_approval(
        factory: sessionmaker[Session], world: dict[str, Any]) -> None:
    """The unit starts 立项用地规划许可 on the project page while the call's instance starts it: one approval."""
    from pathlib import Path

    from engine import deploy
    from engine.org.actors import SYSTEM
    from engine.runtime.models import ProcessInstance
    from plan.projects import approvals
    from plan.projects.models import ProjectApproval

    stand_in = Path(__file__).resolve().parents[1] / "fixtures" / "stand_ins" / "parallel_approval.bpmn"
    with factory() as s:
        deploy.deploy(s, {"parallel_approval.bpmn": stand_in.read_bytes()}, actor=SYSTEM)
        s.commit()
    page = factory()  # the page's start: the project's row is locked until the commit
    project = page.get(Project, world["id"])
    assert project is not None
    first = approvals.start_stage(page, project, stage="land_planning", actor=world["officer"], applicant="officer")
    outcome: list[BaseException | int | None] = []

    def call_starts() -> None:
        with factory() as s:
            try:
                again = s.get(Project, world["id"])
                assert again is not None
                row = approvals.start_stage(s, again, stage="land_planning", actor=world["leader"], applicant="x")
                s.commit()
                outcome.append(row.instance_id)
            except BaseException as exc:
                s.rollback()
                outcome.append(exc)

    thread = threading.Thread(target=call_starts)
    thread.start()
    time.sleep(0.5)
    page.commit()
    first_instance = first.instance_id
    page.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert outcome == [first_instance]
    with factory() as s:
        assert s.scalars(select(ProjectApproval.instance_id).where(ProjectApproval.project_id == world["id"])).all() \
            == [first_instance]
        assert s.scalars(select(ProcessInstance.id).where(ProcessInstance.business_key == world["code"])).all() \
            == [first_instance]


def test_a_call_reporting_the_signing_the_page_is_recording_changes_nothing(
        factory: sessionmaker[Session], world: dict[str, Any]) -> None:
    """The page's 签约 is being saved when the call's 跟进签约 reports it: the call's report waits, then keeps it."""
    page = factory()
    project = page.get(Project, world["id"])
    assert project is not None
    core.reach_stage(page, project, "signed", on=core.today(), actor=world["officer"], evidence="合同")
    outcome: list[BaseException | bool | None] = []

    def call_reports() -> None:
        with factory() as s:
            try:
                _project, recorded = core.sign(
                    s, actor=world["leader"], call={"code": "JB-2025-10-smart", "project_code": world["code"]},
                    project_name="另一个名字", enterprise="另一家企业", investment=Decimal("1"),
                    project_type="service", signed_on=date(2025, 9, 30))
                s.commit()
                outcome.append(recorded)
            except BaseException as exc:
                s.rollback()
                outcome.append(exc)

    thread = threading.Thread(target=call_reports)
    thread.start()
    time.sleep(0.5)  # the call's report waits for the page's lock
    page.commit()
    page.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert outcome == [False]
    with factory() as s:
        after = s.get(Project, world["id"])
        assert after is not None
        assert (after.stage, after.name, after.enterprise, after.investment, after.project_type) == (
            "signed", "智能家电配套", "海智电器", Decimal("5000"), "industrial")
        assert [(st.stage, st.on, st.evidence) for st in after.stages] == [
            ("lead", core.today(), ""), ("signed", core.today(), "合同")]
