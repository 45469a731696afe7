"""A user task's `escalation` property picks its deadline policy (the modeller's 督办升级方案)."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, deploy
from engine.deadlines import sla
from engine.deadlines.models import DeadlineWatch
from engine.org.actors import SYSTEM
from engine.runtime import instances
from engine.tasks.models import HumanTask

BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="profiled" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="urgent_task" name="紧急事项">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="sla" value="10wd" />
        <spiffworkflow:property name="escalation" value="urgent" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:userTask id="plain_task" name="一般事项">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="sla" value="10wd" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="urgent_task" />
    <bpmn:sequenceFlow id="f2" sourceRef="urgent_task" targetRef="plain_task" />
    <bpmn:sequenceFlow id="f3" sourceRef="plain_task" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""

POLICIES = """
defaults:
  yellow: {fraction: 0.2, working_days: 0}
  ladder: {handler: 0, unit_head: 1}
tasks:
  default: {}
  urgent:
    yellow: {fraction: 0.9, working_days: 0}
"""


def test_the_escalation_property_picks_the_policy(session: Session, tmp_path: Path, frozen: object,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    policy_file = tmp_path / "escalation.yaml"
    policy_file.write_text(POLICIES, encoding="utf-8")
    monkeypatch.setenv("JZFLOW_ESCALATION_FILE", str(policy_file))
    deploy.deploy(session, {"profiled.bpmn": BPMN.encode()}, actor=SYSTEM)
    row = instances.start(session, process_key="profiled", actor=SYSTEM)
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id))
    assert task is not None and task.escalation == "urgent" and task.escalation_policy == "urgent"
    assert task.due_at is not None and task.warn_at is not None
    span = task.due_at - task.created_at
    assert task.warn_at - task.created_at == span * 0.1  # yellow for the last 90 %, as the profile says
    sla.watch_tasks(session, now=clock.now(), policies=sla.load_policies())
    watch = session.scalar(select(DeadlineWatch).where(DeadlineWatch.object_type == "task",
                                                       DeadlineWatch.object_id == task.id))
    assert watch is not None and watch.policy == "urgent"
