"""Refusals a process owner understands: each names file, element and line, in Chinese (English in the catalogue).

Each case first shows what SpiffWorkflow (or the schema, or jzflow before) says about the same file — the raw
message — and then what the deploy says now.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import deploy
from engine.deploy import references
from engine.errors import DeployInvalid, DeployProblem
from engine.org.actors import SYSTEM
from engine.runtime.models import ProcessVersion
from engine.spiff import calls, foreign_hints, parser, plain, support, translate_dmn
from tests.conftest import FIXTURES

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="defs" targetNamespace="http://x">
{before}
  <bpmn:process id="{pid}" isExecutable="{exe}">
    <bpmn:startEvent id="start">
      <bpmn:outgoing>f1</bpmn:outgoing>
    </bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
{body}
  </bpmn:process>
</bpmn:definitions>
"""
END = """    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end" />
    <bpmn:endEvent id="end">
      <bpmn:incoming>f2</bpmn:incoming>
    </bpmn:endEvent>"""


def doc(body: str, before: str = "", exe: str = "true", pid: str = "p") -> str:
    return HEAD.format(body=body, before=before, exe=exe, pid=pid)


def refused(session: Session, files: dict[str, str | bytes], *, check_lanes: bool = False) -> list[DeployProblem]:
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, files, actor=SYSTEM, check_lanes=check_lanes)
    assert session.scalar(select(func.count()).select_from(ProcessVersion)) == 0
    return err.value.problems


def spiff_says(files: dict[str, str]) -> str:
    """Return what SpiffWorkflow's own parser says about the files (the message jzflow used to pass on)."""
    spiff = SpiffBpmnParser(validator=None)
    try:
        for name, text in files.items():
            spiff.add_bpmn_xml(etree.fromstring(text.encode()), filename=name)
        for key in spiff.get_process_ids():
            spiff.get_subprocess_specs(key)
    except ValidationException as exc:
        return str(exc)
    return ""


def line_of(text: str, line: int | None) -> str:
    assert line is not None
    return text.splitlines()[line - 1]


def named(problem: DeployProblem, file: str, element: str, text: str, on_line: str) -> None:
    """The problem names the file, the element, and a line that holds `on_line`; it is written in Chinese."""
    assert problem.file == file and problem.element_id == element, problem
    assert on_line in line_of(text, problem.line), (problem, line_of(text, problem.line))
    assert problem.template is not None and any("\u4e00" <= ch <= "\u9fff" for ch in problem.message)
    assert "0x7f" not in problem.message and "None" not in problem.message and "{http" not in problem.message


TASK_WITH_DATA_OUT = """    <bpmn:task id="work" name="登记">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:dataOutputAssociation id="assoc">
        <bpmn:targetRef>ledger_ref</bpmn:targetRef>
      </bpmn:dataOutputAssociation>
    </bpmn:task>
""" + END
BRANCHING_TASK = """    <bpmn:task id="work" name="审核">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:task>
    <bpmn:sequenceFlow id="f3" sourceRef="work" targetRef="end" />
""" + END
EMPTY_TIMER = """    <bpmn:intermediateCatchEvent id="work" name="等待">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:timerEventDefinition id="td" />
    </bpmn:intermediateCatchEvent>
""" + END
FLOW_TO_NOWHERE = """    <bpmn:task id="work">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:task>
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="Activity_deleted" />"""


@pytest.mark.parametrize(("body", "raw", "element", "on_line", "words"), [
    (TASK_WITH_DATA_OUT, "Cannot resolve dataOutputAssociation <Element", "work", "ledger_ref", "数据对象"),
    (BRANCHING_TASK, "Multiple outgoing flows are not supported for tasks of type", "work", 'id="work"', "并行网关"),
    (EMPTY_TIMER, "Unknown Time Specification", "work", "timerEventDefinition", "P5D"),
    (FLOW_TO_NOWHERE, "perhaps a form has the same ID? (Activity_deleted)", "f2", "Activity_deleted", "不存在"),
], ids=["data-association", "branching-task", "empty-timer", "flow-to-nowhere"])
def test_spiffworkflow_parser_messages_become_the_owners_words(session: Session, body: str, raw: str, element: str,
                                                               on_line: str, words: str) -> None:
    text = doc(body)
    assert raw in spiff_says({"p.bpmn": text})  # what was shown before
    problems = refused(session, {"p.bpmn": text})
    [problem] = problems
    named(problem, "p.bpmn", element, text, on_line)
    assert words in problem.message
    assert raw not in problem.message


def test_a_duplicate_id_is_named_once_with_both_lines(session: Session) -> None:
    body = """    <bpmn:task id="work">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:task>
    <bpmn:task id="work" name="copy" />
""" + END
    text = doc(body)
    root = etree.fromstring(text.encode())
    VALIDATOR.preprocess(root)
    assert not VALIDATOR.validator.validate(root)
    assert "is not a valid value of the atomic type 'xs:ID'" in str(VALIDATOR.validator.error_log)  # the raw XSD
    [problem] = refused(session, {"p.bpmn": text})
    named(problem, "p.bpmn", "work", text, 'name="copy"')
    first_line = next(i for i, line in enumerate(text.splitlines(), 1) if '<bpmn:task id="work">' in line)
    assert f"第 {first_line} 行" in problem.message and "xs:ID" not in problem.message


def test_other_schema_errors_are_shown_without_namespace_noise(session: Session) -> None:
    text = doc('    <bpmn:task id="work" bogus="1" />\n' + END)
    problems = refused(session, {"p.bpmn": text})
    assert problems and all("{http://www.omg.org" not in p.message and p.template == plain.SCHEMA_ERROR
                            for p in problems)


def test_a_signal_event_without_a_signal_says_so_not_none(session: Session) -> None:
    body = """    <bpmn:intermediateCatchEvent id="work">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:signalEventDefinition id="sd" />
    </bpmn:intermediateCatchEvent>
""" + END
    text = doc(body)  # was refused as "signal catch 'None'" (before signals were routed, support.py said so)
    problems = refused(session, {"p.bpmn": text})
    [problem] = [p for p in problems if p.element_id == "work"]
    named(problem, "p.bpmn", "work", text, "signalEventDefinition")
    assert "signalRef" in problem.message


def test_a_missing_called_process_names_the_call_activity_and_its_file_only(session: Session) -> None:
    caller = doc("""    <bpmn:callActivity id="work" name="调用审批" calledElement="approval_v2">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:callActivity>
""" + END)
    other = doc("    <bpmn:task id=\"work\" />\n" + END, pid="q")
    files = {"a_caller.bpmn": caller, "b_other.bpmn": other}
    assert "The process 'approval_v2' was not found" in spiff_says(files)
    problems = refused(session, dict(files))
    [problem] = problems
    named(problem, "a_caller.bpmn", "work", caller, "calledElement")
    assert problem.template == calls.UNKNOWN_CALLED and "approval_v2" in problem.message


def test_a_bundle_of_non_executable_processes_names_the_process_and_its_line(session: Session) -> None:
    text = doc("    <bpmn:task id=\"work\" />\n" + END, exe="false")
    [problem] = refused(session, {"p.bpmn": text})
    named(problem, "p.bpmn", "p", text, 'isExecutable="false"')
    assert "可执行" in problem.message


@pytest.mark.parametrize(("condition", "shows", "never"), [
    ("= if amount &gt; 5 then true else false", "amount > 5000", "write if amount"),
    ('=status = "ok"', "status == 'ok'", 'write status = "ok"'),
    ("${amount gt 5000}", "amount > 5000", "write amount gt"),
])
def test_a_feel_or_juel_condition_hint_shows_python_only(session: Session, condition: str, shows: str,
                                                         never: str) -> None:
    body = f"""    <bpmn:exclusiveGateway id="work" default="f2">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:sequenceFlow id="f3" sourceRef="work" targetRef="end">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{condition}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
""" + END
    text = doc(body)
    problems = refused(session, {"p.bpmn": text})
    [problem] = [p for p in problems if p.element_id == "f3"]
    named(problem, "p.bpmn", "f3", text, "conditionExpression")
    assert shows in problem.message and never not in problem.message
    assert problem.template in (foreign_hints.TRANSLATABLE, foreign_hints.UNTRANSLATABLE)


def test_an_xpath_timer_hint_shows_a_duration_not_a_condition(session: Session) -> None:
    body = """    <bpmn:intermediateCatchEvent id="work">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:timerEventDefinition id="td">
        <bpmn:timeDuration xsi:type="bpmn:tFormalExpression" language="http://www.w3.org/1999/XPath">PT5M</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
""" + END
    text = doc(body)
    [problem] = refused(session, {"p.bpmn": text})
    named(problem, "p.bpmn", "work", text, "XPath")
    assert '"P5D"' in problem.message and "amount > 5000" not in problem.message


def test_an_unknown_lane_says_how_to_create_the_role(session: Session) -> None:
    before = ""
    body = """    <bpmn:laneSet id="lanes">
      <bpmn:lane id="Lane_chief" name="科长">
        <bpmn:flowNodeRef>work</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:userTask id="work">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
""" + END
    text = doc(body, before)
    [problem] = refused(session, {"p.bpmn": text}, check_lanes=True)
    named(problem, "p.bpmn", "Lane_chief", text, 'name="科长"')
    assert "jzflow add-role" in problem.message and "科长" in problem.message


def test_the_cli_has_the_add_role_command_the_hint_names() -> None:
    from click.testing import CliRunner

    from engine.cli import main
    result = CliRunner().invoke(main, ["add-role", "--help"])
    assert result.exit_code == 0 and "CODE" in result.output and "NAME" in result.output


TEMPLATE_SOURCES: list[Callable[[], dict[str, str]]] = [
    lambda: dict(plain.templates()), foreign_hints.templates,
    lambda: {n: v for n, v in vars(calls).items() if n.isupper() and isinstance(v, str) and "%(" in v},
    lambda: {n: v for n, v in vars(references).items() if n.isupper() and isinstance(v, str) and "%(" in v},
    lambda: {"LANE_UNKNOWN": parser.LANE_UNKNOWN, "NOT_EXECUTABLE": support.NOT_EXECUTABLE,
             "FEEL_CELL": translate_dmn.FEEL_CELL, "FEEL_CELL_UNTRANSLATABLE": translate_dmn.FEEL_CELL_UNTRANSLATABLE},
]


def test_every_owner_message_has_an_english_translation() -> None:
    from babel.messages.pofile import read_po

    from tests.conftest import FIXTURES
    with open(FIXTURES.parent.parent / "web" / "translations" / "en" / "LC_MESSAGES" / "messages.po", "rb") as fh:
        catalog = read_po(fh)
    for source in TEMPLATE_SOURCES:
        for name, template in source().items():
            message = catalog.get(template)
            assert message is not None and message.string, name
            fields = set(re.findall(r"%\((\w+)\)s", template))
            assert fields == set(re.findall(r"%\((\w+)\)s", str(message.string))), name


def test_extension_ids_may_repeat_as_in_jzflow_s_own_diagrams(session: Session) -> None:
    files = {p.name: p.read_bytes() for p in (FIXTURES.parent.parent / "bpmn").glob("*.bpmn")}
    for name, raw in files.items():
        root = etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False, no_network=True))
        assert plain.duplicate_ids(name, root)[0] == []
