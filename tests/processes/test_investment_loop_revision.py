"""七步工作法: a plan revision (计划调整) signalled to the running period while ③ is open (issue "Engine II").

The signal goes through the worker's batches (run here as the job function); the period goes back to ② with
the revision in `plan_revision`, ③ opens again saying so. Only 产业规划 and 市级领导 may signal it.
"""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import Forbidden
from engine.jobs_messages import run_signal_deliveries
from engine.org.actors import Actor
from engine.runtime import signals
from tests.processes import test_investment_loop as loop
from tests.processes.test_investment_loop import restored, start, task_data
from tests.steps import do, only_task

people, figures, deployed = loop.people, loop.figures, loop.deployed  # the loop's fixtures, used here too


def test_a_plan_revision_sends_the_open_review_back_to_the_gap_analysis(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], deployed: dict[str, str]) -> None:
    iid = start(session)
    do(session, only_task(session, iid, "confirm_figures"), people["tongji"], {"figures_decision": "confirm"})
    first = only_task(session, iid, "review_plan")
    with pytest.raises(Forbidden):  # 招商专员 may not revise the plan
        signals.broadcast(session, name="计划调整", actor=people["zhaoshang"], payload={"note": "x"})
    session.rollback()
    out = signals.broadcast(session, name="计划调整", actor=people["guihua"],
                            payload={"note": "市政府调整智能家电产业链年度目标"})
    session.commit()
    assert out.waiting == 1 and out.started == ()
    assert run_signal_deliveries(factory) == (1, False)
    session.expire_all()
    second = only_task(session, iid, "review_plan")
    assert second.id != first.id  # ③ opened again after ② ran with the revised plan
    data: dict[str, Any] = task_data(session, second)
    assert data["plan_revision"] == {"note": "市政府调整智能家电产业链年度目标"}
    with restored(session, factory, iid) as running:
        assert running.row.status == "running"
    assert run_signal_deliveries(factory) == (0, False)  # once
