"""督办's free texts are bounded like 催办's: a note over 2,000 characters is refused naming `note`, nothing written
(it went whole into the notification and the audit trail, which is never erased). On SQLite and PostgreSQL."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.audit.models import AuditEvent
from engine.deadlines.models import DeadlineAction
from engine.errors import InvalidInput
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor
from plan import supervision
from plan.ledger.models import LedgerIssue
from tests.engine.test_escalation import _task, make_issue, people

__all__ = ["make_issue", "people"]
HUGE = "督" * 1_000_000


@pytest.mark.parametrize("action", ["reassign", "escalate"])
def test_an_oversized_note_is_refused_naming_the_field(session: Session, people: dict[str, Actor], frozen: Any,
                                                       make_issue: Callable[..., LedgerIssue], action: str) -> None:
    issue = make_issue(date(2025, 9, 5))
    audited = session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(InvalidInput) as refused:
        if action == "reassign":
            supervision.reassign(session, actor=people["zhou"], object_type="issue", object_id=issue.id,
                                 to_username="li", note=HUGE, seen=None)
        else:
            supervision.escalate(session, actor=people["zhou"], object_type="issue", object_id=issue.id, note=HUGE,
                                 seen=None)
    assert refused.value.details["field"] == "note"
    session.rollback()
    assert session.scalar(select(func.count()).select_from(DeadlineAction)) == 0
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == audited
    # 2,000 characters pass, as 催办's message
    supervision.reassign(session, actor=people["zhou"], object_type="issue", object_id=issue.id, to_username="li",
                         note="督" * 2000, seen=None)
    session.commit()


def test_an_oversized_opinion_is_refused_not_cut(session: Session, people: dict[str, Actor], frozen: Any) -> None:
    """审批意见 over 2,000 characters: refused naming `opinion` (a task's request kept the first 2,000 silently, an
    issue's named its process form's leader_opinion, a field the 督办 form does not have)."""
    task = _task(session, people)
    supervision.request_extension(session, actor=people["zhang"], task_id=task.id, due_date=date(2025, 9, 20),
                                  reason="等待企业补充材料")
    session.commit()
    with pytest.raises(InvalidInput) as refused:
        supervision.decide_extension(session, actor=people["zhou"], object_type="task", object_id=task.id, grant=False,
                                     opinion="不" * 2001)
    assert refused.value.details["field"] == "opinion"
    session.rollback()
    assert session.scalar(select(func.count()).select_from(DeadlineAction)) == 0


def test_an_extension_reason_past_its_limit_is_refused_not_cut(session: Session, people: dict[str, Actor],
                                                               frozen: Any) -> None:
    """申请延期's reason over 2,000 characters: refused naming `reason`, nothing stored (it kept the first 2,000
    silently); 2,000 with a line break counted as one pass whole, as the other texts of the product."""
    from engine.deadlines.models import ExtensionRequest
    task = _task(session, people)
    audited = session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(InvalidInput) as refused:
        supervision.request_extension(session, actor=people["zhang"], task_id=task.id, due_date=date(2025, 9, 20),
                                      reason="等" * 2001)
    assert refused.value.details["field"] == "reason"
    assert refused.value.message == ("延期理由（reason）超过 2000 字，请删减后重新提交 "
                                     "(reason is longer than 2000 characters)")
    session.rollback()
    assert session.scalar(select(func.count()).select_from(ExtensionRequest)) == 0
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == audited
    whole = "等" * 1000 + "\n" + "材" * 999
    request = supervision.request_extension(session, actor=people["zhang"], task_id=task.id,
                                            due_date=date(2025, 9, 20), reason=f"  {whole}  ")
    session.commit()
    assert request.reason == whole


@pytest.mark.parametrize("day", [date(2025, 8, 31), date(2025, 9, 1)])
def test_an_extension_to_a_day_not_after_today_is_refused_naming_the_date(
        session: Session, people: dict[str, Actor], frozen: Any, day: date) -> None:
    """Today (2025-09-01) ends tonight: asked for or granted, it was accepted as a new deadline already all but past."""
    task = _task(session, people)
    audited = session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(InvalidInput) as refused:
        supervision.request_extension(session, actor=people["zhang"], task_id=task.id, due_date=day, reason="等材料")
    assert refused.value.details["field"] == "due_date" and "今天" in refused.value.message
    session.rollback()
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == audited
    supervision.request_extension(session, actor=people["zhang"], task_id=task.id, due_date=date(2025, 9, 20),
                                  reason="等待企业补充材料")
    session.commit()
    with pytest.raises(InvalidInput) as refused:
        supervision.decide_extension(session, actor=people["zhou"], object_type="task", object_id=task.id, grant=True,
                                     due_date=day, opinion="同意")
    assert refused.value.details["field"] == "due_date"
    session.rollback()
    assert session.scalar(select(func.count()).select_from(DeadlineAction)) == 0


def test_an_extension_request_tells_the_unit_head_who_decides_it(session: Session, people: dict[str, Actor],
                                                                 frozen: Any) -> None:
    """A request waited unseen on the 督办 list: the head of the task's unit (who may decide it: their area) is told,
    as the ladder's unit_head rung reaches them; the asker is not told of their own request."""
    task = _task(session, people)
    supervision.request_extension(session, actor=people["zhang"], task_id=task.id, due_date=date(2025, 9, 20),
                                  reason="等待企业补充材料")
    session.commit()
    told = [m.payload for m in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))]
    assert [p["user_id"] for p in told] == [people["zhou"].user_id]
    assert told[0]["title"] == "张伟申请延期: 核对企业材料"
    assert "2025-09-20" in told[0]["body"] and "等待企业补充材料" in told[0]["body"]


def test_a_head_asking_tells_the_unit_s_responsible_leader(session: Session, people: dict[str, Actor],
                                                           frozen: Any) -> None:
    """Nobody decides their own request: the head holding the step asks, the rung above (责任领导) is told."""
    task = _task(session, people)
    task.assignee_id = people["zhou"].user_id
    session.commit()
    supervision.request_extension(session, actor=people["zhou"], task_id=task.id, due_date=date(2025, 9, 20),
                                  reason="等待企业补充材料")
    session.commit()
    told = [m.payload["user_id"] for m in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))]
    assert told == [people["wang"].user_id]
