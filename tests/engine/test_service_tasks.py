"""Service tasks call registered operations inside the unit of work; unknown ones are refused at deploy."""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import deploy, runtime
from engine.errors import DeployInvalid
from engine.org.actors import SYSTEM
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from tests.conftest import FIXTURES
from tests.steps import spawner


def parent(operator: str = "start_process", key: str = '"minimal"') -> dict[str, bytes]:
    return {"parent.bpmn": spawner("parent", operator=operator, process_key=key, business_key="project_code")}


def test_start_process_starts_a_linked_child_in_the_same_transaction(session: Session) -> None:
    files = {**deploy.read_directory(FIXTURES / "good"), **parent()}
    deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="parent", actor=SYSTEM, data={"project_code": "XM-2025-007"})
    assert row.status == "completed"
    child = session.scalar(select(ProcessInstance).where(ProcessInstance.business_key == "XM-2025-007"))
    assert child is not None and child.id != row.id and child.status == "running"
    assert session.scalar(select(HumanTask.bpmn_id).where(HumanTask.instance_id == child.id)) == "approve"
    data = runtime.load(session, row.id).workflow.last_task.data
    assert data["child"] == {"instance_id": child.id, "status": "running"}
    assert runtime.load(session, child.id).workflow.last_task.data["parent_instance_id"] == row.id


def test_an_applications_start_route_answers_start_process_for_its_process(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """A route the application registered for a process key answers start_process (here: the case's instance there
    is); None from it starts the process as usual."""
    files = {**deploy.read_directory(FIXTURES / "good"), **parent()}
    deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    first = instances.start(session, process_key="minimal", actor=SYSTEM, business_key="CASE-1")
    asked: list[tuple[dict[str, object], str | None]] = []

    def route(ctx: object, data: dict[str, object], business_key: str | None,
              title: str | None) -> dict[str, object] | None:
        asked.append((data, business_key))
        return {"instance_id": first.id, "status": first.status, "linked": True} if business_key == "CASE-1" else None

    monkeypatch.setitem(instances.START_ROUTES, "minimal", route)
    row = instances.start(session, process_key="parent", actor=SYSTEM, data={"project_code": "CASE-1"})
    assert runtime.load(session, row.id).workflow.last_task.data["child"] == {
        "instance_id": first.id, "status": "running", "linked": True}
    assert session.scalars(select(ProcessInstance.id).where(ProcessInstance.business_key == "CASE-1")).all() == [
        first.id]  # nothing started
    other = instances.start(session, process_key="parent", actor=SYSTEM, data={"project_code": "CASE-2"})
    child = session.scalar(select(ProcessInstance).where(ProcessInstance.business_key == "CASE-2"))
    assert child is not None and runtime.load(session, other.id).workflow.last_task.data["child"]["instance_id"] \
        == child.id
    assert [(d["parent_instance_id"], k) for d, k in asked] == [(row.id, "CASE-1"), (other.id, "CASE-2")]


def test_unknown_service_and_bad_parameter_are_refused_at_deploy(session: Session) -> None:
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, parent(operator="rm_rf"), actor=SYSTEM)
    assert "unknown service 'rm_rf'" in err.value.problems[0].message
    assert err.value.problems[0].element_id == "spawn"
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, parent(key="__import__('os')"), actor=SYSTEM)
    assert err.value.problems[0].element_id == "spawn" and "refused" in err.value.problems[0].message


def test_a_failing_child_start_is_an_incident_of_the_parent(session: Session) -> None:
    deploy.deploy(session, parent(key='"no_such_process"'), actor=SYSTEM)
    row = instances.start(session, process_key="parent", actor=SYSTEM, data={"project_code": "X"})
    assert row.status == "incident"


def test_oversized_data_a_script_hands_start_process_is_an_incident_naming_the_task(session: Session) -> None:
    """Engine-internal data passes the same limits as a client's: the parent stops at the service task, the child is
    not started (nothing of it is saved), instead of a child whose state the save later refuses."""
    from engine import content_limits
    from engine.runtime import timeline
    files = {**deploy.read_directory(FIXTURES / "good"),
             "parent.bpmn": spawner("parent", process_key='"minimal"', business_key="project_code",
                                    data=f"{{'rows': list(range({content_limits.MAX_DATA_VALUES + 1}))}}")}
    deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="parent", actor=SYSTEM, data={"project_code": "XM-BIG"})
    assert row.status == "incident"
    [incident] = timeline.incidents(session, row.id)
    # checked as the service is called (any service's parameters pass the data limits first): names it and the parameter
    assert incident.bpmn_id == "spawn" and "parameter data" in incident.message, incident.message
    assert "start_process" in incident.message and "100,000" in incident.message
    assert session.scalar(select(ProcessInstance).where(ProcessInstance.business_key == "XM-BIG")) is None
