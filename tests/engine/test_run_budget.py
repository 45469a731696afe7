"""Every engine run has a work budget (JZFLOW_RUN_TIME_LIMIT, JZFLOW_MAX_RUN_TASKS): a task tree that grows sideways
(a loop with no script to tick the script budget, a fork that doubles, binary recursion, a timer cycle that fires on
every completion) becomes an incident `run_too_long`, never a hung request or a stuck timer sweep."""
from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, config, deploy, jobs
from engine.org.actors import SYSTEM
from engine.runtime import instances
from engine.runtime.models import Incident, ProcessInstance
from tests.conftest import FIXTURES

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"'
        ' xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">\n')


class Hung(BaseException):
    """Raised by the alarm; a BaseException so the runtime cannot turn it into an incident."""


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def ring(*_: object) -> None:
        raise Hung(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def _short_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_RUN_TIME_LIMIT", "1")


def cycler(cycle: str) -> str:
    return HEAD + f"""  <bpmn:process id="cycler" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="work" name="办理"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:boundaryEvent id="tick" attachedToRef="work" cancelActivity="false"><bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeCycle>"{cycle}"</bpmn:timeCycle></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end2"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end" />
    <bpmn:sequenceFlow id="f3" sourceRef="tick" targetRef="end2" />
  </bpmn:process>
</bpmn:definitions>
"""


def sweep_with_a_runaway_cycle(session: Session, factory: sessionmaker[Session], cycle: str,
                               late: timedelta) -> None:
    deploy.deploy(session, deploy.read_directory(FIXTURES / "good"), actor=SYSTEM, check_lanes=False)
    row = instances.start(session, process_key="cycler", actor=SYSTEM)
    other = instances.start(session, process_key="timer_wait", actor=SYSTEM, data={"wait_for": "PT1H"})
    session.commit()
    clock.advance(late)
    with deadline(30):
        jobs.run_timer_sweep(factory, batch=100)
    session.expire_all()
    assert session.get(ProcessInstance, other.id).status == "completed"  # type: ignore[union-attr]
    assert session.get(ProcessInstance, row.id).status == "incident"  # type: ignore[union-attr]
    incident = session.scalar(select(Incident).where(Incident.instance_id == row.id))
    assert incident is not None and incident.kind == "run_too_long"


def test_a_zero_cycle_timer_is_refused_or_becomes_an_incident_and_the_sweep_goes_on(
        session: Session, factory: sessionmaker[Session], frozen: object) -> None:
    try:
        deploy.deploy(session, {"c.bpmn": cycler("R/PT0S").encode()}, actor=SYSTEM, check_lanes=False)
    except Exception:  # a deploy-time minimum cycle interval refuses it: fine too
        session.rollback()
        return
    sweep_with_a_runaway_cycle(session, factory, "R/PT0S", timedelta(hours=2))


def test_an_hourly_cycle_decades_late_becomes_an_incident_and_the_sweep_goes_on(
        session: Session, factory: sessionmaker[Session], frozen: object) -> None:
    # A cycle any deploy check allows, firing once per completion until it has caught up with ~500,000 hours.
    deploy.deploy(session, {"c.bpmn": cycler("R/PT1H").encode()}, actor=SYSTEM, check_lanes=False)
    sweep_with_a_runaway_cycle(session, factory, "R/PT1H", timedelta(days=365 * 60))


STD_LOOP = HEAD + """  <bpmn:process id="looped" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="again" scriptFormat="python"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:standardLoopCharacteristics><bpmn:loopCondition>True</bpmn:loopCondition></bpmn:standardLoopCharacteristics>
      <bpmn:script>x = 1</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="again" />
    <bpmn:sequenceFlow id="f2" sourceRef="again" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""
FORK = HEAD + """  <bpmn:process id="looped" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:exclusiveGateway id="merge">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:incoming>f4</bpmn:incoming><bpmn:incoming>f5</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing></bpmn:exclusiveGateway>
    <bpmn:parallelGateway id="split">
      <bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:outgoing>f6</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:scriptTask id="a" scriptFormat="python">
      <bpmn:incoming>f3</bpmn:incoming>
      <bpmn:outgoing>f4</bpmn:outgoing>
      <bpmn:script>x = 1</bpmn:script></bpmn:scriptTask>
    <bpmn:scriptTask id="b" scriptFormat="python">
      <bpmn:incoming>f6</bpmn:incoming>
      <bpmn:outgoing>f5</bpmn:outgoing>
      <bpmn:script>y = 1</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="merge" />
    <bpmn:sequenceFlow id="f2" sourceRef="merge" targetRef="split" />
    <bpmn:sequenceFlow id="f3" sourceRef="split" targetRef="a" />
    <bpmn:sequenceFlow id="f6" sourceRef="split" targetRef="b" />
    <bpmn:sequenceFlow id="f4" sourceRef="a" targetRef="merge" />
    <bpmn:sequenceFlow id="f5" sourceRef="b" targetRef="merge" />
  </bpmn:process>
</bpmn:definitions>
"""
TWICE = HEAD + """  <bpmn:process id="looped" isExecutable="true">
    <bpmn:startEvent id="s"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:parallelGateway id="split">
      <bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:outgoing>f3</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:callActivity id="c1" calledElement="looped">
      <bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>f4</bpmn:outgoing></bpmn:callActivity>
    <bpmn:callActivity id="c2" calledElement="looped">
      <bpmn:incoming>f3</bpmn:incoming>
      <bpmn:outgoing>f5</bpmn:outgoing></bpmn:callActivity>
    <bpmn:parallelGateway id="join">
      <bpmn:incoming>f4</bpmn:incoming><bpmn:incoming>f5</bpmn:incoming>
      <bpmn:outgoing>f6</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:endEvent id="e"><bpmn:incoming>f6</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="split" />
    <bpmn:sequenceFlow id="f2" sourceRef="split" targetRef="c1" />
    <bpmn:sequenceFlow id="f3" sourceRef="split" targetRef="c2" />
    <bpmn:sequenceFlow id="f4" sourceRef="c1" targetRef="join" />
    <bpmn:sequenceFlow id="f5" sourceRef="c2" targetRef="join" />
    <bpmn:sequenceFlow id="f6" sourceRef="join" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.mark.parametrize("text", [FORK, TWICE], ids=["forking_loop", "binary_recursion"])
def test_a_runaway_loop_without_a_user_task_becomes_an_incident_quickly(session: Session, text: str) -> None:
    deploy.deploy(session, {"l.bpmn": text.encode()}, actor=SYSTEM, check_lanes=False)
    with deadline(30):
        row = instances.start(session, process_key="looped", actor=SYSTEM)
    assert row.status == "incident"
    incident = session.scalar(select(Incident).where(Incident.instance_id == row.id))
    assert incident is not None and incident.kind == "run_too_long"
    assert "JZFLOW_RUN_TIME_LIMIT" in incident.message or "JZFLOW_MAX_RUN_TASKS" in incident.message
    session.commit()  # the state as far as it ran was saved with the incident
    session.expire_all()
    assert session.get(ProcessInstance, row.id).state != "{}"  # type: ignore[union-attr]


def test_a_standard_loop_stops_at_the_round_cap_or_the_run_budget(session: Session) -> None:
    # fanout's round cap (JZFLOW_MAX_MULTI_INSTANCE) bounds it; the run budget bounds it by time even so.
    deploy.deploy(session, {"l.bpmn": STD_LOOP.encode()}, actor=SYSTEM, check_lanes=False)
    began = time.monotonic()
    with deadline(30):
        row = instances.start(session, process_key="looped", actor=SYSTEM)
    assert row.status == "incident"
    assert time.monotonic() - began < 10
    incident = session.scalar(select(Incident).where(Incident.instance_id == row.id))
    assert incident is not None and incident.kind in {"too_many_instances", "run_too_long"}


def test_the_task_count_stops_a_run_before_the_clock_does(session: Session,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_RUN_TIME_LIMIT", "60")
    monkeypatch.setenv("JZFLOW_MAX_RUN_TASKS", "200")
    deploy.deploy(session, {"l.bpmn": FORK.encode()}, actor=SYSTEM, check_lanes=False)
    with deadline(30):
        row = instances.start(session, process_key="looped", actor=SYSTEM)
    incident = session.scalar(select(Incident).where(Incident.instance_id == row.id))
    assert incident is not None and incident.kind == "run_too_long"
    assert "200" in incident.message and "JZFLOW_MAX_RUN_TASKS" in incident.message


@pytest.mark.parametrize(("name", "value"), [("JZFLOW_RUN_TIME_LIMIT", "0"), ("JZFLOW_RUN_TIME_LIMIT", "soon"),
                                             ("JZFLOW_MAX_RUN_TASKS", "0")])
def test_the_run_budget_settings_are_checked(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(config.SettingInvalid, match=name):
        config.load()


def test_the_run_budget_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JZFLOW_RUN_TIME_LIMIT")
    settings = config.load()
    assert settings.run_time_limit == 10.0 and settings.max_run_tasks == 20_000
