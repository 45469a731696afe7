"""项目推进暨评审会议 (plan line 113: “每两周召开一次上合新区项目推进暨评审会议”).

The `meetings:` section of data/escalation.yaml (next to the report schedule) sets the rhythm:

    meetings:
      review: {first: 2025-01-08, weeks: 2, prepare_days: 2, horizon_days: 14,
               recipients: [city_leader, leader, investment_officer], unit: shz}

A meeting falls every `weeks` weeks from `first`; one that falls on a public holiday (or a weekend not worked) is
held on the first working day after it (`held_on`: 1 October 2025 → 9 October). `prepare_days` before the day it
is held the beat builds its agenda —
once: the meeting's date is unique — and tells the recipients. The agenda lists the projects due for
review, each with its reasons: behind a planned date (对进展缓慢项目), a stage planned within
`horizon_days` after the meeting, or a new 线索 since the day the previous meeting was held (to be 评审). `unit` (optional)
keeps to projects located in or run by that unit (上合新区: shz). At the meeting, decisions are recorded
per project: outcome (按计划推进 / 协调解决 / 暂缓 / 退出), the words, the unit that follows it up and the
date; a decision can be corrected until the meeting is closed (held), then the record is final.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import yaml
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine import audit, clock, notify
from engine.deadlines import calendar, sla
from engine.errors import Conflict, Forbidden, InvalidInput, NotFound
from engine.org.actors import SYSTEM, Actor
from engine.org.models import OrgUnit, Role
from plan.dates import YEARS, require_year
from plan.meetings.models import OUTCOMES, MeetingDecision, ReviewMeeting
from plan.projects.lags import PLANNED, STAGE_NAMES, lag_of
from plan.projects.models import STAGES, Project, ProjectStage
from plan.reports.schedule import recipient_ids
from plan.stale import require_fresh, version

SECTION = "meetings"
FIELDS = ("first", "weeks", "prepare_days", "horizon_days", "recipients", "unit")
MEETING_ROLES = ("leader", "city_leader", "investment_officer")  # who records decisions
MAX_AGENDA = 200
OUTCOME_NAMES = {"advance": "按计划推进", "coordinate": "协调解决问题", "hold": "暂缓", "exit": "退出项目库"}


@dataclass(frozen=True)
class Rhythm:
    first: date
    weeks: int = 2
    prepare_days: int = 2
    horizon_days: int = 14
    recipients: tuple[str, ...] = ()
    unit: str | None = None


def parse(data: Any) -> Rhythm | None:
    """Read `meetings.review` of the escalation file's data (None: no meetings scheduled).

    Raises: ValueError naming the field (`meetings.review.weeks: …`).
    """
    section = data.get(SECTION) if isinstance(data, Mapping) else None
    if section is None:
        return None
    raw = section.get("review") if isinstance(section, Mapping) else None
    where = f"{SECTION}.review"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: 应为 {{{', '.join(FIELDS)}}} (expected a mapping)")
    unknown = sorted(set(map(str, raw)) - set(FIELDS))
    if unknown:
        raise ValueError(f"{where}: 未知字段 (unknown field) {', '.join(unknown)}")
    first = raw.get("first")
    if isinstance(first, str):
        try:
            first = date.fromisoformat(first)
        except ValueError:
            first = None
    if not isinstance(first, date):
        raise ValueError(f"{where}.first: 应为首次会议日期 YYYY-MM-DD (the first meeting's date)")
    numbers = {}
    for name, low, high, default in (("weeks", 1, 8, 2), ("prepare_days", 0, 14, 2), ("horizon_days", 1, 90, 14)):
        value = raw.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{where}.{name}: 应为 {low}–{high} 的整数 (a whole number {low}–{high})")
        numbers[name] = value
    names = raw.get("recipients", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names) or len(names) > 200:
        raise ValueError(f"{where}.recipients: 应为用户名或角色代码的列表 (a list of usernames or role codes)")
    unit = raw.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise ValueError(f"{where}.unit: 应为单位代码 (a unit code)")
    return Rhythm(first, numbers["weeks"], numbers["prepare_days"], numbers["horizon_days"],
                  tuple(dict.fromkeys(names)), unit)


def load() -> Rhythm | None:
    path = sla.config_path()
    return parse(yaml.safe_load(path.read_text(encoding="utf-8"))) if path.is_file() else None


def held_on(due: date) -> date:
    """The day a meeting due on `due` is held: that day, or the first working day after it when it is a public
    holiday or a weekend not worked (the engine's calendar: 法定节假日 and 调休)."""
    day = due
    while not calendar.is_working_day(day):
        day += timedelta(days=1)
    return day


def _held_around(rhythm: Rhythm, day: date) -> list[date]:
    """The days the meetings due around `day` are held (a move past a holiday never spans two steps)."""
    step = 7 * rhythm.weeks
    n = max(0, (day - rhythm.first).days // step)
    return [held_on(rhythm.first + timedelta(days=k * step)) for k in range(max(0, n - 2), n + 3)]


def next_meeting(rhythm: Rhythm, today: date) -> date:
    """The first day on or after `today` a meeting is held: every `weeks` weeks from `first`, each moved to the
    next working day when it falls on a holiday (the rhythm goes on from the day it was due)."""
    return min(d for d in _held_around(rhythm, today) if d >= today)


def previous_meeting(rhythm: Rhythm, day: date) -> date:
    """The day the meeting before the one held on `day` was held (a rhythm's step before the first one)."""
    return max((d for d in _held_around(rhythm, day) if d < day), default=day - timedelta(days=7 * rhythm.weeks))


def agenda(session: Session, rhythm: Rhythm, day: date) -> list[dict[str, Any]]:
    """The projects due for review at the meeting of `day`, each with its reasons, most urgent first."""
    since = previous_meeting(rhythm, day)
    horizon = day + timedelta(days=rhythm.horizon_days)
    query = select(Project).where(Project.stage != STAGES[-1]).order_by(Project.code)
    if rhythm.unit:
        unit_id = session.scalar(select(OrgUnit.id).where(OrgUnit.code == rhythm.unit))
        if unit_id is None:
            raise ValueError(f"{SECTION}.review.unit: 单位不存在 (no such unit): {rhythm.unit}")
        query = query.where(or_(Project.location_unit_id == unit_id, Project.responsible_unit_id == unit_id))
    new_leads = set(session.scalars(select(ProjectStage.project_id).where(
        ProjectStage.stage == "lead", ProjectStage.on > since, ProjectStage.on <= day)))
    items: list[tuple[int, dict[str, Any]]] = []
    for project in session.scalars(query):
        reasons: list[str] = []
        urgency = 3
        lag = lag_of(project, day)
        if lag is not None:
            reasons.append(f"{STAGE_NAMES[lag.stage]}滞后 {lag.days_late} 天（计划 {lag.planned.isoformat()}）")
            urgency = 0
        reached = STAGES.index(project.stage) if project.stage in STAGES else 0
        for stage, attribute in PLANNED:
            planned: date | None = getattr(project, attribute)
            if planned is not None and day <= planned <= horizon and STAGES.index(stage) > reached:
                reasons.append(f"计划 {planned.isoformat()} {STAGE_NAMES[stage]}")
                urgency = min(urgency, 1)
        if project.id in new_leads:
            reasons.append("新增线索，待评审")
            urgency = min(urgency, 2)
        if reasons:
            items.append((urgency, {"project_id": project.id, "code": project.code, "name": project.name,
                                    "stage": project.stage, "reasons": reasons}))
    items.sort(key=lambda pair: (pair[0], pair[1]["code"]))
    return [item for _, item in items[:MAX_AGENDA]]


def ensure_meeting(session: Session, *, now: datetime, rhythm: Rhythm | None = None) -> ReviewMeeting | None:
    """Build the next meeting's agenda when it is `prepare_days` away, once; tell the recipients (flushes)."""
    rhythm = load() if rhythm is None else rhythm
    if rhythm is None:
        return None
    today = clock.as_utc(now).astimezone(clock.SHANGHAI).date()
    day = next_meeting(rhythm, today)
    if (day - today).days > rhythm.prepare_days:
        return None
    found = session.scalar(select(ReviewMeeting).where(ReviewMeeting.held_on == day))
    if found is not None:
        return found
    meeting = ReviewMeeting(held_on=day, title=f"项目推进暨评审会议（{day.year}年{day.month}月{day.day}日）",
                            status="planned", agenda=agenda(session, rhythm, day),
                            recipients=recipient_ids(session, rhythm.recipients) if rhythm.recipients else [],
                            created_at=clock.now())
    try:
        with session.begin_nested():
            session.add(meeting)
            session.flush()
    except IntegrityError:  # another beat built it a moment ago
        return session.scalar(select(ReviewMeeting).where(ReviewMeeting.held_on == day))
    audit.record(session, SYSTEM, "meeting.agenda", stream=f"review_meeting:{meeting.id}", object_type="review_meeting",
                 object_id=meeting.id, after={"held_on": day, "projects": [i["code"] for i in meeting.agenda]})
    notify.send_many(session, [notify.worded(u, "meeting", "meeting_agenda",
                                             {"title": meeting.title, "count": len(meeting.agenda)},
                                             link=f"/meetings/{meeting.id}", key=f"meeting:{meeting.id}:{u}")
                               for u in meeting.recipients or []])
    return meeting


def may_record(session: Session, actor: Actor) -> bool:
    if actor.is_admin or actor.is_system:
        return True
    codes = set(session.scalars(select(Role.code).where(Role.id.in_(actor.role_ids)))) if actor.role_ids else set()
    return bool(codes & set(MEETING_ROLES))


def require_record(session: Session, actor: Actor) -> None:
    """Refuse who may not record decisions, whatever the meeting (the page asks before it reads the form).

    Raises: Forbidden
    """
    if not may_record(session, actor):
        raise Forbidden("只有责任领导、市级领导和招商专员可以记录会议决定 (not allowed to record decisions)")


def no_such_meeting(meeting_id: int) -> NotFound:
    """The answer for a meeting that does not exist, and for one the reader may not see at all (`sight`)."""
    return NotFound(f"会议不存在 (no such meeting): {meeting_id}", meeting_id=meeting_id)


def get_meeting(session: Session, meeting_id: int, *, lock: bool = False) -> ReviewMeeting:
    """Raises: NotFound."""
    meeting = session.get(ReviewMeeting, meeting_id, with_for_update=lock)
    if meeting is None:
        raise no_such_meeting(meeting_id)
    return meeting


def decision_version(row: MeetingDecision | None) -> str:
    """The `seen` of a project's decision form (`plan.stale`): what the page showed of its decision, or none."""
    return version(*((row.outcome, row.decision, row.unit_id, row.due_on) if row else (None,)))


@dataclass(frozen=True)
class DecisionForm:
    """What a project's decision form carries besides the decision: its 落实单位's code and its `seen`."""

    unit_code: str
    seen: str


def decision_forms(session: Session, meeting: ReviewMeeting) -> dict[int, DecisionForm]:
    """The decision form of each agenda project, by project id."""
    rows = decisions(session, meeting.id)
    units = dict(session.execute(select(OrgUnit.id, OrgUnit.code).where(
        OrgUnit.id.in_([r.unit_id for r in rows.values() if r.unit_id] or [-1]))).all())
    return {int(i["project_id"]): DecisionForm(units.get(row.unit_id, "") if row and row.unit_id else "",
                                               decision_version(row))
            for i in meeting.agenda for row in (rows.get(int(i["project_id"])),)}


def record_decision(session: Session, *, meeting_id: int, project_code: str, outcome: str, decision: str,
                    unit_code: str | None, due_on: date | None, actor: Actor, seen: str | None) -> MeetingDecision:
    """Record (or correct, while the meeting is open) the decision on one agenda project (flushes).

    `seen`: the `decision_version` the page showed: a correction over one recorded since is refused (two people
    minuting one meeting), as is a form without it.

    Raises: Forbidden, NotFound, Conflict (meeting closed; project not on the agenda; the page is stale), InvalidInput
    """
    require_record(session, actor)
    meeting = get_meeting(session, meeting_id, lock=True)
    if meeting.status == "held":
        raise Conflict(f"{meeting.title} 已结束，决定不能再修改 (the meeting is closed)", meeting_id=meeting_id)
    item = next((i for i in meeting.agenda if i["code"] == project_code), None)
    if item is None:
        raise Conflict(f"项目 {project_code} 不在本次会议议程中 (not on the agenda)", field="project_code")
    if outcome not in OUTCOMES:
        raise InvalidInput(f"决定须为 {' / '.join(OUTCOME_NAMES.values())} (outcome)", field="outcome")
    text = (decision or "").strip()
    if not text or len(text) > 4000:
        raise InvalidInput("请填写会议决定（不超过 4000 字） (decision)", field="decision")
    unit = None
    if unit_code:
        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == unit_code))
        if unit is None:
            raise InvalidInput(f"落实单位不存在 (no such unit): {unit_code}", field="unit_code")
    if due_on is not None and due_on < meeting.held_on:
        raise InvalidInput(f"落实期限 {due_on} 早于会议日期 {meeting.held_on} (before the meeting)", field="due_on")
    if due_on is not None:  # a deadline the ladder can follow (plan.dates)
        require_year(due_on.year, field="due_on", message=f"落实期限须在 {YEARS} 年间 (due_on: years {YEARS})")
    if outcome == "coordinate" and (unit is None or due_on is None):
        raise InvalidInput("协调解决的问题须指定落实单位和期限 (unit and due date required)",
                           field="unit_code" if unit is None else "due_on")
    row = session.scalar(select(MeetingDecision).where(MeetingDecision.meeting_id == meeting.id,
                                                       MeetingDecision.project_id == item["project_id"]))
    wanted = (outcome, text, unit.id if unit else None, due_on)
    require_fresh(seen, decision_version(row), what=f"项目 {project_code} 的会议决定",
                  changes=row is None or (row.outcome, row.decision, row.unit_id, row.due_on) != wanted)
    before = None if row is None else {  # all of what a correction replaces, the unit and date included
        "outcome": row.outcome, "decision": row.decision,
        "unit": session.scalar(select(OrgUnit.code).where(OrgUnit.id == row.unit_id)) if row.unit_id else None,
        "due_on": row.due_on}
    if row is None:
        row = MeetingDecision(meeting_id=meeting.id, project_id=item["project_id"])
        session.add(row)
    row.outcome, row.decision, row.unit_id, row.due_on = outcome, text, unit.id if unit else None, due_on
    row.recorded_by_id, row.recorded_at = actor.user_id, clock.now()
    session.flush()
    audit.record(session, actor, "meeting.decision", stream=f"review_meeting:{meeting.id}",
                 object_type="review_meeting", object_id=meeting.id, before=before,
                 after={"project": project_code, "outcome": outcome, "decision": text,
                        "unit": unit.code if unit else None, "due_on": due_on})
    return row


def close_meeting(session: Session, *, meeting_id: int, actor: Actor) -> ReviewMeeting:
    """Mark the meeting held: its decisions are final (flushes). Raises: Forbidden, NotFound, Conflict."""
    if not may_record(session, actor):
        raise Forbidden("无权结束会议 (not allowed)")
    meeting = get_meeting(session, meeting_id, lock=True)
    if meeting.status == "held":
        raise Conflict(f"{meeting.title} 已结束 (already closed)", meeting_id=meeting_id)
    meeting.status, meeting.held_at = "held", clock.now()
    session.flush()
    decided = session.scalars(select(MeetingDecision.project_id).where(MeetingDecision.meeting_id == meeting.id)).all()
    audit.record(session, actor, "meeting.close", stream=f"review_meeting:{meeting.id}", object_type="review_meeting",
                 object_id=meeting.id, after={"decided": len(decided), "agenda": len(meeting.agenda)})
    return meeting


def decisions(session: Session, meeting_id: int) -> dict[int, MeetingDecision]:
    """The meeting's decisions by project id."""
    return {d.project_id: d for d in session.scalars(select(MeetingDecision).where(
        MeetingDecision.meeting_id == meeting_id))}


def recent(session: Session, limit: int = 20) -> list[ReviewMeeting]:
    return list(session.scalars(select(ReviewMeeting).order_by(ReviewMeeting.held_on.desc()).limit(limit)))


__all__ = ["OUTCOMES", "OUTCOME_NAMES", "SECTION", "DecisionForm", "Rhythm", "agenda", "close_meeting", "decision_forms",
           "decision_version", "decisions", "ensure_meeting", "get_meeting", "held_on", "load", "may_record",
           "next_meeting", "no_such_meeting", "parse", "previous_meeting", "recent", "record_decision", "require_record"]
