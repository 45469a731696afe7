"""周调度 and 月通报 on schedule (escalation.yaml's `reports:`): due periods, one run each, its leaders told."""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, org
from engine.deadlines import sla
from engine.errors import NotFound
from engine.notify.models import OutboxMessage
from engine.org.actors import actor_for
from engine.org.models import User
from plan import reports
from plan.data.seed import SEED_DIR
from plan.reports import schedule
from plan.reports.models import ReportRun
from tests.engine.conftest import at_once

SH = clock.SHANGHAI
SCHEDULES = schedule.parse({"reports": {"weekly": {"weekday": 1, "hour": 8, "recipients": ["city_leader", "officer"]},
                                        "monthly": {"day": 1, "hour": 8, "recipients": ["city_leader"]}}})


@pytest.fixture
def people(session: Session) -> dict[str, int]:
    org.add_role(session, code="city_leader", name="市级领导")
    org.add_role(session, code="ledger_officer", name="台账管理员")
    made = {"wang": org.add_user(session, username="wang", display_name="王建国", role_codes=["city_leader"]),
            "li": org.add_user(session, username="li", display_name="李振华", role_codes=["city_leader"]),
            "officer": org.add_user(session, username="officer", display_name="蒋涛"),  # no report role: named
            "gone": org.add_user(session, username="gone", display_name="已离职", role_codes=["city_leader"]),
            "staff": org.add_user(session, username="staff", display_name="普通用户")}
    made["gone"].is_active = False
    session.commit()
    return {name: user.id for name, user in made.items()}


def test_the_repository_file_schedules_both_and_still_parses_as_policies() -> None:
    data = yaml.safe_load((SEED_DIR.parent / "escalation.yaml").read_text(encoding="utf-8"))
    assert set(schedule.parse(data)) == {"weekly", "monthly"}
    policies = sla.parse_policies(data)  # the reports section is not taken for a deadline policy
    assert "reports" not in policies.by_section and "issues" in policies.by_section


@pytest.mark.parametrize(("raw", "named"), [
    ({"weekly": {"weekday": 8, "recipients": ["x"]}}, "reports.weekly.weekday"),
    ({"monthly": {"day": 31, "recipients": ["x"]}}, "reports.monthly.day"),
    ({"weekly": {"hour": "8", "recipients": ["x"]}}, "reports.weekly.hour"),
    ({"weekly": {"recipients": []}}, "reports.weekly.recipients"),
    ({"weekly": {"recipients": "wang"}}, "reports.weekly.recipients"),
    ({"weekly": {"recipients": ["x"] * 201}}, "reports.weekly.recipients"),
    ({"weekly": {"recipients": ["x"], "at": 8}}, "reports.weekly: 未知字段"),
    ({"daily": {"recipients": ["x"]}}, "reports.daily: 未知的报表类型"),
    (["weekly"], "reports:"),
])
def test_a_bad_schedule_is_refused_naming_the_entry(raw: Any, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        schedule.parse({"reports": raw})


@pytest.mark.parametrize(("now", "kind", "start"), [
    (datetime(2025, 9, 29, 7, 59, tzinfo=SH), "weekly", date(2025, 9, 15)),   # Monday before 8: the week before last
    (datetime(2025, 9, 29, 8, 0, tzinfo=SH), "weekly", date(2025, 9, 22)),    # from 8 on Monday: last week
    (datetime(2025, 10, 5, 23, 0, tzinfo=SH), "weekly", date(2025, 9, 22)),   # all week long
    (datetime(2025, 10, 1, 7, 0, tzinfo=SH), "monthly", date(2025, 8, 1)),
    (datetime(2025, 10, 1, 8, 0, tzinfo=SH), "monthly", date(2025, 9, 1)),
    (datetime(2026, 1, 1, 8, 30, tzinfo=SH), "monthly", date(2025, 12, 1)),   # across the year
    (datetime(2025, 12, 31, 23, 30, tzinfo=clock.UTC), "monthly", date(2025, 11, 1)),  # 07:30 on 1 Jan in Shanghai
])
def test_the_latest_due_period(now: datetime, kind: str, start: date) -> None:
    assert schedule.due_day(SCHEDULES[kind], now) == start


def test_each_due_report_is_made_once_and_its_leaders_told_once(session: Session, factory: sessionmaker[Session],
                                                                people: dict[str, int], frozen: Any) -> None:
    clock.freeze(datetime(2025, 10, 6, 9, 0, tzinfo=SH))  # Monday: last week's 周调度 and September's 月通报
    pending = reports.ensure_runs(session, now=clock.now(), schedules=SCHEDULES)
    session.commit()
    assert len(pending) == 2
    assert reports.ensure_runs(session, now=clock.now(), schedules=SCHEDULES) == pending  # asked again: same runs
    runs = {r.kind: r for r in session.scalars(select(ReportRun))}
    assert (runs["weekly"].period_start, runs["monthly"].period_start) == (date(2025, 9, 29), date(2025, 9, 1))
    assert sorted(runs["weekly"].recipients or []) == sorted([people["wang"], people["li"], people["officer"]])
    assert sorted(runs["monthly"].recipients or []) == sorted([people["wang"], people["li"]])  # not the one who left
    session.commit()
    for run_id in pending:
        assert reports.run(factory, run_id) == "done"
        assert reports.run(factory, run_id) == "done"  # a second delivery of the job tells nobody again
    assert reports.ensure_runs(session, now=clock.now(), schedules=SCHEDULES) == []
    told = [(m.payload["user_id"], m.payload) for m in
            session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))]
    assert sorted(u for u, _ in told) == sorted([people["wang"], people["li"], people["officer"],
                                                 people["wang"], people["li"]])
    assert {p["title"] for _, p in told} == {f"报表已生成: {runs['weekly'].title}", f"报表已生成: {runs['monthly'].title}"}
    # A named recipient without a report role may open the run sent to them, nobody else without one may.
    # (NotFound: a run they may not see answers as one that does not exist)
    assert reports.get_run(session, runs["weekly"].id, actor_for(session, "officer")).id == runs["weekly"].id
    with pytest.raises(NotFound):
        reports.get_run(session, runs["monthly"].id, actor_for(session, "officer"))
    with pytest.raises(NotFound):
        reports.get_run(session, runs["weekly"].id, actor_for(session, "staff"))


def test_an_unknown_recipient_fails_the_beat_run_and_changes_nothing(session: Session, people: dict[str, int]) -> None:
    bad = schedule.parse({"reports": {"weekly": {"recipients": ["wang", "nobody", "gone"]}}})
    with pytest.raises(ValueError, match="nobody, gone"):
        reports.ensure_runs(session, now=datetime(2025, 10, 6, 9, tzinfo=SH), schedules=bad)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(ReportRun)) == 0


def test_the_beat_job_reads_the_escalation_file(session: Session, people: dict[str, int], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "escalation.yaml"
    path.write_text("defaults: {}\nreports:\n  monthly: {day: 2, hour: 9, recipients: [li]}\n", encoding="utf-8")
    monkeypatch.setenv("JZFLOW_ESCALATION_FILE", str(path))
    assert schedule.load() == {"monthly": schedule.Schedule("monthly", 2, 9, ("li",))}
    ids = reports.ensure_runs(session, now=datetime(2025, 10, 2, 9, tzinfo=SH))
    run = session.get(ReportRun, ids[0])
    assert run is not None and run.period_start == date(2025, 9, 1) and run.recipients == [people["li"]]


def test_two_beats_at_once_make_one_run(pg_factory: sessionmaker[Session]) -> None:
    with pg_factory() as session:
        org.add_role(session, code="city_leader", name="市级领导")
        org.add_user(session, username="wang", display_name="王建国", role_codes=["city_leader"])
        org.add_user(session, username="officer", display_name="蒋涛")
        session.commit()
    now = datetime(2025, 10, 6, 9, tzinfo=SH)
    found: list[list[int]] = [[] for _ in range(8)]

    def beat(i: int) -> None:
        with pg_factory() as session:
            found[i] = reports.ensure_runs(session, now=now, schedules=SCHEDULES)
            session.commit()
    assert at_once(8, beat) == [None] * 8
    with pg_factory() as session:
        assert session.scalar(select(func.count()).select_from(ReportRun)) == 2
        assert len({tuple(f) for f in found}) == 1
        assert session.scalar(select(func.count()).select_from(User)) == 2


def test_a_report_that_fails_does_not_hold_up_the_other_kind(session: Session, factory: sessionmaker[Session],
                                                             people: dict[str, int], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The beat job generates the due runs in turn: one that fails (its data, a font, a bug) is marked failed and the
    next is still generated — raising out of the loop left the 周调度 ungenerated for as long as the 月通报 failed."""
    from plan import jobs
    from plan.reports import core
    path = tmp_path / "escalation.yaml"
    path.write_text("defaults: {}\nreports:\n  weekly: {weekday: 1, hour: 8, recipients: [wang]}\n"
                    "  monthly: {day: 1, hour: 8, recipients: [wang]}\n", encoding="utf-8")
    monkeypatch.setenv("JZFLOW_ESCALATION_FILE", str(path))
    monkeypatch.setattr(jobs, "session_factory", lambda: factory)
    built = core.build

    def build(s: Session, *, kind: str, **kw: Any) -> core.Report:
        if kind == "monthly":  # generated first (kinds in name order)
            raise RuntimeError("月通报的数据有误 (bad data)")
        return built(s, kind=kind, **kw)
    monkeypatch.setattr(core, "build", build)
    clock.freeze(datetime(2025, 10, 6, 9, 0, tzinfo=SH))  # Monday: both are due
    jobs.scheduled_reports()
    session.expire_all()
    assert {r.kind: r.status for r in session.scalars(select(ReportRun))} == {"monthly": "failed", "weekly": "done"}
