"""周调度 and 月通报 on schedule: produced by the beat and delivered to the leaders the escalation file names.

The `reports:` section of data/escalation.yaml (the file of the deadline ladder, kept by the same people):

    reports:
      weekly:  {weekday: 1, hour: 8, recipients: [city_leader, leader]}
      monthly: {day: 1, hour: 8, recipients: [city_leader]}

- weekly: from `hour` o'clock (Asia/Shanghai) of `weekday` (1 = Monday … 7 = Sunday), the report of the
  week before (Monday to Sunday);
- monthly: from `hour` o'clock of `day` (1–28) of the month, the report of the month before;
- recipients: usernames or role codes (every active user holding the role, in any unit); a name that is
  neither is refused when the schedule is read, naming the entry.

A kind left out is not scheduled. The beat asks every few minutes (`plan.jobs.scheduled_reports`): the
latest due period of each kind gets one run (a unique index on kind and period makes a second ask, or a
second beat, a no-op), the run is generated like a requested one, and each recipient is told once (the
notification's key). A period missed while the beat was down is produced when it comes back, as long as
it is still the latest due one.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.deadlines import sla
from engine.org.actors import SYSTEM
from engine.org.models import Membership, Role, User
from plan.reports.core import KINDS, period
from plan.reports.models import ReportRun

SECTION = "reports"
FIELDS = {"weekly": ("weekday", "hour", "recipients"), "monthly": ("day", "hour", "recipients")}
LIMITS = {"weekday": (1, 7), "day": (1, 28), "hour": (0, 23)}
MAX_RECIPIENTS = 200


@dataclass(frozen=True)
class Schedule:
    """When one kind of report is due and whom it goes to (names as written: usernames or role codes)."""

    kind: str
    when: int  # weekday 1–7 (weekly) or day of the month 1–28 (monthly)
    hour: int
    recipients: tuple[str, ...]


def parse(data: Any) -> dict[str, Schedule]:
    """Read the `reports:` section of the escalation file's data.

    Raises: ValueError naming the entry and field (`reports.weekly.hour: …`).
    """
    section = (data or {}).get(SECTION) if isinstance(data, Mapping) else None
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ValueError(f"{SECTION}: 应为 weekly / monthly 的设置 (expected a mapping)")
    out: dict[str, Schedule] = {}
    for kind, raw in section.items():
        where = f"{SECTION}.{kind}"
        if kind not in FIELDS:
            raise ValueError(f"{where}: 未知的报表类型 (unknown kind); 可用 (allowed): {', '.join(FIELDS)}")
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: 应为 {{{', '.join(FIELDS[kind])}}} (expected a mapping)")
        unknown = sorted(set(map(str, raw)) - set(FIELDS[kind]))
        if unknown:
            raise ValueError(f"{where}: 未知字段 (unknown field) {', '.join(unknown)}; 可用 (allowed): "
                             f"{', '.join(FIELDS[kind])}")
        numbers = {}
        for name in FIELDS[kind][:2]:
            value, (low, high) = raw.get(name, 8 if name == "hour" else 1), LIMITS[name]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{where}.{name}: 应为 {low}–{high} 的整数 (a whole number {low}–{high}), 不是 {value!r}")
            numbers[name] = value
        names = raw.get("recipients")
        if (not isinstance(names, list) or not names or len(names) > MAX_RECIPIENTS
                or not all(isinstance(n, str) and n.strip() for n in names)):
            raise ValueError(f"{where}.recipients: 应为 1–{MAX_RECIPIENTS} 个用户名或角色代码的列表 "
                             f"(a list of 1–{MAX_RECIPIENTS} usernames or role codes)")
        out[kind] = Schedule(kind, numbers[FIELDS[kind][0]], numbers["hour"], tuple(dict.fromkeys(names)))
    return out


def load(path: Path | None = None) -> dict[str, Schedule]:
    """The schedule of the escalation file in use (JZFLOW_ESCALATION_FILE, else data/escalation.yaml)."""
    path = path or sla.config_path()
    if not path.is_file():
        return {}
    return parse(yaml.safe_load(path.read_text(encoding="utf-8")))


def due_day(schedule: Schedule, now: datetime) -> date:
    """The first day of the latest period whose report is due at `now`."""
    local = clock.as_utc(now).astimezone(clock.SHANGHAI)
    today = local.date()
    if schedule.kind == "weekly":
        monday = today - timedelta(days=today.weekday())
        release = monday + timedelta(days=schedule.when - 1)
        previous = monday - timedelta(days=7)
        if local < datetime.combine(release, time(schedule.hour), tzinfo=clock.SHANGHAI):
            return previous - timedelta(days=7)  # this week's release is still ahead: the one before it
        return previous
    first = today.replace(day=1)
    release = first.replace(day=schedule.when)
    last_month = first - timedelta(days=1)
    if local < datetime.combine(release, time(schedule.hour), tzinfo=clock.SHANGHAI):
        return (last_month.replace(day=1) - timedelta(days=1)).replace(day=1)
    return last_month.replace(day=1)


def recipient_ids(session: Session, names: tuple[str, ...]) -> list[int]:
    """Active users named, by username or by a role they hold (in any unit).

    Raises: ValueError listing the names that are neither.
    """
    users = dict(session.execute(select(User.username, User.id).where(User.username.in_(names),
                                                                      User.is_active.is_(True))).all())
    roles = dict(session.execute(select(Role.code, Role.id).where(Role.code.in_(names))).all())
    unknown = [n for n in names if n not in users and n not in roles]
    if unknown:
        raise ValueError(f"{SECTION}: 既不是在职用户也不是角色 (neither an active user nor a role): {', '.join(unknown)}")
    holders = session.scalars(select(Membership.user_id).join(User, User.id == Membership.user_id)
                              .where(Membership.role_id.in_(list(roles.values()) or [-1]), User.is_active.is_(True)))
    return sorted(set(users.values()) | set(holders))


def ensure_runs(session: Session, *, now: datetime, schedules: dict[str, Schedule] | None = None) -> list[int]:
    """Create the due scheduled runs that do not exist yet (flushes); return the ids of those not done."""
    schedules = load() if schedules is None else schedules
    pending: list[int] = []
    for kind, schedule in sorted(schedules.items()):
        start, end, title = period(kind, due_day(schedule, now))
        found = session.scalar(select(ReportRun).where(ReportRun.scheduled.is_(True), ReportRun.kind == kind,
                                                       ReportRun.period_start == start)
                               .execution_options(populate_existing=True))
        if found is None:
            run = ReportRun(kind=kind, period_start=start, period_end=end, title=title, status="pending", progress=0,
                            scheduled=True, recipients=recipient_ids(session, schedule.recipients),
                            created_at=clock.now())
            try:
                with session.begin_nested():
                    session.add(run)
                    session.flush()
            except IntegrityError:  # another beat made it a moment ago
                found = session.scalar(select(ReportRun).where(ReportRun.scheduled.is_(True), ReportRun.kind == kind,
                                                               ReportRun.period_start == start))
            else:
                audit.record(session, SYSTEM, "report.schedule", stream=f"report_run:{run.id}", object_type="report_run",
                             object_id=run.id, after={"kind": kind, "start": start, "end": end,
                                                      "recipients": run.recipients})
                found = run
        if found is not None and found.status != "done":
            pending.append(found.id)
    return pending


__all__ = ["KINDS", "SECTION", "Schedule", "due_day", "ensure_runs", "load", "parse", "recipient_ids"]
