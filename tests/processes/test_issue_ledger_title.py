"""An issue registered by hand names its instance: every step of it said only 问题台账销号 in 待办 and the lists.

Started from 发起流程 without a title, the instance keeps the process's name as its title (问题台账销号), so the
dispatcher's and the unit's 待办 showed 派单 · 问题台账销号, 响应 · 问题台账销号 for every issue typed in by hand. 登记
gives it the issue's own title the way the demo and 走访 name theirs (企业：问题); a title given at the start is kept.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from engine.org.actors import Actor
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from tests.processes.test_issue_ledger import REGISTRATION, TITLE, deployed, people
from tests.steps import do, only_task

__all__ = ["deployed", "people"]


def registered(session: Session, people: dict[str, Actor], title: str | None, **form: str) -> ProcessInstance:
    row = instances.start(session, process_key="issue_ledger", actor=people["officer"], title=title)
    session.commit()
    do(session, only_task(session, row.id, "register_issue"), people["officer"], {**REGISTRATION, **form})
    session.refresh(row)
    return row


def test_an_issue_started_without_a_title_takes_the_issues_own(session: Session, deployed: None,
                                                                  people: dict[str, Actor]) -> None:
    row = registered(session, people, None)
    assert row.title == f"青岛海智电器有限公司：{TITLE}"
    row = registered(session, people, None, enterprise="")
    assert row.title == f"问题：{TITLE}"


def test_a_title_given_at_the_start_is_kept(session: Session, deployed: None, people: dict[str, Actor]) -> None:
    assert registered(session, people, "海智电器增容").title == "海智电器增容"
