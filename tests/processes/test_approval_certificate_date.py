"""联合出证's 出证日期 is the window's to type: one before the application was made, or still to come, was kept.

A slip of the year (2020 for 2025) issued 胶审〔2020〕0001号 — a number of a year long closed, its series started over —
on a certificate dated before the application, and the 审批用时 came out negative. The service that numbers it refuses
such a date naming the field (`issued_on`): the form comes back, nothing is issued. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from engine import clock, documents, tasks
from engine.errors import SubmissionRefused
from engine.org.actors import Actor
from engine.runtime import instances
from tests.processes.test_parallel_approval import (  # noqa: F401 (fixtures used by name)
    APPLICATION,
    accept,
    approve_all,
    at,
    data_of,
    deployed,
    people,
)
from tests.steps import do, kept, only_task


@pytest.fixture
def ready(session: Session, deployed: None, people: dict[str, Actor]) -> int:  # noqa: F811
    clock.freeze(at("2025-09-25"))
    row = instances.start(session, process_key="parallel_approval", actor=people["qiye_zhang"],
                          business_key=APPLICATION["project_code"], title="并联审批")
    session.commit()
    do(session, only_task(session, row.id, "submit_application"), people["qiye_zhang"], APPLICATION)
    accept(session, people, row.id, at("2025-09-26"))
    approve_all(session, people, row.id)
    clock.freeze(at("2025-10-10", "10:00"))
    task = only_task(session, row.id, "issue_certificate")
    tasks.claim(session, task_id=task.id, actor=people["window_wang"])
    session.commit()
    return row.id


@pytest.mark.parametrize(("day", "says"), [("2020-01-01", "申请"), ("2025-09-24", "申请"), ("2025-10-11", "今天")])
def test_a_certificate_date_before_the_application_or_still_to_come_is_refused(
        session: Session, ready: int, people: dict[str, Actor], day: str, says: str) -> None:  # noqa: F811
    task = only_task(session, ready, "issue_certificate")
    before = kept(session, ready)
    issued = [d.kind for d in documents.for_instance(session, ready)]  # the 受理通知书 of 一窗受理
    with pytest.raises(SubmissionRefused) as refused:
        tasks.complete(session, task_id=task.id, actor=people["window_wang"], data={"issued_on": day})
    session.rollback()
    assert [e.field for e in refused.value.errors] == ["issued_on"] and says in refused.value.errors[0].message
    assert kept(session, ready) == before and [d.kind for d in documents.for_instance(session, ready)] == issued
    assert issued == ["approval_acceptance_notice"]
    # the day it was applied for and today are both dates a window may give
    do(session, task, people["window_wang"], {"issued_on": "2025-09-25"})
    assert data_of(session, ready)["certificate"]["number"] == "胶审〔2025〕0001号"
