"""A stage's approval started for a project is that project's: its certificate moves no other project.

Before: `certified` took the project and the stage from the approval's data, which the applicant fills in on the
application form (提交并联审批申请: project_code and stage are fields of it, pre-filled). The applicant of a project's
立项用地规划许可 — an enterprise, with no project in its reach — typing another unit's project code and 施工许可
had, at 联合出证, that other project moved to 开工 and its 竣工验收 started, while its own stage was marked certified.
Now an approval with its project's row (started for the project: the page, the call, the chain) is certified for
that project and stage, whatever its data names; one started by hand without a row is as before. Since then the
application form refuses another code or stage on such an approval (tests/processes/test_approval_bound_form.py):
`certified` is checked here on the data of an approval submitted before that, which still names the other project.
"""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from engine.audit.models import AuditEvent
from engine.errors import FormInvalid
from engine.org.actors import actor_for
from plan.projects import approvals, entry
from plan.projects.models import Project, ProjectApproval, ProjectStage
from tests.engine.test_project_slice import OFFICER, OUTSIDER, drive_to_certificate, new_project, stage_instance
from tests.engine.test_project_slice import world as world  # the fixture, used here too


def test_an_application_naming_another_project_certifies_only_its_own(world: Any) -> None:
    session = world
    ours = new_project(session)  # 投促局's
    theirs = entry.create_project(session, actor=actor_for(session, OUTSIDER), data=entry.read_input({
        "name": "发改局的项目", "enterprise": "某企业", "investment": "5000", "project_type": "service",
        "unit_code": "fgj", "libraries": "key", "category": "key"}))
    session.commit()
    approvals.start_stage(session, ours, stage="land_planning", actor=actor_for(session, OFFICER), applicant=OFFICER)
    session.commit()
    iid = stage_instance(session, ours, "land_planning")
    with pytest.raises(FormInvalid) as refused:  # the application form no longer takes the other project, nor 施工许可
        drive_to_certificate(session, iid, OFFICER, theirs, "construction_permit")
    assert sorted(e.field for e in refused.value.errors) == ["project_code", "stage"]
    session.rollback()
    # an approval whose application named them before the form refused it: its certificate
    approvals.certified(session, instance_id=iid, actor=actor_for(session, OFFICER), days={
        "certified_on": "2025-09-10", "working_days_used": 5, "sla_serial_wd": 23},
        data={"project_code": theirs.code, "stage": "construction_permit", "applicant": OFFICER})
    session.commit()
    session.expire_all()
    theirs_now = session.get(Project, theirs.id)
    assert theirs_now is not None and theirs_now.stage == "lead"
    assert session.scalars(select(ProjectStage.stage).where(ProjectStage.project_id == theirs.id)).all() == ["lead"]
    assert session.scalars(select(ProjectApproval.id).where(ProjectApproval.project_id == theirs.id)).all() == []
    assert session.scalars(select(AuditEvent.action).where(AuditEvent.stream == f"project:{theirs.id}")
                           .where(AuditEvent.action.like("project.approval%"))).all() == []
    # its own stage is the one certified, and the chain goes on with its own next stage
    rows = {r.stage: r for r in session.scalars(select(ProjectApproval).where(ProjectApproval.project_id == ours.id))}
    assert sorted(rows) == ["construction_works", "land_planning"]
    assert rows["land_planning"].certified_on is not None and rows["construction_works"].certified_on is None
