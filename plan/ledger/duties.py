"""问题台账 separation of duties (职责分离): whoever did the work of an issue neither confirms nor verifies it.

"明确责任人 … 实施销号制度": the person responsible for an issue answers for the fix; its 回访 (the confirmation that it
is fixed) and its 核验 (the check that closes it, 销号) are someone else's. Who did the work: the issue's handler (责任人)
now, and whoever completed its 办理 or 反馈 (a handler 改派 replaced, someone 转办 gave a step to). They are barred from
the `revisit` and `verify` steps (engine.tasks.duties applies it where the step is assigned, claimed, completed or
handed on), and the ledger's own services refuse them too (`require_separate`), whatever a model calls its steps.

With nobody else eligible — the raiser is the handler and no other active ledger officer remains — the step goes to
the responsible unit's head and the issue's responsible leader (市级领导包挂: 督办), never to the handler; with neither
(or both deactivated), to the administrators, as any task nobody can take (the event `task.duty_barred` says so).
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import DutyRefused
from engine.org.models import OrgUnit
from engine.runtime.effects import RunContext
from engine.tasks import duties
from engine.tasks.models import HumanTask
from plan.ledger.models import LedgerIssue

PROCESS_KEY = "issue_ledger"
WORK_STEPS = ("handle", "feedback")  # 办理, 反馈: completing one is doing the work
RULES = {
    "revisit": "回访不能由问题的办理人进行，应由提出人或其他台账管理员回访 "
               "(separation of duties: the handler of an issue may not do its return visit)",
    "verify": "核验人不能是问题的办理人：办理、反馈过本问题的人不能核验、销号 "
              "(separation of duties: whoever handled an issue may not verify or close it)",
}


def workers(session: Session, issue: LedgerIssue) -> frozenset[int]:
    """Who did the work of the issue: its handler, and whoever completed one of its 办理 or 反馈 steps."""
    done: set[int | None] = set(session.scalars(select(HumanTask.completed_by_id).where(
        HumanTask.instance_id == issue.instance_id, HumanTask.bpmn_id.in_(WORK_STEPS),
        HumanTask.state == "completed", HumanTask.completed_by_id.is_not(None)))) if issue.instance_id else set()
    return frozenset(i for i in (*done, issue.handler_id) if i is not None)


def _fallback(session: Session, issue: LedgerIssue) -> tuple[int, ...]:
    unit = session.get(OrgUnit, issue.unit_id) if issue.unit_id else None
    found = [unit.leader_id if unit else None, issue.responsible_leader_id,
             unit.responsible_leader_id if unit else None]
    return tuple(dict.fromkeys(i for i in found if i is not None))


def rule(session: Session, instance_id: int, bpmn_id: str) -> duties.Duty | None:
    """The 问题台账's rule for engine.tasks.duties: its 回访 and 核验 steps bar whoever did the work."""
    if bpmn_id not in RULES:
        return None
    issue = session.scalar(select(LedgerIssue).where(LedgerIssue.instance_id == instance_id))
    if issue is None:
        return None
    return duties.Duty(workers(session, issue), RULES[bpmn_id], _fallback(session, issue))


def require_separate(ctx: RunContext, issue: LedgerIssue, step: str) -> None:
    """Refuse the service of 回访 or 核验 run for one who did the work (the completion is refused, nothing changes),
    whatever the model calls the step that led here. The issue's row is locked first: a 改派 at the same moment making
    them the handler waits for this completion, or this completion for it, and reads it.

    Raises: DutyRefused
    """
    if ctx.actor.user_id is None:
        return
    ctx.session.execute(select(LedgerIssue.id).where(LedgerIssue.id == issue.id).with_for_update())
    ctx.session.refresh(issue, ["handler_id"])
    if ctx.actor.user_id in workers(ctx.session, issue):
        raise DutyRefused(RULES[step], issue_id=issue.id, rule=RULES[step])


duties.register(PROCESS_KEY, rule)

__all__ = ["PROCESS_KEY", "RULES", "require_separate", "rule", "workers"]
