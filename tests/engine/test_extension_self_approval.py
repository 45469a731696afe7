"""申请延期 is decided by someone else: a unit head holding a task (or handling an issue) who asks for more time may
not grant it himself through 督办, although his area covers his own unit. On SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy.orm import Session

from engine.deadlines.models import ExtensionRequest
from engine.errors import Forbidden
from engine.org.actors import Actor
from engine.tasks.models import HumanTask
from plan import supervision
from tests.engine.test_escalation import _task, people

__all__ = ["people"]


def test_a_head_may_not_grant_his_own_extension_request(session: Session, people: dict[str, Actor],
                                                        frozen: Any) -> None:
    task = _task(session, people)
    task.assignee_id = people["zhou"].user_id  # the head of 工信局 holds it himself
    session.commit()
    request = supervision.request_extension(session, actor=people["zhou"], task_id=task.id,
                                            due_date=date(2025, 9, 30), reason="等待企业补充材料")
    session.commit()
    due = session.get(HumanTask, task.id).due_at  # type: ignore[union-attr]
    for grant in (True, False):
        with pytest.raises(Forbidden) as refused:
            supervision.decide_extension(session, actor=people["zhou"], object_type="task", object_id=task.id,
                                         grant=grant, due_date=date(2025, 9, 30), opinion="同意")
        assert "本人" in str(refused.value)
        session.rollback()
    assert session.get(ExtensionRequest, request.id).status == "pending"  # type: ignore[union-attr]
    assert session.get(HumanTask, task.id).due_at == due  # type: ignore[union-attr]
    # the city leader above him decides it
    supervision.decide_extension(session, actor=people["wang"], object_type="task", object_id=task.id, grant=True,
                                 due_date=date(2025, 9, 30), opinion="同意")
    session.commit()
    assert session.get(ExtensionRequest, request.id).status == "granted"  # type: ignore[union-attr]
