"""Who can complete a step: the application's check of a person against what the step's services will act on.

A step whose completion runs a service bound to the acting person (an application's service acting only on records
in their reach) can be completed only by someone that service accepts. An application registers a
check per process key (`register`); given a task and a person it answers why they cannot complete it, or None. The
engine asks it wherever the step is given to a person or finished, so the mistake is refused where it is made:

  转办, 委派, 督办改派 to someone who cannot complete it    refused naming the field and the reason, nothing changed
  认领 or 提交 by someone who cannot (or no longer can:        refused naming the reason (StepOutOfReach, 403), nothing
  moved to another unit since it was handed to them)          changed: the task stays theirs for a leader to 改派
  停用's handover to a successor who cannot                   released to its candidates instead

Co-signers (加签) only sign: the holder's submission runs the services, so they are not asked. The check is called
through `duties.require_not_barred`, which every one of those places calls already.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from engine.errors import StepOutOfReach
from engine.org.actors import Actor, actor_of
from engine.org.models import User
from engine.tasks.models import HumanTask

Check = Callable[[Session, HumanTask, Actor], "str | None"]  # why they cannot complete it ("中文 (English)"), or None
_CHECKS: dict[str, Check] = {}


def register(process_key: str, check: Check) -> None:
    """Make `check` decide who can complete the steps of the process's instances (one check per process key)."""
    _CHECKS[process_key] = check


def unfit(session: Session, task: HumanTask, user_id: int) -> str | None:
    """Return why the user cannot complete the task (Chinese, then English), or None when they can."""
    check = _CHECKS.get(task.process_key)
    if check is None or task.kind == "cosign" or task.instance_id is None:
        return None
    user = session.get(User, user_id)
    return check(session, task, actor_of(session, user)) if user is not None else None


def require_fit(session: Session, task: HumanTask, user_id: int, *, field: str | None = None, who: str = "") -> None:
    """Refuse handing the task to (or its taking or completion by) a person who cannot complete it, naming the
    reason (and the field when the person was chosen in one).

    Raises: StepOutOfReach
    """
    reason = unfit(session, task, user_id)
    if reason is None:
        return
    if field:
        raise StepOutOfReach.handed(who, field, reason, task_id=task.id)
    raise StepOutOfReach.of(reason, task_id=task.id)


__all__ = ["Check", "register", "require_fit", "unfit"]
