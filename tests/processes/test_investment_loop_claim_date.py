"""④ 认领计划任务: a 计划完成日期 already past was kept with the claim (a slip of the year: 2020 for 2025), a promise
nobody could keep on the item's record. The service that records the claim refuses it naming `finish_by`: the form comes
back and the item stays open. Today (2025-09-01, frozen) is a date one may promise. On SQLite and PostgreSQL."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import tasks
from engine.errors import SubmissionRefused
from engine.org.actors import Actor
from plan.indicators.models import PlanItem
from tests.processes.test_investment_loop import deployed, figures, people, start
from tests.steps import do, kept, names, only_task

__all__ = ["deployed", "figures", "people"]


def test_a_finish_date_already_past_is_refused_naming_it(session: Session, people: dict[str, Actor],
                                                          deployed: dict[str, Any]) -> None:
    iid = start(session)
    do(session, only_task(session, iid, "confirm_figures"), people["tongji"], {"figures_decision": "confirm"})
    do(session, only_task(session, iid, "review_plan"), people["guihua"],
       {"items": [{"title": "智能家电强链", "industry": "smart_appliance", "indicator": "smart_appliance_scale",
                   "gap": Decimal("80")}]})
    claim = only_task(session, iid, "claim_item")
    leader = people["lizhenhua"]
    tasks.claim(session, task_id=claim.id, actor=leader)
    session.commit()
    before = kept(session, iid)
    with pytest.raises(SubmissionRefused) as refused:
        tasks.complete(session, task_id=claim.id, actor=leader, data={"measures": "专班推进", "finish_by": "2020-12-31"})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["finish_by"] and "今天" in refused.value.errors[0].message
    assert kept(session, iid) == before
    assert session.scalars(select(PlanItem.status).where(PlanItem.instance_id == iid)).all() == ["open"]
    do(session, claim, leader, {"measures": "专班推进", "finish_by": "2025-09-01"})
    assert "claim_item" not in names(session, iid)
