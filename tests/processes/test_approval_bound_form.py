"""The application form of a 并联审批 started for a project: its project code and stage are fixed.

A stage's approval started for a project (its `project_approval` row: the project page, the call, the chain) is that
project's and that stage's; `certified` already ignores what the form names. The form itself took another project's
code or another stage silently, and the instance's data, the task pages, the audit and the reports then named a
project or stage the approval is not for. Now such a submission is refused whole, naming the field (FormInvalid,
nothing kept), a field left out takes the bound value, and the same code with whitespace around it is the same code
(stored as the project's). Letters are not folded: project codes are compared as they are everywhere else
(`acting.project_in_reach`). An approval started by hand without a project keeps the form as it was.
"""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from engine import runtime, tasks
from engine.audit.models import AuditEvent
from engine.errors import FormInvalid, TaskNotFound
from engine.org.actors import actor_for
from engine.runtime import instances
from plan.projects import approvals, entry
from plan.projects.models import Project
from tests import steps
from tests.engine.test_project_slice import OFFICER, OUTSIDER, new_project
from tests.engine.test_project_slice import world as world  # the fixture, used here too


def application(project: Project, **changed: Any) -> dict[str, Any]:
    data = {"project_code": project.code, "project_name": project.name, "project_type": project.project_type,
            "investment": project.investment, "stage": "land_planning", "applicant_unit": project.enterprise,
            "contact_name": "张三", "contact_phone": "13800000000", "materials": ["application_form"]}
    data.update(changed)
    return {k: v for k, v in data.items() if v is not None}


def bound(session: Any) -> tuple[Project, int, int]:
    """A project with its first stage's approval started for it; the application task claimed by its applicant."""
    project = new_project(session)
    row = approvals.start_stage(session, project, stage="land_planning", actor=actor_for(session, OFFICER),
                                applicant=OFFICER)
    session.commit()
    assert row.instance_id is not None
    task = steps.only_task(session, row.instance_id, "submit_application")
    tasks.claim(session, task_id=task.id, actor=actor_for(session, OFFICER))
    session.commit()
    return project, row.instance_id, task.id


def data_of(session: Any, instance_id: int) -> dict[str, Any]:
    return dict(runtime.load(session, instance_id).workflow.last_task.data)


def refused(session: Any, task_id: int, data: dict[str, Any]) -> FormInvalid:
    with pytest.raises(FormInvalid) as caught:
        tasks.complete(session, task_id=task_id, actor=actor_for(session, OFFICER), data=data)
    session.rollback()
    return caught.value


def other_project(session: Any) -> Project:
    """Another unit's project (发改局's), out of the applicant's reach."""
    project = entry.create_project(session, actor=actor_for(session, OUTSIDER), data=entry.read_input({
        "name": "发改局的项目", "enterprise": "某企业", "investment": "5000", "project_type": "service",
        "unit_code": "fgj", "libraries": "key", "category": "key"}))
    session.commit()
    return project


def test_another_units_project_code_is_refused_naming_the_field_and_nothing_is_kept(world: Any) -> None:
    session = world
    project, iid, task_id = bound(session)
    theirs = other_project(session)
    before = steps.kept(session, iid)
    error = refused(session, task_id, application(project, project_code=theirs.code))
    assert [e.field for e in error.errors] == ["project_code"]
    message = error.errors[0].message
    assert project.code in message and "项目代码" in message and "(" in message  # Chinese, then English
    assert theirs.code not in message  # the refusal says nothing of the other code (whether it exists or not)
    assert steps.kept(session, iid) == before
    assert data_of(session, iid)["project_code"] == project.code
    assert steps.names(session, iid) == ["submit_application"]


def test_another_stage_is_refused_naming_the_field(world: Any) -> None:
    session = world
    project, iid, task_id = bound(session)
    before = steps.kept(session, iid)
    error = refused(session, task_id, application(project, stage="construction_permit"))
    assert [e.field for e in error.errors] == ["stage"]
    assert "立项用地规划许可" in error.errors[0].message and "审批阶段" in error.errors[0].message
    both = refused(session, task_id, application(project, project_code="XM-2025-9999", stage="completion_acceptance"))
    assert sorted(e.field for e in both.errors) == ["project_code", "stage"]
    assert steps.kept(session, iid) == before
    assert data_of(session, iid)["stage"] == "land_planning"


def test_the_same_code_with_whitespace_is_the_same_code_but_other_letters_are_not(world: Any) -> None:
    session = world
    project, iid, task_id = bound(session)
    error = refused(session, task_id, application(project, project_code=project.code.lower()))
    assert [e.field for e in error.errors] == ["project_code"]
    error = refused(session, task_id, application(project, stage=" construction_permit "))
    assert [e.field for e in error.errors] == ["stage"]
    steps.do(session, steps.only_task(session, iid, "submit_application"), actor_for(session, OFFICER),
             application(project, project_code=f"  {project.code}\t", stage=" land_planning "))
    data = data_of(session, iid)
    assert (data["project_code"], data["stage"]) == (project.code, "land_planning")  # stored as the project's


@pytest.mark.parametrize("missing", [(None, None), ("", ""), (None, "")])
def test_fields_left_out_or_empty_take_the_projects(world: Any, missing: tuple[Any, Any]) -> None:
    session = world
    project, iid, _task_id = bound(session)
    data = application(project)
    for field, value in zip(("project_code", "stage"), missing, strict=True):
        data.pop(field)
        if value is not None:
            data[field] = value
    steps.do(session, steps.only_task(session, iid, "submit_application"), actor_for(session, OFFICER), data)
    done = data_of(session, iid)
    assert (done["project_code"], done["stage"]) == (project.code, "land_planning")
    (event,) = session.scalars(select(AuditEvent.after).where(AuditEvent.stream == f"instance:{iid}",
                                                               AuditEvent.action == "task.complete")).all()
    assert (event["data"]["project_code"], event["data"]["stage"]) == (project.code, "land_planning")


def test_a_user_of_another_unit_cannot_submit_it_at_all(world: Any) -> None:
    session = world
    project, iid, task_id = bound(session)
    before = steps.kept(session, iid)
    with pytest.raises(TaskNotFound):
        tasks.complete(session, task_id=task_id, actor=actor_for(session, OUTSIDER), data=application(project))
    session.rollback()
    assert steps.kept(session, iid) == before


def test_an_approval_started_without_a_project_keeps_its_free_form(world: Any) -> None:
    session = world
    project = new_project(session)
    row = instances.start(session, process_key=approvals.PROCESS_KEY, actor=actor_for(session, OFFICER),
                          business_key="by-hand", title="手工发起的并联审批")
    session.commit()
    steps.do(session, steps.only_task(session, row.id, "submit_application"), actor_for(session, OFFICER),
             application(project, project_code="2025-370281-26-03-012345", stage="construction_permit"))
    done = data_of(session, row.id)
    assert (done["project_code"], done["stage"]) == ("2025-370281-26-03-012345", "construction_permit")


@pytest.mark.parametrize("hostile", [12345, ["XM-2025-0001"], {"code": "XM-2025-0001"}, True, "X" * 100_000,
                                     "XM-2025-0001\u200b", "ＸＭ-2025-0001"])
def test_malformed_or_oversized_codes_are_refused_naming_the_field_without_echoing_them(world: Any,
                                                                                       hostile: Any) -> None:
    session = world
    project, iid, task_id = bound(session)
    before = steps.kept(session, iid)
    error = refused(session, task_id, application(project, project_code=hostile))
    assert [e.field for e in error.errors] == ["project_code"]
    assert len(error.errors[0].message) < 300 and project.code in error.errors[0].message
    assert steps.kept(session, iid) == before


def test_the_refusal_names_the_forms_other_problems_too(world: Any) -> None:
    session = world
    project, iid, task_id = bound(session)
    error = refused(session, task_id, application(project, stage="construction_permit", contact_phone="12",
                                                  contact_name=None))
    assert sorted(e.field for e in error.errors) == ["contact_name", "contact_phone", "stage"]
    assert steps.names(session, iid) == ["submit_application"]
