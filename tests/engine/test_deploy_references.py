"""What a model names by literal text, checked against the organisation at deploy: warnings, never refusals.

A user task's `escalationUnit` that is no unit, and an `assignee` that is a unit or a role rather than a username,
were ignored without a word (the ladder climbed from the handler's unit; the task went to the lane or the
initiator). Units and users may be created after the deploy, so these are warnings on the deploy's result (the
modeller and `jzflow deploy` show them), pinned to the element and the attribute; the version is stored.
"""
from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import cli, deploy, org
from engine.deploy import references
from engine.errors import DeployProblem
from engine.org.actors import SYSTEM
from engine.runtime.models import ProcessVersion

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="named" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f0</bpmn:outgoing></bpmn:startEvent>
"""


def _bpmn(tasks: list[tuple[str, dict[str, str]]]) -> str:
    """A process of user tasks in a row, each with the given properties (values are XML-escaped by the caller)."""
    body = []
    for i, (task_id, props) in enumerate(tasks):
        lines = "".join(f'<spiffworkflow:property name="{k}" value="{v}" />' for k, v in props.items())
        body.append(f'<bpmn:userTask id="{task_id}" name="步骤{i}"><bpmn:extensionElements><spiffworkflow:properties>'
                    f'{lines}</spiffworkflow:properties></bpmn:extensionElements>'
                    f'<bpmn:incoming>f{i}</bpmn:incoming><bpmn:outgoing>f{i + 1}</bpmn:outgoing></bpmn:userTask>\n'
                    f'<bpmn:sequenceFlow id="f{i}" sourceRef="{"start" if i == 0 else tasks[i - 1][0]}" '
                    f'targetRef="{task_id}" />\n')
    n = len(tasks)
    body.append(f'<bpmn:endEvent id="end"><bpmn:incoming>f{n}</bpmn:incoming></bpmn:endEvent>\n'
                f'<bpmn:sequenceFlow id="f{n}" sourceRef="{tasks[-1][0]}" targetRef="end" />\n')
    return HEAD + "".join(body) + "  </bpmn:process>\n</bpmn:definitions>\n"


def _world(session: Session) -> None:
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_role(session, code="reviewer", name="审批人")
    org.add_user(session, username="li", display_name="李振华", unit_codes=["gxj"], role_codes=["reviewer"])
    session.commit()


def _warnings(session: Session, tasks: list[tuple[str, dict[str, str]]]) -> list[DeployProblem]:
    [result] = deploy.deploy(session, {"named.bpmn": _bpmn(tasks)}, actor=SYSTEM)
    session.commit()
    return list(result.warnings)


def test_an_escalation_unit_that_is_no_unit_is_a_warning_naming_the_element(session: Session) -> None:
    _world(session)
    found = _warnings(session, [("claim", {"escalationUnit": "'foo'"}), ("ok_code", {"escalationUnit": "'gxj'"}),
                                ("ok_name", {"escalationUnit": "'工业和信息化局'"}),
                                ("from_data", {"escalationUnit": "unit"}),  # an expression: known only when it runs
                                ("a_user", {"escalationUnit": "&quot;li&quot;"})])  # a person is not a unit
    assert [(w.element_id, w.file) for w in found] == [("claim", "named.bpmn"), ("a_user", "named.bpmn")]
    assert found[0].message.startswith("元素 claim 的 escalationUnit 'foo' 不是任何单位"), found[0].message
    assert found[0].line and found[0].template and found[0].params == {"element": "claim", "name": "foo"}
    assert session.scalar(select(func.count()).select_from(ProcessVersion)) == 1  # stored: a warning, not a refusal


def test_an_assignee_that_is_a_unit_or_a_role_is_a_warning_pointing_to_candidates(session: Session) -> None:
    _world(session)
    found = _warnings(session, [("by_unit", {"assignee": "'gxj'"}), ("by_role", {"assignee": "'审批人'"}),
                                ("by_user", {"assignee": "'li'"}), ("by_list", {"assignee": "['li', 'reviewer']"}),
                                ("nobody", {"assignee": "'no_such_person'"}),  # told when it runs (assignee_unknown)
                                ("by_data", {"assignee": "applicant"})])
    assert [w.element_id for w in found] == ["by_unit", "by_role", "by_list"]
    assert found[0].message.startswith("元素 by_unit 的 assignee 'gxj' 是单位/角色而不是用户名；请用 candidates")
    assert "'reviewer'" in found[2].message and "'li'" not in found[2].message


def test_an_unchanged_redeploy_still_says_its_warnings(session: Session) -> None:
    _world(session)
    tasks = [("claim", {"escalationUnit": "'foo'"})]
    assert len(_warnings(session, tasks)) == 1
    [again] = deploy.deploy(session, {"named.bpmn": _bpmn(tasks)}, actor=SYSTEM)
    assert not again.created and [w.element_id for w in again.warnings] == ["claim"]
    org.add_unit(session, code="foo", name="新单位")  # created after the deploy: the warning goes away
    [later] = deploy.deploy(session, {"named.bpmn": _bpmn(tasks)}, actor=SYSTEM)
    assert later.warnings == ()


def test_hostile_names_are_cut_to_printable_text(session: Session) -> None:
    _world(session)
    long = "x" * 100_000
    found = _warnings(session, [("long", {"escalationUnit": f"'{long}'"}),
                                ("ctrl", {"escalationUnit": "'a\\nb\\x1b[31m\\u202e'"}),
                                ("many", {"assignee": repr(["gxj"] * 1 + [f"u{i}" for i in range(400)] + ["reviewer"])
                                          .replace("'", "&apos;")})])
    assert [w.element_id for w in found] == ["long", "ctrl", "many"]
    assert long not in found[0].message and len(found[0].message) < 300 and "x" * 80 + "…" in found[0].message
    assert all(c.isprintable() for w in found for c in w.message), [w.message for w in found]
    assert "\x1b" not in found[1].message and "\n" not in found[1].message


def test_thousands_of_elements_give_a_bounded_list_of_warnings(session: Session) -> None:
    _world(session)
    n = 2_000
    started = time.monotonic()
    found = _warnings(session, [(f"t{i}", {"escalationUnit": f"'bad{i}'", "assignee": "'gxj'"}) for i in range(n)])
    assert time.monotonic() - started < 60
    assert len(found) == references.MAX_WARNINGS + 1
    assert found[-1].params == {"count": 2 * n - references.MAX_WARNINGS}, found[-1]
    assert found[0].element_id == "t0" and found[-1].element_id is None


def test_jzflow_deploy_prints_the_warnings(session: Session, tmp_path: Path, db_url: str) -> None:
    _world(session)
    (tmp_path / "named.bpmn").write_text(_bpmn([("claim", {"escalationUnit": "'foo'"})]), encoding="utf-8")
    env = {"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(tmp_path)}
    result = CliRunner().invoke(cli.main, ["deploy", str(tmp_path / "named.bpmn")], env=env)
    assert result.exit_code == 0, result.output
    assert "named: v1" in result.stdout
    assert "警告 (warning)" in result.stderr and "元素 claim 的 escalationUnit 'foo' 不是任何单位" in result.stderr


def test_more_names_than_a_warning_lists_are_counted_in_the_readers_words(session: Session) -> None:
    """The count of names past MAX_TOLD was “等 N 个” inside the name field, Chinese for every reader: it is the
    template's now (a `_MORE` template with `count`), so the English catalogue words it too."""
    from engine.notify import language
    _world(session)
    names = ["gxj"] + [f"u{i}" for i in range(20)]
    for i in range(20):
        org.add_unit(session, code=f"u{i}", name=f"单位{i}")
    session.commit()
    [found] = _warnings(session, [("many", {"assignee": repr(names).replace("'", "&apos;")})])
    assert found.template == references.ASSIGNEE_NOT_A_USER_MORE and found.params["count"] == 21
    assert "'gxj', 'u0'" in found.message and "等 21 个" in found.message and "' '" not in found.message
    english = language.translator("en")(found.template) % found.params  # type: ignore[misc]
    assert "21 in all" in english and not any("\u4e00" <= c <= "\u9fff" for c in english), english
