"""Trust I hole 4 and Trust II 8–10: process content that hangs, balloons or misleads becomes an incident."""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from click.testing import CliRunner
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from engine import cli, deploy, org
from engine.errors import DeployInvalid
from engine.org.actors import SYSTEM, actor_for
from engine.runtime import instances, timers
from engine.runtime.models import Incident, ProcessInstance
from engine.tasks.models import HumanTask, TaskCandidate

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="{key}" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
"""
TAIL = """    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="step" />
    <bpmn:sequenceFlow id="f2" sourceRef="step" targetRef="task" />
    <bpmn:sequenceFlow id="f3" sourceRef="task" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def process(step: str = "", post: str = "", key: str = "p", **props: str) -> dict[str, bytes]:
    """start → step (a script task by default) → user task `task` with these properties → end."""
    step = step or '<bpmn:scriptTask id="step"><bpmn:script>x = 1</bpmn:script></bpmn:scriptTask>'
    step = step.replace(">", "><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>", 1)
    properties = "".join(f"<spiffworkflow:property name={quoteattr(k)} value={quoteattr(v)} />"
                         for k, v in props.items())
    task = ('<bpmn:userTask id="task" name="办理"><bpmn:extensionElements><spiffworkflow:properties>'
            f"{properties}</spiffworkflow:properties>"
            + (f"<spiffworkflow:postScript>{escape(post)}</spiffworkflow:postScript>" if post else "")
            + "</bpmn:extensionElements>"
            "<bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:userTask>")
    return {f"{key}.bpmn": (HEAD.replace("{key}", key) + "    " + step + "\n    " + task + "\n" + TAIL).encode()}


def timer(expression: str) -> str:
    return ('<bpmn:intermediateCatchEvent id="step"><bpmn:timerEventDefinition id="t"><bpmn:timeDuration>'
            f"{escape(expression)}</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>")


def script(text: str) -> str:
    return f'<bpmn:scriptTask id="step"><bpmn:script>{escape(text)}</bpmn:script></bpmn:scriptTask>'


def incident_of(session: Session, instance_id: int) -> Incident:
    found = session.scalar(select(Incident).where(Incident.instance_id == instance_id))
    assert found is not None
    return found


# -- timers (hole 4, defect 8) ------------------------------------------------------------------------

def test_hole4_timer_p999999999y_refused_at_deploy(session: Session) -> None:
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, process(timer('"P999999999Y"')), actor=SYSTEM, check_lanes=False)
    problem = err.value.problems[0]
    assert problem.element_id == "step" and problem.line == 6 and "longer than 3660 days" in problem.message


def test_hole4_timer_computed_out_of_range_is_an_incident_at_once(session: Session, frozen: object) -> None:
    deploy.deploy(session, process(timer('"P" + years + "Y"')), actor=SYSTEM, check_lanes=False)
    began = time.monotonic()
    row = instances.start(session, process_key="p", actor=SYSTEM, data={"years": "999999999"})
    assert time.monotonic() - began < 3.0
    assert row.status == "incident"
    incident = incident_of(session, row.id)
    assert incident.kind == "timer_error" and "3660 days" in incident.message


def test_defect8_timer_expression_giving_a_timedelta_is_a_duration(session: Session, frozen: object) -> None:
    deploy.deploy(session, process(timer("timedelta(days=2)")), actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="p", actor=SYSTEM)
    assert row.status == "running"
    assert row.next_timer_at is not None
    from engine import clock
    assert abs((row.next_timer_at - clock.now()).total_seconds() - 2 * 86400) < 1
    clock.advance(timedelta(days=3))
    timers.fire_instance(session, row.id, now=clock.now())
    assert session.scalar(select(HumanTask.bpmn_id).where(HumanTask.instance_id == row.id)) == "task"


def test_defect8_missing_multi_instance_collection_is_an_incident(session: Session) -> None:
    mi = ('<bpmn:scriptTask id="step"><bpmn:multiInstanceLoopCharacteristics isSequential="true">'
          "<bpmn:loopDataInputRef>items</bpmn:loopDataInputRef>"
          '<bpmn:inputDataItem id="item" name="item" /></bpmn:multiInstanceLoopCharacteristics>'
          "<bpmn:script>y = item</bpmn:script></bpmn:scriptTask>")
    deploy.deploy(session, process(mi), actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="p", actor=SYSTEM)
    assert row.status == "incident"
    incident = incident_of(session, row.id)
    assert incident.bpmn_id == "step" and "Missing data input" in incident.message


def test_defect8_cli_start_and_complete_print_the_incident_and_fail(session: Session, db_url: str,
                                                                    tmp_path: Path) -> None:
    org.add_user(session, username="zhang", display_name="张三")
    deploy.deploy(session, process(script("x = 1 / 0"), key="broken"), actor=SYSTEM)
    deploy.deploy(session, process(post="y = missing_name"), actor=SYSTEM)
    session.commit()
    env = {"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(tmp_path)}
    result = CliRunner().invoke(cli.main, ["start", "broken", "--as", "zhang"], env=env)
    assert result.exit_code == cli.INCIDENT_EXIT, result.output
    assert "ZeroDivisionError" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli.main, ["start", "p", "--as", "zhang"], env=env)
    assert result.exit_code == 0, result.output
    task_id = session.scalar(select(HumanTask.id).where(HumanTask.bpmn_id == "task"))
    session.rollback()  # end the read: SQLite's writer (the CLI) would wait for it
    result = CliRunner().invoke(cli.main, ["complete", str(task_id), "--as", "zhang"], env=env)
    assert result.exit_code == cli.INCIDENT_EXIT, result.output
    assert "missing_name" in result.output
    session.expire_all()
    assert session.scalar(select(Incident.kind).join(ProcessInstance).where(ProcessInstance.status == "incident")
                          .order_by(Incident.id.desc()).limit(1)) == "script_error"


# -- assignment (defects 9, 10; hole 4 candidates) ---------------------------------------------------

def test_defect9_user_task_without_lane_or_candidates_goes_to_the_initiator(session: Session) -> None:
    org.add_user(session, username="zhang", display_name="张三")
    org.add_user(session, username="li", display_name="李四")
    deploy.deploy(session, process(), actor=SYSTEM)
    row = instances.start(session, process_key="p", actor=actor_for(session, "zhang"))
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id))
    assert task is not None
    assert [c.user_id for c in task.candidates] == [actor_for(session, "zhang").user_id]
    from engine import tasks
    assert [t.id for t in tasks.open_tasks(session, actor_for(session, "zhang"))] == [task.id]
    assert tasks.open_tasks(session, actor_for(session, "li")) == []


@pytest.mark.parametrize(("prop", "expression"), [
    ("candidates", "reviewrs"),  # a typo: NameError
    ("candidates", "1 / 0"),
    ("candidates", "{'a': 1}"),  # not names
    ("assignee", "owner.name"),
    ("due", "deadline_typo"),
    ("due", "'next tuesday'"),
])
def test_defect10_mistyped_task_expression_is_an_incident(session: Session, prop: str, expression: str) -> None:
    org.add_user(session, username="zhang", display_name="张三")
    deploy.deploy(session, process(**{prop: expression}), actor=SYSTEM)
    row = instances.start(session, process_key="p", actor=actor_for(session, "zhang"))
    assert row.status == "incident"
    incident = incident_of(session, row.id)
    assert incident.kind == "expression_error" and incident.bpmn_id == "task"
    assert f"{prop} expression '{expression}'" in incident.message
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id))
    assert task is not None and task.state == "suspended"  # not silently handed to a lane or to nobody


def test_defect9_admin_reassigns_a_task_of_an_instance_in_incident(session: Session) -> None:
    org.add_user(session, username="zhang", display_name="张三")
    org.add_user(session, username="admin", display_name="管理员", is_admin=True)
    deploy.deploy(session, process(candidates="reviewrs"), actor=SYSTEM)
    row = instances.start(session, process_key="p", actor=SYSTEM)
    assert row.status == "incident"
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id))
    assert task is not None and task.state == "suspended"
    from engine.errors import Forbidden
    from plan import supervision
    with pytest.raises(Forbidden):
        supervision.reassign(session, seen=None, actor=actor_for(session, "zhang"), object_type="task", object_id=task.id,
                             to_username="zhang")
    supervision.reassign(session, seen=None, actor=actor_for(session, "admin"), object_type="task", object_id=task.id,
                         to_username="zhang")
    assert task.assignee_id == actor_for(session, "zhang").user_id


def test_hole4_candidates_resolve_in_one_query_and_100k_names_are_refused(session: Session) -> None:
    org.add_role(session, code="reviewer", name="审批人")
    org.add_unit(session, code="fgj", name="发改局")
    for name in ("u1", "u2"):
        org.add_user(session, username=name, display_name=name)
    deploy.deploy(session, process(candidates="names"), actor=SYSTEM)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        if "app_user" in sql and "org_unit" in sql:
            statements.append(sql)
    event.listen(session.get_bind(), "before_cursor_execute", count)
    try:
        row = instances.start(session, process_key="p", actor=SYSTEM,
                              data={"names": ["u1", "fgj", "审批人", "u2", "nobody", "u1"]})
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", count)
    assert len(statements) == 1
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id))
    assert task is not None
    got = session.execute(select(TaskCandidate.user_id, TaskCandidate.org_unit_id, TaskCandidate.role_id)
                          .where(TaskCandidate.task_id == task.id).order_by(TaskCandidate.id)).all()
    assert [tuple(x is not None for x in g) for g in got] == [(True, False, False), (False, True, False),
                                                               (False, False, True), (True, False, False)]
    began = time.monotonic()
    # 50,000: start data past 100,000 values is refused at the door (engine/content_limits.py), before any candidate
    row = instances.start(session, process_key="p", actor=SYSTEM, data={"names": [f"n{i}" for i in range(50_000)]})
    assert time.monotonic() - began < 10
    assert row.status == "incident" and "50000 names (limit 500)" in incident_of(session, row.id).message


# -- state size and memory (hole 4) ------------------------------------------------------------------

def test_hole4_oversized_state_is_an_incident_and_not_saved(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MAX_STATE_KB", "64")
    deploy.deploy(session, process(script("s = 'x' * 1000\nfor i in range(7):\n    s += s")), actor=SYSTEM,
                  check_lanes=False)
    row = instances.start(session, process_key="p", actor=SYSTEM)
    assert row.status == "incident"
    incident = incident_of(session, row.id)
    assert incident.kind == "state_too_large" and "64 KB" in incident.message
    state = session.scalar(select(ProcessInstance.state).where(ProcessInstance.id == row.id))
    assert state is not None and len(state) < 64 * 1024 and "xxxx" not in state
    from engine import runtime
    assert runtime.load(session, row.id).workflow is not None  # the page still opens
