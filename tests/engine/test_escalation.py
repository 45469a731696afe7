"""The escalation ladder and 督办 actions, on SQLite and PostgreSQL: each step once, in order, audited, notified."""
from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, org
from engine.audit.models import AuditEvent
from engine.deadlines import escalation, sla
from engine.deadlines.models import DeadlineAction, DeadlineWatch, EscalationStep
from engine.errors import Conflict, Forbidden, InvalidInput, RateLimited, UserNotFound
from engine.jobs_deadlines import run_sweep
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor, actor_for
from engine.org.models import OrgUnit
from engine.tasks.models import HumanTask
from plan import supervision
from plan.ledger.models import LedgerIssue
from plan.projects.models import Project, ProjectLibrary

SH = clock.SHANGHAI
LADDER = ["yellow", "red", "handler", "unit_head", "responsible_leader", "city_leader"]


@pytest.fixture
def people(session: Session, frozen: Any) -> dict[str, Actor]:
    """工信局 with a head, two staff, a responsible leader (责任领导) and a city leader (市级领导包挂)."""
    org.add_role(session, code="leader", name="责任领导")
    org.add_role(session, code="city_leader", name="市级领导")
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_unit(session, code="zrzyj", name="自然资源局")
    org.add_user(session, username="zhou", display_name="局长周建华", unit_codes=["gxj"], is_head=True)
    org.add_user(session, username="zhang", display_name="张伟", unit_codes=["gxj"])
    org.add_user(session, username="li", display_name="李娜", unit_codes=["gxj"])
    org.add_user(session, username="wu", display_name="局长吴永刚", unit_codes=["zrzyj"], is_head=True)
    org.add_user(session, username="sun", display_name="副市长孙建国", role_codes=["leader"])
    city = org.add_user(session, username="wang", display_name="市领导王建国", role_codes=["city_leader", "leader"])
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "gxj"))
    assert unit is not None
    unit.responsible_leader_id = city.id
    session.commit()
    return {u: actor_for(session, u) for u in ("zhou", "zhang", "li", "wu", "sun", "wang")}


@pytest.fixture
def make_issue(session: Session, people: dict[str, Actor]) -> Callable[..., LedgerIssue]:
    def make(due: date, *, code: str = "WT-2025-0001", source: str = "manual", handler: str | None = "zhang") -> LedgerIssue:
        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "gxj"))
        assert unit is not None
        issue = LedgerIssue(code=code, title="企业用电增容迟迟未落实", unit_id=unit.id, source=source,
                            handler_id=people[handler].user_id if handler else None,
                            responsible_leader_id=people["sun"].user_id, status="in_progress",
                            due_at=sla.deadline_of(due), created_at=clock.now())
        session.add(issue)
        session.commit()
        return issue
    return make


def at(y: int, m: int, d: int, hh: int = 10) -> datetime:
    return datetime(y, m, d, hh, tzinfo=SH)


def steps_of(session: Session, object_type: str, object_id: int) -> list[tuple[int, str, list[int]]]:
    return [(s.round, s.step, s.recipients) for s in session.scalars(
        select(EscalationStep).where(EscalationStep.object_type == object_type, EscalationStep.object_id == object_id)
        .order_by(EscalationStep.id))]


def sweep_at(session: Session, frozen: Any, when: datetime, times: int = 2) -> int:
    frozen.freeze(when)
    taken = 0
    for _ in range(times):  # running it again never repeats a step
        taken += escalation.sweep(session, now=clock.now()).steps
        session.commit()
    return taken


def notified(session: Session, user: Actor, kind: str = "in_app") -> list[str]:
    return [m.payload["title"] if kind == "in_app" else m.payload["subject"] for m in session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id))
        if (m.payload.get("user_id") == user.user_id) or kind != "in_app"]


def test_an_issue_climbs_the_ladder_one_step_at_a_time_exactly_once(
        session: Session, people: dict[str, Actor], make_issue: Callable[..., LedgerIssue], frozen: Any) -> None:
    issue = make_issue(date(2025, 9, 26))  # Friday before National Day (1–8 Oct off, 28 Sep and 11 Oct worked)
    ids = {k: v.user_id for k, v in people.items()}
    timeline = [
        (at(2025, 9, 21), [], "green"),
        (at(2025, 9, 22), ["yellow"], "yellow"),  # registered 1 Sep: the last fifth of the time starts 21 Sep 21:…
        (at(2025, 9, 26), [], "yellow"),
        (at(2025, 9, 27), ["red", "handler"], "red"),
        (at(2025, 9, 28, 9), [], "red"),
        (at(2025, 9, 29), ["unit_head"], "red"),  # +1 working day: Sunday 28 Sep (调休) 23:59:59
        (at(2025, 10, 5), ["responsible_leader"], "red"),  # +3: 30 Sep 23:59:59
        (at(2025, 10, 10), [], "red"),  # +5 working days: 10 Oct 23:59:59
        (at(2025, 10, 11), ["city_leader"], "red"),
        (at(2025, 11, 11), [], "red"),
    ]
    seen: list[str] = []
    for when, new, light in timeline:
        assert sweep_at(session, frozen, when) == len(new), when
        seen += new
        assert [s for _, s, _ in steps_of(session, "issue", issue.id)] == seen, when
        watch = escalation.watch_of(session, "issue", issue.id, lock=False)
        assert watch.light == light and watch.round == 1
    assert steps_of(session, "issue", issue.id) == [
        (1, "yellow", [ids["zhang"]]), (1, "red", []), (1, "handler", [ids["zhang"]]), (1, "unit_head", [ids["zhou"]]),
        (1, "responsible_leader", [ids["sun"]]), (1, "city_leader", [ids["wang"]])]
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.stream == f"ledger_issue:{issue.id}")
                              .order_by(AuditEvent.seq)).all()
    assert actions == [f"escalation.{s}" for s in LADDER]
    assert notified(session, people["zhang"]) == ["临期提醒: WT-2025-0001 企业用电增容迟迟未落实",
                                                  "逾期提醒: WT-2025-0001 企业用电增容迟迟未落实"]
    assert notified(session, people["wang"]) == ["督办升级(市级领导): WT-2025-0001 企业用电增容迟迟未落实"]
    assert audit.verify(session).ok


def test_a_late_sweep_takes_every_due_step_at_once_in_order(
        session: Session, people: dict[str, Actor], make_issue: Callable[..., LedgerIssue], frozen: Any) -> None:
    issue = make_issue(date(2025, 9, 5), source="project")  # the `project` issues climb faster: city leader at +3
    assert sweep_at(session, frozen, at(2025, 9, 11)) == 6
    assert [s for _, s, _ in steps_of(session, "issue", issue.id)] == LADDER
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 5  # red notifies no one


def test_a_new_deadline_starts_a_new_round(session: Session, people: dict[str, Actor],
                                           make_issue: Callable[..., LedgerIssue], frozen: Any) -> None:
    issue = make_issue(date(2025, 9, 5))
    sweep_at(session, frozen, at(2025, 9, 9))
    assert escalation.watch_of(session, "issue", issue.id, lock=False).level == 2
    told = supervision.urge(session, seen=None, actor=people["wang"], object_type="issue", object_id=issue.id,
                            message="请本周内办结", due_date=date(2025, 9, 19))
    session.commit()
    assert told == 1
    watch = escalation.watch_of(session, "issue", issue.id, lock=False)
    assert (watch.round, watch.light, watch.level) == (2, "green", 0)
    assert session.get(LedgerIssue, issue.id).due_at == sla.deadline_of(date(2025, 9, 19))  # type: ignore[union-attr]
    with pytest.raises(RateLimited):  # 催办 at most once an hour per leader and object
        supervision.urge(session, seen=None, actor=people["wang"], object_type="issue", object_id=issue.id)
    session.rollback()
    assert sweep_at(session, frozen, at(2025, 9, 23)) == 4  # yellow, red, handler, unit_head (+1 wd: 22 Sep) of round 2
    rounds = [(r, s) for r, s, _ in steps_of(session, "issue", issue.id)]
    assert rounds == [(1, "yellow"), (1, "red"), (1, "handler"), (1, "unit_head"),
                      (2, "yellow"), (2, "red"), (2, "handler"), (2, "unit_head")]
    assert notified(session, people["zhang"])[-3:] == ["市领导王建国督办: WT-2025-0001 企业用电增容迟迟未落实",
                                                       "临期提醒: WT-2025-0001 企业用电增容迟迟未落实",
                                                       "逾期提醒: WT-2025-0001 企业用电增容迟迟未落实"]
    assert audit.verify(session).ok


def test_escalating_by_hand_is_not_repeated_by_the_sweep(
        session: Session, people: dict[str, Actor], make_issue: Callable[..., LedgerIssue], frozen: Any) -> None:
    issue = make_issue(date(2025, 9, 5))
    sweep_at(session, frozen, at(2025, 9, 6))  # red + handler
    step = supervision.escalate(session, seen=None, actor=people["wang"], object_type="issue", object_id=issue.id,
                                note="加快")
    session.commit()
    assert (step.step, step.manual, step.actor_id) == ("unit_head", True, people["wang"].user_id)
    assert sweep_at(session, frozen, at(2025, 9, 9)) == 0  # unit_head's time came: already done by hand
    assert sweep_at(session, frozen, at(2025, 9, 11)) == 1  # responsible_leader
    supervision.escalate(session, seen=None, actor=people["sun"], object_type="issue", object_id=issue.id)
    session.commit()
    with pytest.raises(Conflict):
        supervision.escalate(session, seen=None, actor=people["wang"], object_type="issue", object_id=issue.id)
    session.rollback()
    steps = session.scalars(select(EscalationStep).where(EscalationStep.object_id == issue.id)
                            .order_by(EscalationStep.id)).all()
    assert [(s.step, s.manual) for s in steps] == [("yellow", False), ("red", False), ("handler", False),
                                                   ("unit_head", True), ("responsible_leader", False),
                                                   ("city_leader", True)]


def test_leaders_act_only_in_their_area(session: Session, people: dict[str, Actor],
                                        make_issue: Callable[..., LedgerIssue], frozen: Any) -> None:
    issue = make_issue(date(2025, 9, 5))
    sweep_at(session, frozen, at(2025, 9, 9))
    assert supervision.is_supervisor(session, people["zhou"]) and not supervision.is_supervisor(session, people["zhang"])
    assert [g.unit_name for g in supervision.overview(session, people["zhou"])] == ["工业和信息化局"]
    assert supervision.overview(session, people["wu"]) == []  # 自然资源局's head sees nothing of 工信局
    with pytest.raises(Forbidden):
        supervision.urge(session, seen=None, actor=people["wu"], object_type="issue", object_id=issue.id)
    session.rollback()
    # The issue's own responsible leader may act although he heads no unit.
    supervision.urge(session, seen=None, actor=people["sun"], object_type="issue", object_id=issue.id)
    session.commit()


def test_reassigning_an_issue_moves_its_open_tasks(session: Session, people: dict[str, Actor],
                                                   make_issue: Callable[..., LedgerIssue], frozen: Any) -> None:
    issue = make_issue(date(2025, 9, 5))
    sweep_at(session, frozen, at(2025, 9, 9))
    user = supervision.reassign(session, seen=None, actor=people["zhou"], object_type="issue", object_id=issue.id,
                                to_username="li", note="张伟出差")
    session.commit()
    assert user.username == "li" and session.get(LedgerIssue, issue.id).handler_id == people["li"].user_id  # type: ignore[union-attr]
    assert notified(session, people["li"]) == ["局长周建华改派给您: WT-2025-0001 企业用电增容迟迟未落实"]
    with pytest.raises(InvalidInput):
        supervision.reassign(session, seen=None, actor=people["zhou"], object_type="project", object_id=1, to_username="li")
    session.rollback()
    actions = session.scalars(select(DeadlineAction.action)).all()
    assert actions == ["reassign"]


def test_a_closed_issue_leaves_the_ladder(session: Session, people: dict[str, Actor],
                                          make_issue: Callable[..., LedgerIssue], frozen: Any) -> None:
    issue = make_issue(date(2025, 9, 5))
    sweep_at(session, frozen, at(2025, 9, 6))
    issue.status, issue.closed_at = "closed", clock.now()
    session.commit()
    assert sweep_at(session, frozen, at(2025, 9, 30)) == 0
    assert not escalation.watch_of(session, "issue", issue.id, lock=False).active
    assert supervision.overview(session, people["wang"]) == []


def test_two_sweeps_at_once_never_repeat_a_step(factory: sessionmaker[Session], session: Session,
                                                people: dict[str, Actor], frozen: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", "10000")  # 600 notices to 张: each one counted, none dropped
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "gxj"))
    assert unit is not None
    session.add_all([LedgerIssue(code=f"WT-2025-{n:04d}", title=f"问题{n}", unit_id=unit.id, status="in_progress",
                                 handler_id=people["zhang"].user_id, due_at=sla.deadline_of(date(2025, 9, 5)),
                                 created_at=clock.now()) for n in range(120)])
    session.commit()
    now = at(2025, 9, 30)
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            run_sweep(factory, now=now, batch=7)
        except BaseException as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert run_sweep(factory, now=now).steps == 0
    per_issue = session.execute(select(EscalationStep.object_id, func.count()).group_by(EscalationStep.object_id)).all()
    assert len(per_issue) == 120 and {n for _, n in per_issue} == {6}
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 120 * 5
    assert audit.verify(session).ok


def test_task_extension_requests_are_granted_or_refused(session: Session, people: dict[str, Actor],
                                                        frozen: Any) -> None:
    task = _task(session, people)
    request = supervision.request_extension(session, actor=people["zhang"], task_id=task.id,
                                            due_date=date(2025, 9, 20), reason="等待企业补充材料")
    session.commit()
    with pytest.raises(Conflict):
        supervision.request_extension(session, actor=people["zhang"], task_id=task.id, due_date=date(2025, 9, 21),
                                      reason="再申请")
    session.rollback()
    groups = supervision.overview(session, people["zhou"])
    assert [i.extension.id for g in groups for i in g.items if i.extension is not None] == [request.id]
    supervision.decide_extension(session, actor=people["zhou"], object_type="task", object_id=task.id, grant=True,
                                 due_date=date(2025, 9, 19), opinion="同意延至19日")
    session.commit()
    session.refresh(task)
    assert task.due_at == sla.deadline_of(date(2025, 9, 19)) and request.status == "granted"
    assert notified(session, people["zhang"])[-1] == "延期申请已批准: 核对企业材料"
    watch = escalation.watch_of(session, "task", task.id, lock=False)
    assert watch.round == 2 and watch.due_at == task.due_at
    with pytest.raises(Conflict):  # nothing pending any more
        supervision.decide_extension(session, actor=people["zhou"], object_type="task", object_id=task.id,
                                     grant=False, opinion="不同意")
    session.rollback()


def _task(session: Session, people: dict[str, Actor]) -> HumanTask:
    """A bare human task of 工信局's 张伟 due in 2 working days (not from a process: the ladder does not care)."""
    from engine.runtime.models import ProcessDefinition, ProcessInstance, ProcessVersion
    from engine.tasks.models import TaskCandidate
    definition = ProcessDefinition(key="adhoc", name="临时事项")
    session.add(definition)
    session.flush()
    version = ProcessVersion(definition_id=definition.id, version=1, name="临时事项", bundle_sha256="0" * 64, spec_json="{}")
    session.add(version)
    session.flush()
    instance = ProcessInstance(definition_id=definition.id, version_id=version.id, state="{}", serializer_version="1")
    session.add(instance)
    session.flush()
    task = HumanTask(instance_id=instance.id, task_guid="t-1", bpmn_id="check", name="核对企业材料", process_key="adhoc",
                     assignee_id=people["zhang"].user_id, created_at=clock.now(),
                     due_at=clock.now() + timedelta(days=2), warn_at=clock.now() + timedelta(days=1))
    task.candidates.append(TaskCandidate(user_id=people["zhang"].user_id))
    session.add(task)
    session.commit()
    escalation.follow(session, "task", task.id, now=clock.now())
    session.commit()
    return task


def test_a_task_reaches_its_units_head(session: Session, people: dict[str, Actor], frozen: Any) -> None:
    task = _task(session, people)
    assert sweep_at(session, frozen, at(2025, 9, 10)) == 6
    recipients = {s: r for _, s, r in steps_of(session, "task", task.id)}
    ids = {k: v.user_id for k, v in people.items()}
    # The task's unit is its holder's; 责任领导 and 市级领导 are the unit's (both the city leader here).
    assert recipients == {"yellow": [ids["zhang"]], "red": [], "handler": [ids["zhang"]], "unit_head": [ids["zhou"]],
                          "responsible_leader": [ids["wang"]], "city_leader": [ids["wang"]]}
    assert session.scalars(select(AuditEvent.stream).where(AuditEvent.action == "escalation.unit_head")).all() == [
        f"instance:{task.instance_id}"]
    user = supervision.reassign(session, seen=None, actor=people["zhou"], object_type="task", object_id=task.id,
                                to_username="li")
    session.commit()
    session.refresh(task)
    assert task.assignee_id == user.id == people["li"].user_id
    watch = session.scalar(select(DeadlineWatch).where(DeadlineWatch.object_type == "task"))
    assert watch is not None and watch.unit_id == session.scalar(select(OrgUnit.id).where(OrgUnit.code == "gxj"))


def test_a_task_is_reassigned_only_within_the_leaders_scope(session: Session, people: dict[str, Actor],
                                                            frozen: Any) -> None:
    task = _task(session, people)
    sweep_at(session, frozen, at(2025, 9, 10))
    found = supervision.reassignable(session, actor=people["zhou"], object_type="task", object_id=task.id)
    assert (found.instance_id, found.task_id) == (task.instance_id, task.id)  # the picker searches this case
    with pytest.raises(Forbidden, match="改派给（to_username）") as refused:  # 自然资源局's head: not zhou's unit
        supervision.reassign(session, seen=None, actor=people["zhou"], object_type="task", object_id=task.id,
                             to_username="wu")
    assert refused.value.details.get("field") == "to_username"
    with pytest.raises(UserNotFound, match="改派给（to_username）"):
        supervision.reassign(session, seen=None, actor=people["zhou"], object_type="task", object_id=task.id,
                             to_username="x")
    session.rollback()
    assert session.get(HumanTask, task.id).assignee_id == people["zhang"].user_id  # type: ignore[union-attr]


def test_urging_a_project_keeps_its_planned_dates_in_order(session: Session, people: dict[str, Actor]) -> None:
    """催办 with a new deadline moves the project's next planned date; past its planned 竣工 it is refused, naming the
    date it would overtake, as the project's own entry form refuses it (计划开工 ≤ 计划竣工 ≤ 计划投产)."""
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "gxj"))
    assert unit is not None
    library = ProjectLibrary(code="key", name="重点项目")
    session.add(library)
    session.flush()
    project = Project(code="XM-2025-0001", name="智能家电产业园", library_id=library.id, category="focus",
                      investment=60000, stage="signed", responsible_unit_id=unit.id, planned_start=date(2025, 8, 1),
                      planned_complete=date(2025, 12, 31), planned_produce=date(2026, 3, 1))
    session.add(project)
    session.commit()
    with pytest.raises(InvalidInput, match="计划竣工日期") as err:
        supervision.urge(session, seen=None, actor=people["zhou"], object_type="project", object_id=project.id,
                         message="加快", due_date=date(2026, 6, 1))
    assert err.value.details["field"] == "planned_complete"
    session.rollback()
    assert (project.planned_start, project.planned_complete) == (date(2025, 8, 1), date(2025, 12, 31))
    assert supervision.urge(session, seen=None, actor=people["zhou"], object_type="project", object_id=project.id,
                            message="加快", due_date=date(2025, 10, 15)) >= 0
    assert project.planned_start == date(2025, 10, 15)


# -- deactivated people (停用) on the ladder: passed over, never reported as reached -----------------------------------

def _off(session: Session, username: str) -> None:
    from engine.org.models import User
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None
    user.is_active = False  # as the directory sync leaves one whose work nobody else could take
    session.commit()


def _skipped(session: Session, step: str) -> list[list[int]]:
    return [e.after.get("skipped", []) for e in session.scalars(
        select(AuditEvent).where(AuditEvent.action == f"escalation.{step}").order_by(AuditEvent.id))]


def test_a_unit_head_deactivated_during_an_escalation_is_passed_over_one_rung_up(
        session: Session, people: dict[str, Actor], frozen: Any) -> None:
    """停用 takes the head mark off the unit, as the directory sync does for a head who left: the unit_head rung then
    names nobody (until a new head is set), and passes to the rung above, the unit's responsible leader."""
    from engine.org import leaving
    org.add_user(session, username="admin", display_name="管理员", is_admin=True)
    task = _task(session, people)
    ids = {k: v.user_id for k, v in people.items()}
    assert sweep_at(session, frozen, at(2025, 9, 3)) == 3  # yellow, red, handler: 张伟
    leaving.deactivate_user(session, user_id=ids["zhou"], actor=actor_for(session, "admin"))  # 局长 leaves
    session.commit()
    sweep_at(session, frozen, at(2025, 9, 10))
    recipients = {s: r for _, s, r in steps_of(session, "task", task.id)}
    assert recipients["unit_head"] == [ids["wang"]]  # the rung above: the unit's responsible leader
    assert all(ids["zhou"] not in r for r in recipients.values())
    assert notified(session, people["zhou"]) == []
    assert audit.verify(session).ok


def test_deactivated_handlers_are_passed_over_and_unit_members_exclude_them(
        session: Session, people: dict[str, Actor], make_issue: Callable[..., LedgerIssue], frozen: Any) -> None:
    ids = {k: v.user_id for k, v in people.items()}
    issue = make_issue(date(2025, 9, 26))  # 张伟's
    lone = make_issue(date(2025, 9, 26), code="WT-2025-0002", handler=None)  # 工信局's: its members handle it
    _off(session, "zhang")
    _off(session, "li")
    sweep_at(session, frozen, at(2025, 9, 29))
    assert escalation.Org.load(session).members(session, issue.unit_id) == [ids["zhou"]]
    got = {(o, s): r for o in (issue.id, lone.id) for _, s, r in steps_of(session, "issue", o)}
    # 张伟 alone handles the first: his reminders go one rung up, to the unit head.
    assert got[(issue.id, "yellow")] == got[(issue.id, "handler")] == [ids["zhou"]]
    assert got[(lone.id, "handler")] == [ids["zhou"]]  # the unit's members are 周 alone now
    assert notified(session, people["zhang"]) == notified(session, people["li"]) == []


def test_a_deactivated_responsible_leader_is_passed_over_and_the_top_goes_to_the_unit(
        session: Session, people: dict[str, Actor], make_issue: Callable[..., LedgerIssue], frozen: Any) -> None:
    ids = {k: v.user_id for k, v in people.items()}
    issue = make_issue(date(2025, 9, 26))  # 责任领导 孙; the unit's 包挂 leader 王 (a city leader)
    _off(session, "sun")
    _off(session, "wang")
    sweep_at(session, frozen, at(2025, 10, 11))
    got = {s: r for _, s, r in steps_of(session, "issue", issue.id)}
    # Nobody active above the unit head: the responsible and city leader rungs reach the unit (its active members).
    assert got["responsible_leader"] == got["city_leader"] == [ids["zhou"], ids["zhang"], ids["li"]]
    assert _skipped(session, "responsible_leader") == [[ids["sun"], ids["wang"]]]
    assert notified(session, people["sun"]) == notified(session, people["wang"]) == []
