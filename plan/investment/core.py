"""七步工作法: services for investment_loop.bpmn — steps ①–⑤ and the period's instance.

① 指标监测预警 `indicator_statuses` assesses every indicator of the period's year against its
target; ② 缺口分析 `gap_analysis` turns the ones behind into proposed plan items; ③ the planner's
reviewed items become `PlanItem` rows (`create_plan_items`); ④ each is claimed by a leader
(`claim_plan_item`); ⑤ problems found on enterprise visits go to the issue ledger (`raise_issues`).
Steps ⑥ ⑦ (leads, 揭榜挂帅) live in `plan.projects`.

Steps ①② live in `status` (formulas there), ③④ in `plan_items`, the period and its instance in
`periods`; this module holds ⑤ and the service tasks investment_loop.bpmn calls.
"""
from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock
from engine.org.actors import Actor
from engine.runtime import effects, instances, start_limits
from engine.runtime.models import ProcessDefinition, ProcessInstance
from plan.dates import FIRST_YEAR, LAST_YEAR, YEARS
from plan.investment.plan_items import ItemsInvalid, claim_plan_item, create_plan_items, item_brief
from plan.investment.status import gap_analysis, indicator_statuses, status_summary
from plan.projects.acting import issue_project
from plan.projects.core import ProjectInputInvalid
from plan.projects.models import Project

# -- ⑤ enterprise visits → issue ledger ----------------------------------------------------------


def issue_start_data(visit: dict[str, Any], problem: dict[str, Any], reporter: str) -> dict[str, Any]:
    """Build issue_ledger's start data (contract 0001) for one problem found on a visit."""
    data: dict[str, Any] = {
        "title": str(problem["title"]), "description": str(problem.get("description") or ""),
        "enterprise": str(visit["enterprise"]), "unit_code": str(problem["unit_code"]),
        "source": "service_visit", "reporter": reporter,
    }
    if problem.get("project_code"):
        data["project_code"] = str(problem["project_code"])
    if problem.get("due_date"):
        data["due_date"] = str(problem["due_date"])
    return data


def problem_errors(visits: list[dict[str, Any]], session: Session | None = None,
                   actor: Actor | None = None) -> list[str]:
    """Return what issue_ledger's 登记 would refuse in the visits' problems, each naming its field (empty when fine).

    A blank title, a due date outside the plan's years or already past stops the started issue on an incident at once:
    the problem never reaches the ledger. They are found here, before anything is started, and the form is sent back.
    With a session, a 关联项目编号 not in the 项目库 too (登记 refuses it), and with the actor one out of their reach,
    in the same words (登记 refuses it too: `plan.projects.acting.issue_project`).
    """
    errors: list[str] = []
    today = clock.now().astimezone(clock.SHANGHAI).date()
    for v, visit in enumerate(visits):
        for p, problem in enumerate(visit.get("problems") or []):
            where = f"第{v + 1}次走访第{p + 1}个问题 visits[{v}].problems[{p}]"
            if not str(problem.get("title") or "").strip():
                errors.append(f"{where}.title：问题不能为空")
            code = str(problem.get("project_code") or "").strip()
            if session is not None and code and actor is not None:
                try:
                    issue_project(session, actor, code)
                except ProjectInputInvalid as refused:
                    errors.append(f"{where}.project_code：{refused.message}")
            elif session is not None and code and session.scalar(select(Project.id).where(Project.code == code)) is None:
                errors.append(f"{where}.project_code：项目“{code}”不在项目库中")
            due = problem.get("due_date")
            if due:
                try:
                    day: date | None = due if isinstance(due, date) else date.fromisoformat(str(due))
                except ValueError:
                    day = None
                if day is None or not FIRST_YEAR <= day.year <= LAST_YEAR:
                    errors.append(f"{where}.due_date：要求办结日期 {due} 应为 {YEARS} 年间的日期")
                elif day < today:  # 登记 refuses a deadline already past
                    errors.append(f"{where}.due_date：要求办结日期 {due} 早于今天 {today}")
    return errors


def issue_key(instance_id: int, visit: dict[str, Any], problem: dict[str, Any]) -> str:
    """The business key of the issue a problem found on a visit raises: the period's instance, the enterprise, the
    day and the problem's title. ⑤ taken back (撤回) and sent again runs its service again: a problem raised then
    finds its issue by this key instead of raising a second one beside it."""
    said = json.dumps([str(visit.get("enterprise") or ""), str(visit.get("visited_on") or ""),
                       str(problem.get("title") or "")], ensure_ascii=False)
    return f"service_visit:{instance_id}:{hashlib.sha256(said.encode()).hexdigest()[:24]}"


def raised_issue(session: Session, key: str) -> int | None:
    """The issue_ledger instance raised under this key already (not terminated), or None."""
    return session.scalar(select(ProcessInstance.id).join(ProcessDefinition)
                          .where(ProcessDefinition.key == "issue_ledger", ProcessInstance.business_key == key,
                                 ProcessInstance.status != "terminated").order_by(ProcessInstance.id).limit(1))


# -- service tasks ----------------------------------------------------------------------------------

def _instance_id(ctx: effects.RunContext) -> int:
    return ctx.running.row.id


@effects.service("loop_indicator_status")
def loop_indicator_status(ctx: effects.RunContext, period: str) -> dict[str, Any]:
    """① Assess the period's indicators; keep only counts and codes in instance data."""
    return status_summary(period, indicator_statuses(ctx.session, period))


@effects.service("loop_gap_analysis")
def loop_gap_analysis(ctx: effects.RunContext, period: str) -> dict[str, Any]:
    """② Gaps and year-end projections of the indicators behind, and draft plan items for ③."""
    return gap_analysis(ctx.session, period)


@effects.service("loop_create_plan_items")
def loop_create_plan_items(ctx: effects.RunContext, period: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """③ Create the reviewed plan items; an unknown industry or indicator sends the form back."""
    try:
        created = create_plan_items(ctx.session, period=period, instance_id=_instance_id(ctx), items=list(items),
                                    actor=ctx.actor)
    except ItemsInvalid as exc:
        return {"ok": False, "error": exc.message, "plan_items": []}
    return {"ok": True, "error": None, "plan_items": [item_brief(ctx.session, i) for i in created]}


@effects.service("loop_claim_item")
def loop_claim_item(ctx: effects.RunContext, item_id: int, measures: str = "",
                    finish_by: str | None = None) -> dict[str, Any]:
    """④ The leader who completed the claim task claims the item."""
    item = claim_plan_item(ctx.session, item_id=int(item_id), actor=ctx.actor, measures=measures,
                           finish_by=finish_by)
    return {"id": item.id, "status": item.status, "claimed_by": ctx.actor.username}


@effects.service("loop_raise_issues")
def loop_raise_issues(ctx: effects.RunContext, visits: list[dict[str, Any]], initiator: str = "",
                      send_back: bool = False) -> dict[str, Any]:
    """⑤ Start one issue_ledger instance per problem found on the period's visits (via start_process).

    All or none: problems the ledger would refuse, or more than this run may start (engine/runtime/start_limits.py),
    start nothing. The diagram that routes `ok` back to the form passes `send_back`; a version deployed before it has
    no way back: there too many problems are an incident — with nothing started, never the first hundred of them —
    and a problem the ledger refuses is started as before (its own issue stops, not the period: nothing retries an
    incident, and a period stopped at ⑤ could not even be migrated to the version that sends the form back).
    Once: a problem whose issue was raised by an earlier run of this step (⑤ taken back and sent again) names that
    issue (`issue_key`), never a second; one left out when it was sent again keeps its issue (the ledger closes it).
    """
    visits = list(visits)
    errors = problem_errors(visits, ctx.session, ctx.actor) if send_back else []
    found = [(visit, problem, issue_key(_instance_id(ctx), visit, problem))
             for visit in visits for problem in visit.get("problems") or []]
    count = sum(1 for _v, _p, key in found if raised_issue(ctx.session, key) is None)  # raised before: not again
    room = start_limits.room(ctx)
    if count > room:
        errors.insert(0, f"visits：本次共 {count} 个问题，一次最多登记 {room} 个，请减少后提交，其余可由台账管理员在问题台账"
                         f"登记 (at most {room} problems at a time)")
    if errors:
        if not send_back:
            raise ValueError("；".join(errors))
        return {"ok": False, "error": "；".join(errors), "visits": len(visits), "issues": []}
    reporter = ctx.actor.username if ctx.actor.user_id is not None else initiator
    issues: list[dict[str, Any]] = []
    for visit, problem, key in found:
        data = issue_start_data(visit, problem, reporter)
        raised = raised_issue(ctx.session, key)
        if raised is None:
            raised = instances.start_process(ctx, "issue_ledger", data=data, business_key=key,
                                             title=f"{data['enterprise']}：{data['title']}"[:300])["instance_id"]
        issues.append({"instance_id": raised, "title": data["title"]})
    return {"ok": True, "error": None, "visits": len(visits), "issues": issues}


__all__ = ["issue_key", "issue_start_data", "loop_claim_item", "loop_create_plan_items", "loop_gap_analysis",
           "loop_indicator_status", "loop_raise_issues", "problem_errors", "raised_issue"]
