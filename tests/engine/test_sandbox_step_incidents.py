"""A step that runs in C (or in a pure-Python codec) never ticks the budget: it is refused before it runs."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import deploy
from engine.org.actors import SYSTEM
from engine.runtime import instances
from engine.runtime.models import Incident
from tests.engine.test_sandbox_runtime import bpmn


@pytest.mark.parametrize("script", [
    "x = pow(7, 1 << 20000, (1 << 20000) - 1) % 10",
    "x = int(Decimal('1e600000')) % 10",
    "s = ''.join([chr(0x4e00 + (i * 7919) % 20000) for i in range(8000)])\nx = len(s.encode('punycode'))",
    "a = [0]\nfor i in range(22):\n    a = [a, a]",
])
def test_a_step_longer_than_the_budget_ends_as_a_budget_incident(session: Session, monkeypatch: pytest.MonkeyPatch,
                                                                 script: str) -> None:
    monkeypatch.setenv("JZFLOW_SCRIPT_TIME_LIMIT", "0.5")
    deploy.deploy(session, bpmn(script=script, condition="True"), actor=SYSTEM)
    began = time.monotonic()
    row = instances.start(session, process_key="scripted", actor=SYSTEM)
    elapsed = time.monotonic() - began
    incident = session.scalar(select(Incident).where(Incident.instance_id == row.id))
    assert elapsed < 3.0, (elapsed, row.status, incident and incident.kind)
    assert row.status == "incident" and incident is not None and incident.kind == "budget_exceeded"
    assert incident.bpmn_id == "the_script"
