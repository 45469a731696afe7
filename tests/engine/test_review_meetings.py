"""项目推进暨评审会议 (plan line 113): biweekly dates, the agenda of projects due for review, decisions recorded."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, org
from engine.audit.models import AuditEvent
from engine.errors import Conflict, Forbidden, InvalidInput
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor, actor_for
from engine.org.models import OrgUnit
from plan import meetings
from plan.meetings import core
from plan.meetings.models import ReviewMeeting
from plan.projects.models import Project, ProjectLibrary, ProjectStage
from tests.engine.conftest import at_once

SH = clock.SHANGHAI
RHYTHM = core.parse({"meetings": {"review": {"first": "2025-01-08", "weeks": 2, "prepare_days": 2, "horizon_days": 14,
                                             "recipients": ["city_leader"], "unit": "shz"}}})


def _world(session: Session) -> dict[str, Actor]:
    org.add_role(session, code="city_leader", name="市级领导")
    org.add_role(session, code="investment_officer", name="招商专员")
    shz = org.add_unit(session, code="shz", name="上合示范区")
    jxj = org.add_unit(session, code="jxj", name="胶西街道")
    org.add_user(session, username="wang", display_name="王建国", role_codes=["city_leader"])
    org.add_user(session, username="zs", display_name="投促局王磊", role_codes=["investment_officer"])
    org.add_user(session, username="staff", display_name="普通用户", unit_codes=["shz"])
    library = ProjectLibrary(code="investment", name="招商引资项目")
    session.add(library)
    session.flush()

    def project(code: str, stage: str, unit: OrgUnit, **planned: date) -> Project:
        row = Project(code=code, name=f"项目{code}", library_id=library.id, category="key", investment=1000,
                      stage=stage, responsible_unit_id=unit.id, created_at=clock.now(), **planned)
        session.add(row)
        session.flush()
        return row
    project("XM-1", "signed", shz, planned_start=date(2025, 9, 1))             # 开工 behind
    project("XM-2", "signed", shz, planned_start=date(2025, 9, 20))            # 开工 within 14 days of 9-17
    new = project("XM-3", "lead", shz, planned_sign=date(2025, 12, 1))         # a new lead since the last meeting
    session.add(ProjectStage(project_id=new.id, stage="lead", on=date(2025, 9, 5)))
    project("XM-4", "signed", jxj, planned_start=date(2025, 9, 1))             # behind, but not 上合新区's
    project("XM-5", "producing", shz)                                         # done: never on the agenda
    project("XM-6", "started", shz, planned_complete=date(2026, 6, 30))       # on time, nothing planned soon
    session.commit()
    return {u: actor_for(session, u) for u in ("wang", "zs", "staff")}


@pytest.mark.parametrize(("raw", "named"), [
    ({"first": "2025-13-01"}, "meetings.review.first"),
    ({"first": "2025-01-08", "weeks": 0}, "meetings.review.weeks"),
    ({"first": "2025-01-08", "recipients": "wang"}, "meetings.review.recipients"),
    ({"first": "2025-01-08", "when": 1}, "未知字段"),
])
def test_a_bad_rhythm_is_refused_naming_the_field(raw: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        core.parse({"meetings": {"review": raw}})


def test_every_second_week_from_the_first() -> None:
    assert RHYTHM is not None
    assert core.next_meeting(RHYTHM, date(2024, 12, 1)) == date(2025, 1, 8)
    assert core.next_meeting(RHYTHM, date(2025, 1, 8)) == date(2025, 1, 8)
    assert core.next_meeting(RHYTHM, date(2025, 1, 9)) == date(2025, 1, 22)
    assert core.next_meeting(RHYTHM, date(2025, 9, 4)) == date(2025, 9, 17)  # 3 Sep was one


def test_a_meeting_that_falls_on_a_holiday_is_held_on_the_next_working_day(session: Session, frozen: Any) -> None:
    """Every second Wednesday from 8 January 2025 falls on 1 October 2025 (国庆节) and 18 February 2026 (春节): no
    meeting is held then, nor its agenda sent for that day. It is held on the first working day after (9 October,
    24 February), and the rhythm goes on from the day it was due."""
    assert RHYTHM is not None
    assert core.next_meeting(RHYTHM, date(2025, 9, 18)) == date(2025, 10, 9)
    assert core.next_meeting(RHYTHM, date(2025, 10, 5)) == date(2025, 10, 9)  # during the holiday: that same one
    assert core.next_meeting(RHYTHM, date(2025, 10, 10)) == date(2025, 10, 15)
    assert core.next_meeting(RHYTHM, date(2026, 2, 12)) == date(2026, 2, 24)
    _world(session)
    assert meetings.ensure_meeting(session, now=datetime(2025, 9, 29, 7, tzinfo=SH), rhythm=RHYTHM) is None
    meeting = meetings.ensure_meeting(session, now=datetime(2025, 10, 7, 7, tzinfo=SH), rhythm=RHYTHM)
    assert meeting is not None and meeting.held_on == date(2025, 10, 9)
    assert "2025年10月9日" in meeting.title


def test_the_agenda_is_built_once_before_the_meeting_with_its_reasons(session: Session, frozen: Any) -> None:
    people = _world(session)
    assert meetings.ensure_meeting(session, now=datetime(2025, 9, 14, 7, tzinfo=SH), rhythm=RHYTHM) is None  # 3 days
    meeting = meetings.ensure_meeting(session, now=datetime(2025, 9, 15, 7, tzinfo=SH), rhythm=RHYTHM)
    session.commit()
    assert meeting is not None and meeting.held_on == date(2025, 9, 17)
    assert [(i["code"], i["reasons"]) for i in meeting.agenda] == [
        ("XM-1", ["开工滞后 16 天（计划 2025-09-01）"]),
        ("XM-2", ["计划 2025-09-20 开工"]),
        ("XM-3", ["新增线索，待评审"]),
    ]
    again = meetings.ensure_meeting(session, now=datetime(2025, 9, 16, 7, tzinfo=SH), rhythm=RHYTHM)
    assert again is not None and again.id == meeting.id
    assert session.scalar(select(func.count()).select_from(ReviewMeeting)) == 1
    told = [m.payload for m in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))]
    assert [(p["user_id"], p["link"]) for p in told] == [(people["wang"].user_id, f"/meetings/{meeting.id}")]


def test_decisions_are_recorded_checked_and_final_once_closed(session: Session, frozen: Any) -> None:
    people = _world(session)
    meeting = meetings.ensure_meeting(session, now=datetime(2025, 9, 15, 7, tzinfo=SH), rhythm=RHYTHM)
    assert meeting is not None
    session.commit()
    clock.freeze(datetime(2025, 9, 17, 10, tzinfo=SH))
    record = dict(meeting_id=meeting.id, project_code="XM-1", outcome="coordinate", decision="由示范区协调施工许可。",
                  unit_code="shz", due_on=date(2025, 9, 24), seen=meetings.decision_version(None))
    ids = {i["code"]: int(i["project_id"]) for i in meeting.agenda}
    with pytest.raises(Forbidden):
        meetings.record_decision(session, **record, actor=people["staff"])
    for bad, field in ((dict(project_code="XM-4"), "project_code"), (dict(outcome="maybe"), "outcome"),
                       (dict(decision="  "), "decision"), (dict(unit_code="nowhere"), "unit_code"),
                       (dict(due_on=date(2025, 9, 1)), "due_on"), (dict(due_on=date(9999, 12, 31)), "due_on"),
                       (dict(unit_code=None), "unit_code")):
        with pytest.raises((InvalidInput, Conflict)) as err:
            meetings.record_decision(session, **{**record, **bad}, actor=people["zs"])
        assert err.value.details.get("field") == field, bad
    session.rollback()
    meetings.record_decision(session, **record, actor=people["zs"])
    with pytest.raises(Conflict) as stale:  # wang's page was opened before zs recorded it
        meetings.record_decision(session, **{**record, "decision": "由示范区协调。"}, actor=people["wang"])
    assert stale.value.details.get("field") == "seen"
    seen = meetings.decision_forms(session, meeting)[ids["XM-1"]].seen
    meetings.record_decision(session, **{**record, "decision": "由示范区协调施工许可，住建局配合。", "seen": seen},
                             actor=people["wang"])
    meetings.record_decision(session, meeting_id=meeting.id, project_code="XM-3", outcome="advance",
                             decision="同意纳入招商引资项目库跟进。", unit_code=None, due_on=None, actor=people["zs"],
                             seen=meetings.decision_version(None))
    session.commit()
    decided = meetings.decisions(session, meeting.id)
    assert len(decided) == 2
    assert {d.decision for d in decided.values()} == {"由示范区协调施工许可，住建局配合。", "同意纳入招商引资项目库跟进。"}
    meetings.close_meeting(session, meeting_id=meeting.id, actor=people["wang"])
    session.commit()
    with pytest.raises(Conflict):
        meetings.record_decision(session, **record, actor=people["zs"])
    with pytest.raises(Conflict):
        meetings.close_meeting(session, meeting_id=meeting.id, actor=people["wang"])
    session.rollback()
    assert audit.verify(session).ok


def test_two_beats_at_once_build_one_agenda(pg_factory: sessionmaker[Session]) -> None:
    with pg_factory() as session:
        _world(session)
    ids: list[int | None] = [None] * 6

    def beat(i: int) -> None:
        with pg_factory() as session:
            meeting = meetings.ensure_meeting(session, now=datetime(2025, 9, 15, 7, tzinfo=SH), rhythm=RHYTHM)
            ids[i] = meeting.id if meeting else None
            session.commit()
    assert at_once(6, beat) == [None] * 6
    with pg_factory() as session:
        assert session.scalar(select(func.count()).select_from(ReviewMeeting)) == 1
    assert len(set(ids)) == 1 and ids[0] is not None


def test_a_corrected_decision_keeps_what_it_replaced_in_the_audit_trail(session: Session, frozen: Any) -> None:
    """A correction that moves only the 落实单位 or the 落实期限 is a change: its audit event says what they were,
    as it does for the outcome and the words (the trail lost the unit and date a correction replaced)."""
    people = _world(session)
    meeting = meetings.ensure_meeting(session, now=datetime(2025, 9, 15, 7, tzinfo=SH), rhythm=RHYTHM)
    assert meeting is not None
    session.commit()
    ids = {i["code"]: int(i["project_id"]) for i in meeting.agenda}
    record = dict(meeting_id=meeting.id, project_code="XM-1", outcome="coordinate", decision="协调施工许可。",
                  actor=people["zs"])
    meetings.record_decision(session, **record, unit_code="shz", due_on=date(2025, 9, 24),
                             seen=meetings.decision_version(None))
    seen = meetings.decision_forms(session, meeting)[ids["XM-1"]].seen
    meetings.record_decision(session, **record, unit_code="jxj", due_on=date(2025, 9, 30), seen=seen)
    session.commit()
    events = session.scalars(select(AuditEvent).where(AuditEvent.stream == f"review_meeting:{meeting.id}",
                                                      AuditEvent.action == "meeting.decision")
                             .order_by(AuditEvent.seq)).all()
    assert [e.before for e in events] == [None, {"outcome": "coordinate", "decision": "协调施工许可。", "unit": "shz",
                                                 "due_on": "2025-09-24"}]
    assert events[1].after["unit"] == "jxj" and events[1].after["due_on"] == "2025-09-30"
