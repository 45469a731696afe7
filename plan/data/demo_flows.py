"""演示数据的流程部分: ledger issues, parallel approvals and two periods of the seven-step method.

Each scenario is a generator that yields the moment of its next step and then takes it, as the
right seed user, through the same services the inbox uses (`instances.start`, `tasks.claim`,
`tasks.complete`, `operations.urge` / `carbon_copy`, `plan.start_period`); `plan.data.demo`
merges the scenarios in time order and freezes the clock at each moment. Times are relative to
`Demo.now` (working days ago, days from today), so the demo reads as a history ending today.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, runtime, tasks
from engine.deadlines import calendar
from engine.errors import EngineError, InvalidInput
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.org.models import Membership, OrgUnit, Role, User
from engine.runtime import instances
from engine.tasks import collab, operations
from engine.tasks.models import HumanTask
from plan import investment as plan
from plan import projects
from plan.indicators.models import Indicator, IndicatorValue
from plan.ledger.models import LedgerIssue
from plan.projects.models import Project

APPROVAL_STAGES = {"land_planning": "立项用地规划许可", "construction_works": "工程建设许可",
               "construction_permit": "施工许可", "completion_acceptance": "竣工验收"}
SPLIT_COUNTS = ("_focus", "_key", "_layout")  # 按类别拆分的项目个数指标: the planner keeps only the totals
Spec = Mapping[str, Any]


class Demo:
    """What the scenarios share: the session, "today", the seed users as actors, task look-ups."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session, self.now = session, now
        self.today = now.astimezone(clock.SHANGHAI).date()
        self.last_workday = self.today if calendar.is_working_day(self.today) \
            else calendar.previous_working_day(self.today)
        self._actors: dict[str, Actor] = {}

    # -- time ---------------------------------------------------------------------------------

    def workday(self, n: int) -> date:
        """Return the working day n working days before the latest one (0: today if it is one)."""
        day = self.last_workday
        for _ in range(n):
            day = calendar.previous_working_day(day)
        return day

    def at(self, n: int, step: int = 0) -> datetime:
        """Return office time on the working day n working days ago; later steps of a day 40 minutes apart."""
        return self.moment(self.workday(n), 9) + timedelta(minutes=40 * step)

    @staticmethod
    def moment(day: date, hour: int = 10) -> datetime:
        """Return a Shanghai wall-clock hour of a day."""
        return datetime.combine(day, time(hour), tzinfo=clock.SHANGHAI)

    def day(self, offset: int) -> str:
        """Return today + offset days as an ISO date (form fields)."""
        return (self.today + timedelta(days=offset)).isoformat()

    def local_day(self) -> str:
        return clock.now().astimezone(clock.SHANGHAI).date().isoformat()

    # -- people and tasks -----------------------------------------------------------------------

    def actor(self, username: str) -> Actor:
        if username not in self._actors:
            self._actors[username] = actor_for(self.session, username)
        return self._actors[username]

    def username(self, user_id: int | None) -> str | None:
        return self.session.scalar(select(User.username).where(User.id == user_id)) if user_id else None

    def unit_id(self, code: str) -> int:
        found = self.session.scalar(select(OrgUnit.id).where(OrgUnit.code == code))
        if found is None:
            raise InvalidInput(f"单位不存在 (no such unit): {code}", unit=code)
        return found

    def reviewer(self, unit: str) -> str:
        """Return the unit's first reviewer (role `reviewer`), else its head."""
        members = select(Membership.user_id).where(Membership.org_unit_id == self.unit_id(unit))
        reviewers = select(Membership.user_id).join(Role, Role.id == Membership.role_id).where(Role.code == "reviewer")
        name = self.session.scalar(select(User.username).where(User.id.in_(members), User.id.in_(reviewers))
                                   .order_by(User.id).limit(1))
        head = self.session.scalar(select(OrgUnit.leader_id).where(OrgUnit.code == unit))
        found = name or self.username(head)
        if found is None:
            raise InvalidInput(f"单位 {unit} 没有审查人员 (no reviewer)", unit=unit)
        return found

    def open_tasks(self, instance_id: int, bpmn_id: str) -> list[HumanTask]:
        return list(self.session.scalars(select(HumanTask).where(
            HumanTask.instance_id == instance_id, HumanTask.bpmn_id == bpmn_id, HumanTask.state == "ready")
            .order_by(HumanTask.id).execution_options(populate_existing=True)))

    def task(self, instance_id: int, bpmn_id: str, *, unit: str | None = None) -> HumanTask:
        found = self.open_tasks(instance_id, bpmn_id)
        if unit is not None:
            unit_id = self.unit_id(unit)
            found = [t for t in found if any(c.org_unit_id == unit_id for c in t.candidates)]
        if not found:
            raise InvalidInput(f"实例 {instance_id} 没有待办的 {bpmn_id}{f' ({unit})' if unit else ''} (no such open task)")
        return found[0]

    def candidate(self, task: HumanTask) -> str | None:
        """Return the username a task is offered to, if it is offered to one user."""
        users = [c.user_id for c in task.candidates if c.user_id is not None]
        return self.username(users[0]) if users else None

    def act(self, task: HumanTask, username: str, data: dict[str, Any]) -> tasks.Completion:
        """Claim (unless held already) and complete a task as a user would in the inbox."""
        actor = self.actor(username)
        if task.assignee_id is None:
            tasks.claim(self.session, task_id=task.id, actor=actor)
        result = tasks.complete(self.session, task_id=task.id, actor=actor, data=data)
        if result.incident:
            raise InvalidInput(f"{task.name}: {result.incident}")
        return result

    def step(self, instance_id: int, bpmn_id: str, username: str, data: dict[str, Any],
             unit: str | None = None) -> tasks.Completion:
        return self.act(self.task(instance_id, bpmn_id, unit=unit), username, data)


def _fail(where: str, step: Spec, exc: EngineError | KeyError) -> InvalidInput:
    reason = exc.message if isinstance(exc, EngineError) else f"缺少字段 (missing field) {exc}"
    return InvalidInput(f"{where} 第{step.get('at')}个工作日前的步骤 {step.get('do')} 无法执行 "
                        f"(demo step failed): {reason}")


def labelled(where: str, scenario: Iterator[datetime]) -> Iterator[datetime]:
    """Run a scenario, naming where it comes from when one of its steps cannot be taken."""
    try:
        yield from scenario
    except InvalidInput:
        raise
    except (EngineError, KeyError) as exc:
        reason = exc.message if isinstance(exc, EngineError) else f"缺少字段 (missing field) {exc}"
        raise InvalidInput(f"{where}: 步骤无法执行 (demo step failed): {reason}") from exc


# -- 问题台账 issue_ledger ----------------------------------------------------------------------

StepTaker = Callable[[Demo, Spec, str, Spec, int], int]


def history(demo: Demo, spec: Spec, officer: str, where: str, take: StepTaker) -> Iterator[datetime]:
    """Take one case through its `history` steps at their times; `take` does a step, returns the instance id."""
    instance_id = 0
    for n, step in enumerate(spec["history"]):
        yield demo.at(int(step["at"]), n)
        try:
            instance_id = take(demo, spec, officer, step, instance_id)
        except (EngineError, KeyError) as exc:
            raise _fail(where, step, exc) from exc


def deadline_form(demo: Demo, step: Spec) -> dict[str, Any]:
    """A 派单 form's deadline: `working_days`, else a date `due_in` days from today."""
    if "working_days" in step:
        return {"deadline_kind": "working_days", "working_days": int(step["working_days"])}
    return {"deadline_kind": "date", "due_date": demo.day(int(step["due_in"]))}


def ledger_issue(demo: Demo, spec: Spec, officer: str, where: str) -> Iterator[datetime]:
    """Start one issue and take it through its history (data/demo/issues.yaml)."""
    return history(demo, spec, officer, where, _ledger_step)


def _ledger_step(demo: Demo, spec: Spec, officer: str, step: Spec, iid: int) -> int:
    do, handler = step["do"], step.get("by") or spec.get("handler") or ""
    if do == "register":
        fields = {"title": spec["title"], "description": spec.get("description", ""),
                  "enterprise": spec.get("enterprise", ""), "source": spec.get("source", "manual"),
                  "unit_code": spec["unit"], **({"project_code": spec["project"]} if spec.get("project") else {})}
        title = f"{spec.get('enterprise') or '问题'}：{spec['title']}"[:300]
        if spec.get("manual"):
            row = instances.start(demo.session, process_key="issue_ledger", actor=demo.actor(officer), title=title)
            demo.step(row.id, "register_issue", officer, fields)
        else:
            row = instances.start(demo.session, process_key="issue_ledger", actor=demo.actor(spec["reporter"]),
                                  data={**fields, "reporter": spec["reporter"]}, title=title)
        return row.id
    if do == "dispatch":
        form: dict[str, Any] = {"unit_code": step.get("unit", spec["unit"]), **deadline_form(demo, step)}
        if step.get("note"):
            form["dispatch_note"] = step["note"]
        demo.step(iid, "dispatch", step.get("by", officer), form)
    elif do in ("accept", "return"):
        form = {"response": do, **({"return_reason": step["reason"]} if do == "return" else {})}
        demo.step(iid, "respond", handler, form)
    elif do == "progress":
        form = {"action": "progress", "progress": step["text"],
                **({"percent": int(step["percent"])} if "percent" in step else {})}
        demo.step(iid, "handle", handler, form)
    elif do == "extension":
        demo.step(iid, "handle", handler, {"action": "extension", "extension_reason": step["reason"],
                                           "requested_due_date": demo.day(int(step["requested_in"]))})
    elif do in ("grant", "refuse"):
        task = demo.task(iid, "decide_extension")
        form = {"extension_decision": do, "leader_opinion": step["opinion"],
                **({"new_due_date": demo.day(int(step["due_in"]))} if do == "grant" else {})}
        demo.act(task, step.get("by") or demo.candidate(task) or "", form)
    elif do == "feedback":
        demo.step(iid, "handle", handler, {"action": "done"})
        demo.step(iid, "feedback", handler, {"evidence": step["evidence"],
                                             **({"attachments": list(step["attachments"])} if step.get("attachments")
                                                else {})})
    elif do in ("satisfied", "unsatisfied"):
        task = demo.task(iid, "revisit")  # offered to whoever raised the issue
        form = {"revisit": do, **({"revisit_opinion": step["opinion"]} if step.get("opinion") else {})}
        demo.act(task, step.get("by") or demo.candidate(task) or officer, form)
    elif do in ("pass", "fail"):
        demo.step(iid, "verify", step.get("by", officer),
                  {"verdict": do, **({"verify_opinion": step["opinion"]} if step.get("opinion") else {})})
    elif do == "urge":
        task = demo.open_tasks(iid, "handle")[0]
        operations.urge(demo.session, task_id=task.id, actor=demo.actor(step.get("by", officer)),
                        message=step.get("message", ""))
    elif do == "cc":
        collab.carbon_copy(demo.session, instance_id=iid, actor=demo.actor(step.get("by", officer)),
                           usernames=list(step["to"]), note=step.get("note", ""))
    else:
        raise InvalidInput(f"未知步骤 (unknown step): {do}")
    return iid


# -- 并联审批 parallel_approval --------------------------------------------------------------------

def approval(demo: Demo, spec: Spec, window: str, where: str) -> Iterator[datetime]:
    """Start one application and take it through its history (data/demo/approvals.yaml)."""
    instance_id = 0
    for n, step in enumerate(spec["history"]):
        yield demo.at(int(step["at"]), n)
        try:
            instance_id = _approval_step(demo, spec, window, step, instance_id)
        except (EngineError, KeyError) as exc:
            raise _fail(where, step, exc) from exc


def _approval_step(demo: Demo, spec: Spec, window: str, step: Spec, iid: int) -> int:
    do, applicant = step["do"], spec["applicant"]
    if do == "submit":
        project = demo.session.scalar(select(Project).where(Project.code == spec["project"]))
        if project is None:
            raise InvalidInput(f"项目不存在 (no such project): {spec['project']}")
        data = {**projects.approval_start_data(project, applicant), "stage": spec["stage"]}
        row = instances.start(demo.session, process_key="parallel_approval", actor=demo.actor(applicant), data=data,
                              business_key=project.code,
                              title=f"并联审批 {project.name}（{APPROVAL_STAGES[spec['stage']]}）")
        demo.step(row.id, "submit_application", applicant, {
            "project_code": project.code, "project_name": project.name, "project_type": project.project_type,
            "investment": project.investment, "stage": spec["stage"], "applicant_unit": project.enterprise,
            "contact_name": spec["contact"]["name"], "contact_phone": str(spec["contact"]["phone"]),
            "materials": list(spec["materials"])})
        return row.id
    if do in ("accept", "send_back"):
        form: dict[str, Any] = {"acceptance": do, "window_opinion": step["opinion"]}
        if step.get("deferred"):
            form.update(acceptance="accept_deferred", deferred_materials=list(step["deferred"]),
                        commitment_deadline=demo.day(int(step["commitment_in"])))
        demo.step(iid, "window_accept", step.get("by", window), form)
    elif do == "review":
        form = {"review_decision": step["decision"], "review_opinion": step["opinion"],
                **({"supplement_materials": step["materials"]} if step.get("materials") else {})}
        demo.step(iid, "department_review", step.get("by") or demo.reviewer(step["unit"]), form, unit=step["unit"])
    elif do == "supplement":
        demo.step(iid, "submit_supplement", applicant,
                  {"supplement_reply": step.get("reply", "已按要求补正材料。"), "supplement_pledge": True})
    elif do == "deferred":
        demo.step(iid, "submit_deferred_materials", applicant,
                  {"deferred_supplied": list(step["supplied"]), "deferred_note": step.get("note", "已补交。")})
    elif do == "certify":
        issued = demo.local_day()
        demo.step(iid, "issue_certificate", step.get("by", window), {"issued_on": issued})
    else:
        raise InvalidInput(f"未知步骤 (unknown step): {do}")
    return iid


# -- 七步工作法 investment_loop ------------------------------------------------------------------

def period_start(period: str) -> datetime:
    """Return 09:00 on the first working day after the period: when its instance is started."""
    year, month = plan.parse_period(period)
    first = date(year + (month == 12), month % 12 + 1, 1)
    day = first if calendar.is_working_day(first) else calendar.next_working_day(first)
    return Demo.moment(day, 9)


def _plan_items(demo: Demo, instance_id: int, cfg: Spec) -> list[dict[str, Any]]:
    """③ as the planner reviews it: ②'s drafts (else the plan year's last analysed month), totals only."""
    task = demo.task(instance_id, "review_plan")
    found = runtime.find_task(runtime.load(demo.session, instance_id).workflow, task.task_guid)
    drafts = list((found.data.get("items") if found is not None else None) or [])
    if not drafts:
        year = demo.session.scalar(select(Indicator.year).order_by(Indicator.year.desc()).limit(1))
        last = demo.session.scalar(select(IndicatorValue.period).where(IndicatorValue.period.like(f"{year}-%"))
                                   .order_by(IndicatorValue.period.desc()).limit(1))
        drafts = plan.gap_analysis(demo.session, last)["items"] if last else []
    kept = [d for d in drafts if not str(d.get("indicator", "")).endswith(SPLIT_COUNTS)
            or not str(d.get("indicator", "")).startswith("projects_")]
    return kept[:int(cfg.get("max_items", 8))]


def _raised_issues(demo: Demo, instance_id: int) -> list[tuple[int, str]]:
    """Return (instance id, suggested unit) of the ledger issues ⑤ raised."""
    workflow = runtime.load(demo.session, instance_id).workflow
    found = [t.data["visit_result"] for t in workflow.get_tasks() if "visit_result" in t.data]
    ids = [int(i["instance_id"]) for i in (found[-1]["issues"] if found else [])]
    rows = demo.session.execute(
        select(LedgerIssue.instance_id, OrgUnit.code).join(OrgUnit, OrgUnit.id == LedgerIssue.unit_id)
        .where(LedgerIssue.instance_id.in_(ids)).order_by(LedgerIssue.id)).all()
    return [(int(child or 0), unit) for child, unit in rows]


def loop_period(demo: Demo, cfg: Spec, period: str, *, full: bool, notes: list[str],
                leads_after: datetime) -> Iterator[datetime]:
    """Start a period as beat does, confirm ①②, submit ③; claim ④ (all if `full`, else some: ⑤ ⑥ ⑦ stay open
    beside the unclaimed items) and, if `full`, record ⑤ visits (and dispatch the issues they raise), add ⑥
    leads, publish ⑦ the calls (one per industry chain, each its own loop_call instance; the period's
    instance then completes) and make one bid on the first.

    ⑥ waits for `leads_after` (the demo's last project): a new lead takes the next free project code.
    """
    start = period_start(period)
    yield start
    started = plan.start_period(demo.session, period, SYSTEM)
    if not started.created:  # beat (or someone) started it already: leave it as it is
        notes.append(f"七步工作法 {period} 已存在，未改动")
        return
    iid = started.instance_id

    def later(days: int) -> datetime:
        return calendar.add_working_days(start, days)
    yield start + timedelta(hours=1)
    demo.step(iid, "confirm_figures", cfg["data_officer"],
              {"figures_decision": "confirm", "figures_note": f"{period} 指标数据已核对。"})
    yield later(1)
    demo.step(iid, "review_plan", cfg["planner"], {"items": _plan_items(demo, iid, cfg)})
    claims = demo.open_tasks(iid, "claim_item")
    open_for = cfg["open_for"]
    if not full:
        keep = [t for t in claims if demo.candidate(t) in (open_for, None)] or claims[-1:]
        claims = [t for t in claims if t not in keep] or claims[:1]
    measures = list(cfg["claim"]["measures"])
    for n, task in enumerate(claims):
        yield later(2) + timedelta(minutes=30 * n)
        demo.act(task, demo.candidate(task) or open_for,
                 {"measures": measures[n % len(measures)], "finish_by": demo.day(int(cfg["claim"]["finish_in"]))})
    if not full:
        return
    yield later(4)
    visited = clock.now().astimezone(clock.SHANGHAI).date().isoformat()
    demo.step(iid, "record_visits", cfg["service_officer"],
              {"visits": [{"enterprise": v["enterprise"], "visited_on": visited, "summary": v["summary"],
                           "problems": list(v.get("problems") or [])} for v in cfg["visits"]]})
    yield later(5)
    for child, unit in _raised_issues(demo, iid):  # the ledger officer dispatches what the visits raised
        demo.step(child, "dispatch", cfg["ledger_officer"],
                  {"unit_code": unit, "deadline_kind": "working_days", "working_days": 20})
    yield max(later(6), leads_after)
    leads = [{k: v for k, v in lead.items() if k != "planned_sign_in"}
             | {"planned_sign": demo.day(int(lead["planned_sign_in"]))} for lead in cfg["leads"]]
    demo.step(iid, "source_leads", cfg["investment_officer"], {"leads": leads})
    call = cfg["call"]
    yield max(later(8), demo.at(3))  # the windows must still be open today
    demo.step(iid, "publish_call", cfg["investment_officer"], {"call_decision": "publish", "calls": [
        {"call_title": c["title"], "industry": c["industry"], "description": c.get("description", ""),
         "eligible_units": list(c["eligible_units"]), "bid_window": c.get("window", "P14D")}
        for c in [call, *(cfg.get("other_calls") or [])]], "publish_more": False})
    yield max(later(9), demo.at(1))
    bid = call["bid"]
    industry = projects.find_industry(demo.session, str(call["industry"]))
    code = projects.call_code(period, industry.code if industry else str(call["industry"]))
    opened = next((c for c in projects.calls_of_period(demo.session, period) if c["code"] == code), None)
    if opened is None:
        raise InvalidInput(f"榜单 {code} 未开榜 (the call did not open)")
    demo.step(int(opened["instance_id"]), "submit_bid", bid["by"], {"bid_decision": "bid", "proposal": bid["proposal"]},
              unit=bid["unit"])


__all__ = ["Demo", "approval", "labelled", "ledger_issue", "loop_period", "period_start"]
