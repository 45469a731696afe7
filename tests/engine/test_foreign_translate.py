"""Models from Camunda 7, Camunda 8 and Flowable run after translation; the report lists each translated element.

Without translation the same files are refused as before, and the refusal says translation is available.
What the translator cannot carry over faithfully stays refused, naming the element and line.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, deploy, tasks
from engine.errors import DeployInvalid, FormInvalid
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.spiff import foreign_expr
from engine.spiff.foreign_expr import Untranslatable
from engine.spiff.translate import translate_bundle
from engine.tasks.models import HumanTask
from tests.conftest import FIXTURES

FOREIGN = FIXTURES / "foreign"
EXPORTS = {
    "camunda7": ["camunda7_purchase.bpmn"],
    "camunda8": ["camunda8_claim.bpmn", "camunda8_claim_level.dmn"],
    "flowable": ["flowable_leave.bpmn20.xml"],
}
# export → every (element, what) the report must list
REPORTED = {
    "camunda7": {("Task_request", "camunda:assignee"), ("Task_request", "camunda:formData"),
                 ("Flow_big", "conditionExpression"), ("Flow_small", "conditionExpression"),
                 ("Task_leader", "camunda:candidateGroups"), ("Task_leader", "camunda:dueDate"),
                 ("Task_window", "camunda:candidateUsers"), ("Event_leader_late", "timeDuration")},
    "camunda8": {("Task_submit", "zeebe:assignmentDefinition assignee"), ("Task_level", "zeebe:calledDecision"),
                 ("Flow_leader", "conditionExpression"), ("Flow_window", "conditionExpression"),
                 ("Task_leader", "zeebe:assignmentDefinition candidateGroups"),
                 ("Task_leader", "zeebe:taskSchedule dueDate"),
                 ("Task_window", "zeebe:assignmentDefinition candidateUsers"),
                 ("UnaryTests_big_amount", "inputEntry"), ("UnaryTests_mid_travel_amount", "inputEntry"),
                 ("UnaryTests_mid_travel_category", "inputEntry"), ("UnaryTests_mid_other_amount", "inputEntry"),
                 ("UnaryTests_mid_other_category", "inputEntry"),
                 ("UnaryTests_small_amount", "inputEntry")},
    "flowable": {("sid-6C1F5A2B-fill", "flowable:assignee"), ("sid-2D8E6F90-leader", "flowable:candidateGroups"),
                 ("sid-7F3A9B15-window", "flowable:candidateUsers"), ("sid-8D2F0A6E-long", "conditionExpression"),
                 ("sid-1A6B3C7D-short", "conditionExpression"), ("startEvent1", "flowable:initiator")},
}


def export(name: str) -> dict[str, bytes | str]:
    return {f: (FOREIGN / f).read_bytes() for f in EXPORTS[name]}


def ready(session: Session, instance_id: int) -> HumanTask:
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.state == "ready"))
    assert task is not None
    return task


def do(session: Session, instance_id: int, bpmn_id: str, actor: Actor, data: dict[str, Any]) -> HumanTask:
    task = ready(session, instance_id)
    assert task.bpmn_id == bpmn_id, task.bpmn_id
    tasks.claim(session, task_id=task.id, actor=actor)
    result = tasks.complete(session, task_id=task.id, actor=actor, data=data)
    assert result.incident is None, result.incident
    session.commit()
    return task


def status(session: Session, instance_id: int) -> str:
    row = session.get(ProcessInstance, instance_id)
    assert row is not None
    return row.status


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_without_translation_the_export_is_refused_and_the_hint_offers_it(session: Session, name: str) -> None:
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, export(name), actor=SYSTEM, check_lanes=False)
    problems = err.value.problems
    assert problems and all(p.line is not None and p.element_id for p in problems)
    assert any("--translate" in p.message for p in problems)


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_the_report_lists_each_translated_element_and_keeps_line_numbers(name: str) -> None:
    files = export(name)
    translation = translate_bundle(files)
    assert {(t.element_id, t.what) for t in translation.report} == REPORTED[name]
    assert translation.kept == []
    for item in translation.report:
        original = (FOREIGN / item.file).read_text().splitlines()
        translated = str(translation.files[item.file]).splitlines()
        assert len(translated) == len(original)
        assert item.line is not None and item.element_id is not None
        shown = original[item.line - 1]
        marks = (item.element_id, item.what.split(":")[-1].split()[0], "<text>")
        assert any(mark in shown for mark in marks), (item, shown)


def test_camunda7_export_runs_after_translation(session: Session, review_org: dict[str, Actor]) -> None:
    translation = translate_bundle(export("camunda7"))
    assert "Task_request.schema.json" in translation.files  # camunda:formData → a JSON Schema form
    deploy.deploy(session, translation.files, actor=SYSTEM, check_lanes=False)
    session.commit()
    big = instances.start(session, process_key="camunda_purchase", actor=review_org["applicant"])
    session.commit()
    request = ready(session, big.id)
    assert request.form_schema == "Task_request.schema.json"
    assert request.assignee_id == review_org["applicant"].user_id  # assignee ${initiator}
    with pytest.raises(FormInvalid):  # the translated form's constraints hold: amount >= 1 and required item
        tasks.complete(session, task_id=request.id, actor=review_org["applicant"], data={"amount": 0})
    session.rollback()
    do(session, big.id, "Task_request", review_org["applicant"],
       {"item": "投影仪", "amount": 8000, "urgency": "urgent", "needed_by": "2025-09-20"})
    leader = ready(session, big.id)
    assert leader.bpmn_id == "Task_leader"  # ${amount > 5000}
    assert leader.due_at is not None and clock.as_utc(leader.due_at) == datetime(2025, 9, 20, 15, 59, 59,
                                                                                  tzinfo=clock.UTC)
    do(session, big.id, "Task_leader", review_org["boss"], {})  # candidateGroups leader (a role)
    assert status(session, big.id) == "completed"
    small = instances.start(session, process_key="camunda_purchase", actor=review_org["applicant"])
    session.commit()
    do(session, small.id, "Task_request", review_org["applicant"], {"item": "笔", "amount": 30})
    do(session, small.id, "Task_window", review_org["window"], {})  # candidateUsers window
    assert status(session, small.id) == "completed"


@pytest.mark.parametrize(("amount", "category", "next_task", "who"), [
    (8000, "office", "Task_leader", "boss"), (3000, "travel", "Task_leader", "boss"),
    (3000, "office", "Task_window", "window"), (200, "travel", "Task_window", "window"),
])
def test_camunda8_export_and_its_feel_decision_run_after_translation(session: Session, review_org: dict[str, Actor],
                                                                     amount: int, category: str, next_task: str,
                                                                     who: str) -> None:
    deploy.deploy(session, translate_bundle(export("camunda8")).files, actor=SYSTEM, check_lanes=False)
    session.commit()
    row = instances.start(session, process_key="camunda8_claim", actor=review_org["applicant"])
    session.commit()
    do(session, row.id, "Task_submit", review_org["applicant"], {"amount": amount, "category": category})
    task = ready(session, row.id)
    assert task.bpmn_id == next_task
    if next_task == "Task_leader":
        assert task.due_at is not None and clock.as_utc(task.due_at) == datetime(2025, 9, 30, 9, 0, tzinfo=clock.UTC)
    do(session, row.id, next_task, review_org[who], {})
    assert status(session, row.id) == "completed"


@pytest.mark.parametrize(("days", "reason", "next_task", "who"), [
    (5, "探亲", "sid-2D8E6F90-leader", "boss"), (2, "病假", "sid-7F3A9B15-window", "window"),
    (9, None, "sid-7F3A9B15-window", "applicant"),
])
def test_flowable_export_runs_after_translation(session: Session, review_org: dict[str, Actor], days: int,
                                                reason: str | None, next_task: str, who: str) -> None:
    deploy.deploy(session, translate_bundle(export("flowable")).files, actor=SYSTEM, check_lanes=False)
    session.commit()
    row = instances.start(session, process_key="flowable_leave", actor=review_org["applicant"])
    session.commit()
    do(session, row.id, "sid-6C1F5A2B-fill", review_org["applicant"], {"days": days, "reason": reason})
    do(session, row.id, next_task, review_org[who], {})
    assert status(session, row.id) == "completed"


def test_what_cannot_be_translated_stays_refused_with_element_and_line(session: Session) -> None:
    name = "camunda7_invoice.bpmn"
    translation = translate_bundle({name: (FOREIGN / name).read_bytes()})
    translated = {(t.element_id, t.what) for t in translation.report}
    assert ("Flow_approved", "conditionExpression") in translated  # ${approved}
    kept = {(t.element_id, t.what): t.after for t in translation.kept}
    assert "calls" in kept[("Task_approve", "camunda:dueDate")]  # ${dateTime().plusDays(3).toDate()}
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, translation.files, actor=SYSTEM, check_lanes=False)
    refused = {(p.element_id, w) for p in err.value.problems for w in ("camunda:class", "groovy", "javascript",
                                                                        "executionListener", "camunda:dueDate")
               if w in p.message}
    assert {("Task_archive", "camunda:class"), ("Task_notify", "groovy"), ("Flow_rejected", "javascript"),
            ("camunda_invoice", "executionListener"), ("Task_approve", "camunda:dueDate")} <= refused
    original = (FOREIGN / name).read_text().splitlines()
    for p in err.value.problems:
        assert p.line is not None and p.element_id is not None
        assert p.element_id in original[p.line - 1] or p.element_id in "".join(original[p.line - 3:p.line])


@pytest.mark.parametrize(("text", "python"), [
    ("${approved}", "approved"), ("${amount > 5000}", "amount > 5000"), ("#{a.b eq 'x'}", "a['b'] == 'x'"),
    ("${not approved or amount lt 10}", "not approved or amount < 10"), ("${x == null}", "x == None"),
    ("${a / 2 + b mod 3}", "a / 2 + b % 3"), ("${-x >= -1.5}", "-x >= -1.5"),
])
def test_juel_subset(text: str, python: str) -> None:
    assert foreign_expr.juel(text) == python


@pytest.mark.parametrize(("text", "python"), [
    ("=amount > 5000", "amount > 5000"), ('= status = "ok"', "status == 'ok'"), ("=a and (b or c)", "a and (b or c)"),
    ("=x between 1 and 10", "1 <= x <= 10"), ("=x in [1..10)", "1 <= x < 10"), ('=x in ["a", "b"]', "x in ('a', 'b')"),
    ("=not(done)", "not done"), ("=order.total * 2 != 3", "order['total'] * 2 != 3"),
])
def test_feel_subset(text: str, python: str) -> None:
    assert foreign_expr.feel(text) == python


@pytest.mark.parametrize(("text", "python"), [
    ("-", "-"), ("> 5000", "? > 5000"), ("[1..10]", "1 <= ? <= 10"), ("]1..10[", "1 < ? < 10"),
    ('"A","B"', "? in ('A', 'B')"), ('not("A")', "not ? == 'A'"), ("< 5, > 10", "? < 5 or ? > 10"),
    ("true", "? == True"), ("-3", "? == -3"),
])
def test_feel_unary_tests(text: str, python: str) -> None:
    assert foreign_expr.feel_unary_tests(text) == python


@pytest.mark.parametrize("text", [
    "${execution.getVariable('a')}", "${__import__('os').system('id')}", "${a.__class__}", "${_secret}",
    "${class}", "${empty list}", "${'a' + b}", "${a ? b : c}", "${a[0]}", "text ${a}", "${a} and ${b}",
    "${" + "(" * 60 + "a" + ")" * 60 + "}", "${" + "a" * 5000 + "}", "${a < b < c}", "${a;b}", "${a}}",
    "=if a then b else c", "=count(items) > 1", "=order amount > 3", "=items[1]", "=a ** 2", "=some x in y satisfies x",
    "='single quoted'", "=date(\"2024-01-01\")", "=" + "-" * 80 + "1", "=\"\\u0041\"",
])
def test_outside_the_subset_is_refused_never_guessed(text: str) -> None:
    with pytest.raises(Untranslatable):
        foreign_expr.juel(text) if text.startswith(("$", "t")) else foreign_expr.feel(text)


def test_translation_of_hostile_or_broken_files_never_crashes() -> None:
    broken: dict[str, bytes | str] = {
        "a.bpmn": b"<not xml", "b.bpmn": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>',
        "c.bpmn": bytes(range(256)), "d.dmn": "<definitions exporter='Camunda Modeler'><decision id='x'>"
        "<decisionTable id='t'><rule id='r'><inputEntry id='i'><text>[1..</text></inputEntry></rule>"
        "</decisionTable></decision></definitions>", "e.json": b"{}",
    }
    translation = translate_bundle(broken)
    assert translation.files["a.bpmn"] == broken["a.bpmn"] and translation.files["c.bpmn"] == broken["c.bpmn"]
    assert translation.files["b.bpmn"] == broken["b.bpmn"]
    assert [(k.element_id, k.what) for k in translation.kept] == [("i", "inputEntry")]


def test_feel_cells_python_would_misread_are_refused_without_translation(session: Session) -> None:
    dmn = (FOREIGN / "camunda8_claim_level.dmn").read_text()
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, {"claim_level.dmn": dmn, "minimal.bpmn": (FIXTURES / "good" / "minimal.bpmn").read_bytes()},
                      actor=SYSTEM, check_lanes=False)
    found = {p.element_id: p for p in err.value.problems if p.file == "claim_level.dmn"}
    assert set(found) == {"UnaryTests_mid_travel_amount", "UnaryTests_mid_travel_category",
                          "UnaryTests_mid_other_amount", "UnaryTests_mid_other_category"}  # not "> 5000": same meaning
    travel = found["UnaryTests_mid_travel_category"]
    assert "? in ('travel', 'training')" in travel.message and "--translate" in travel.message
    assert travel.line is not None and '"travel","training"' in dmn.splitlines()[travel.line - 1]


def test_a_dmn_of_jzflow_python_cells_is_left_alone() -> None:
    name = "review_departments.dmn"
    text = (FIXTURES / "good" / name).read_bytes()
    translation = translate_bundle({name: text})
    assert translation.files[name] == text and translation.report == []


def test_cli_deploy_translate_lists_each_change_and_without_it_refuses(db_url: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from engine import cli
    env = {"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(tmp_path)}
    runner = CliRunner()
    path = str(FOREIGN / "flowable_leave.bpmn20.xml")
    refused = runner.invoke(cli.main, ["deploy", "--no-lane-check", path], env=env)
    assert refused.exit_code == 2 and "flowable:assignee" in refused.output and "--translate" in refused.output
    done = runner.invoke(cli.main, ["deploy", "--no-lane-check", "--translate", path], env=env)
    assert done.exit_code == 0, done.output
    assert "translated 6 item(s)" in done.output and "flowable_leave: v1" in done.output
    assert "flowable_leave.bpmn20.xml:14 [sid-8D2F0A6E-long] conditionExpression" in done.output
    kept = runner.invoke(cli.main, ["deploy", "--no-lane-check", "--translate", str(FOREIGN / "camunda7_invoice.bpmn")],
                         env=env)
    assert kept.exit_code == 2 and "未转换 (not translated)" in kept.output and "Task_archive" in kept.output
