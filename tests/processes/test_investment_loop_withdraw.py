"""⑤ 服务企业 taken back (撤回) and sent again: its service runs again, and each problem is still raised once.

Each problem of a visit starts an issue_ledger instance. The step's submission can be taken back while nothing after
it has been acted on (nothing has, in ⑤'s branch), and sent again — with the same problems, or one added: the
problems raised the first time kept their issues and a second issue of each was started beside it.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from engine import runtime
from engine.org.actors import Actor
from engine.tasks import sendback
from tests.processes.test_investment_loop import children, data_of, deployed, figures, people, start, start_data, to_fork
from tests.steps import do
from tests.steps import only_task as only

__all__ = ["deployed", "figures", "people"]

LAND = {"title": "扩产项目用地指标未落实", "unit_code": "zrzyj"}
POWER = {"title": "10kV增容迟缓", "unit_code": "gxj"}


def _visits(*problems: dict[str, Any]) -> dict[str, Any]:
    return {"visits": [{"enterprise": "青岛海智电器有限公司", "visited_on": "2025-09-01", "summary": "企业扩产",
                        "problems": list(problems)}]}


def test_visits_taken_back_and_sent_again_raise_each_problem_once(session: Session, people: dict[str, Actor],
                                                                 deployed: dict[str, str]) -> None:
    iid = start(session)
    to_fork(session, people, iid, [])
    visits = only(session, iid, "record_visits")
    do(session, visits, people["fuwu"], _visits(LAND))
    [first] = children(session, "issue_ledger")
    reopened = sendback.withdraw(session, task_id=visits.id, actor=people["fuwu"], reason="补充走访发现的问题")
    session.commit()
    do(session, reopened, people["fuwu"], _visits(LAND, POWER))
    issues = children(session, "issue_ledger")
    assert [start_data(session, i.id)["title"] for i in issues] == ["扩产项目用地指标未落实", "10kV增容迟缓"]
    assert issues[0].id == first.id
    said = data_of(runtime.load(session, iid, read_only=True), "raise_issues")["visit_result"]
    assert [i["instance_id"] for i in said["issues"]] == [first.id, issues[1].id]  # the first one named, not again
