"""停用 of a leader: the 责任领导 / 包挂 leader (`responsible_leader_id`) of the person's open items and the leader marks of
their units do not keep naming someone who can no longer log in.

An open 问题台账 issue, 招商线索 or project whose responsible leader they are goes to the successor (接手人; a project's
包挂 only to a successor who is a 市级领导), else to whom the deadline ladder reaches at leader level in their place
(the first active responsible leader up the item's unit and its parents; for a project, the first 市级领导 there), else
to nobody, its unit head told to have one named. A unit whose head (负责人) or responsible leader they are loses that
mark, as the directory sync does for a head who left. One audit event per item and unit, in the deactivation's
transaction; closed items keep theirs (history). On SQLite and PostgreSQL. Hostile: another leader's items, a successor
who is no 市级领导, two administrators at once, the person deactivated twice.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import cli, clock, org
from engine.audit.models import AuditEvent
from engine.notify.models import OutboxMessage
from engine.org import leaving
from engine.org.actors import Actor, actor_for
from engine.org.models import Membership, OrgUnit, User
from plan.leads.models import InvestmentLead
from plan.ledger.models import LedgerIssue
from plan.projects.models import Project, ProjectLibrary
from tests.engine.conftest import at_once

Row = LedgerIssue | InvestmentLead | Project


@pytest.fixture
def people(session: Session, frozen: Any) -> dict[str, Actor]:
    """市政府 (leader qian) above 工信局 (head zhou, leader zhao); sun a 市级领导 of no unit; zhang staff; admins."""
    org.add_role(session, code="city_leader", name="市级领导")
    org.add_unit(session, code="szf", name="市政府")
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_user(session, username="zhou", display_name="局长周建华", unit_codes=["gxj"], is_head=True)
    org.add_user(session, username="zhang", display_name="张伟", unit_codes=["gxj"])
    for name, shown in (("zhao", "赵副市长"), ("qian", "钱市长"), ("sun", "孙副市长")):
        org.add_user(session, username=name, display_name=shown, role_codes=["city_leader"])
    org.add_user(session, username="admin", display_name="管理员", is_admin=True)
    org.add_user(session, username="admin2", display_name="管理员二", is_admin=True)
    actors = {u: actor_for(session, u) for u in ("zhou", "zhang", "zhao", "qian", "sun", "admin", "admin2")}
    szf, gxj = _unit(session, "szf"), _unit(session, "gxj")
    szf.responsible_leader_id = actors["qian"].user_id
    gxj.parent_id, gxj.responsible_leader_id = szf.id, actors["zhao"].user_id
    session.add(ProjectLibrary(code="key", name="重点项目"))
    session.commit()
    return actors


def _unit(s: Session, code: str) -> OrgUnit:
    found = s.scalar(select(OrgUnit).where(OrgUnit.code == code))
    assert found is not None, code
    return found


def _issue(s: Session, code: str, leader: Actor, *, status: str = "in_progress") -> int:
    issue = LedgerIssue(code=code, title="企业用电增容迟迟未落实", unit_id=_unit(s, "gxj").id, source="manual",
                        handler_id=None, responsible_leader_id=leader.user_id, status=status, created_at=clock.now(),
                        closed_at=clock.now() if status == "closed" else None)
    s.add(issue)
    s.commit()
    return issue.id


def _lead(s: Session, code: str, leader: Actor, *, status: str = "contacting") -> int:
    lead = InvestmentLead(code=code, title="智能家电配套", enterprise="海智电器", unit_id=_unit(s, "gxj").id,
                          responsible_leader_id=leader.user_id, status=status, created_at=clock.now())
    s.add(lead)
    s.commit()
    return lead.id


def _project(s: Session, code: str, leader: Actor, *, stage: str = "signed") -> int:
    library = s.scalar(select(ProjectLibrary.id).where(ProjectLibrary.code == "key"))
    assert library is not None
    project = Project(code=code, name="海尔智能工厂", library_id=library, category="key", investment=Decimal("50000"),
                      stage=stage, responsible_leader_id=leader.user_id, responsible_unit_id=_unit(s, "gxj").id,
                      location_unit_id=_unit(s, "gxj").id, created_at=clock.now())
    s.add(project)
    s.commit()
    return project.id


def _leader(s: Session, model: type[Row], row_id: int) -> int | None:
    s.expire_all()
    row = s.get(model, row_id)
    assert row is not None
    return row.responsible_leader_id


def _events(s: Session, stream: str, action: str) -> list[AuditEvent]:
    return list(s.scalars(select(AuditEvent).where(AuditEvent.stream == stream, AuditEvent.action == action)))


def _notes(s: Session, user: Actor) -> list[str]:
    return [str(m.payload.get("title")) for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
            if m.payload.get("user_id") == user.user_id]


def test_a_named_successor_becomes_responsible_leader_of_the_open_items_only(
        session: Session, people: dict[str, Actor]) -> None:
    zhao, sun, qian = people["zhao"], people["sun"], people["qian"]
    issue, closed = _issue(session, "WT-2025-0001", zhao), _issue(session, "WT-2025-0002", zhao, status="closed")
    lead, dropped = _lead(session, "ZS-2025-0001", zhao), _lead(session, "ZS-2025-0002", zhao, status="dropped")
    project, producing = _project(session, "XM-2025-0001", zhao), _project(session, "XM-2025-0002", zhao,
                                                                            stage="producing")
    others = _issue(session, "WT-2025-0003", qian)  # another leader's: untouched
    done = leaving.deactivate_user(session, user_id=zhao.user_id or 0, actor=people["admin"], successor="sun")
    session.commit()
    assert [_leader(session, m, i) for m, i in ((LedgerIssue, issue), (InvestmentLead, lead), (Project, project))] \
        == [sun.user_id] * 3
    assert [_leader(session, m, i) for m, i in ((LedgerIssue, closed), (InvestmentLead, dropped),
                                                (Project, producing))] == [zhao.user_id] * 3  # history
    assert _leader(session, LedgerIssue, others) == qian.user_id
    assert sorted((i.kind, i.id, i.to, i.duty) for i in done.items) == [
        ("investment_lead", lead, "sun", "leader"), ("ledger_issue", issue, "sun", "leader"),
        ("project", project, "sun", "leader")]
    [event] = _events(session, f"ledger_issue:{issue}", "ledger.leader_hand_over")
    assert event.before == {"responsible_leader_id": zhao.user_id} and event.actor_id == people["admin"].user_id
    assert event.after["responsible_leader_id"] == sun.user_id and event.after["to"] == "sun"
    assert event.after["reason"] == "deactivated"
    assert len(_events(session, f"investment_lead:{lead}", "lead.leader_hand_over")) == 1
    assert len(_events(session, f"project:{project}", "project.leader_hand_over")) == 1
    assert not _events(session, f"ledger_issue:{closed}", "ledger.leader_hand_over")
    assert not _events(session, f"project:{producing}", "project.leader_hand_over")
    assert len([t for t in _notes(session, sun) if "3" in t]) == 1  # told once, for the three
    again = leaving.deactivate_user(session, user_id=zhao.user_id or 0, actor=people["admin"], successor="sun")
    session.commit()
    assert again.items == [] and len(_events(session, f"ledger_issue:{issue}", "ledger.leader_hand_over")) == 1


def test_without_a_successor_the_leader_above_on_the_ladder_takes_them(
        session: Session, people: dict[str, Actor]) -> None:
    zhao, qian = people["zhao"], people["qian"]
    issue, lead, project = (_issue(session, "WT-2025-0001", zhao), _lead(session, "ZS-2025-0001", zhao),
                            _project(session, "XM-2025-0001", zhao))
    done = leaving.deactivate_user(session, user_id=zhao.user_id or 0, actor=people["admin"])
    session.commit()
    # 工信局's own responsible leader is the one leaving: its parent 市政府's (qian) is whom the ladder reaches now.
    assert [_leader(session, m, i) for m, i in ((LedgerIssue, issue), (InvestmentLead, lead), (Project, project))] \
        == [qian.user_id] * 3
    assert {(i.id, i.to) for i in done.items} == {(issue, "qian"), (lead, "qian"), (project, "qian")}
    assert _events(session, f"project:{project}", "project.leader_hand_over")[0].after["to"] == "qian"


def test_with_nobody_above_the_leader_is_cleared_and_the_unit_head_told_to_have_one_named(
        session: Session, people: dict[str, Actor]) -> None:
    zhao, qian = people["zhao"], people["qian"]
    issue, project = _issue(session, "WT-2025-0001", zhao), _project(session, "XM-2025-0001", zhao)
    leaving.deactivate_user(session, user_id=qian.user_id or 0, actor=people["admin"])
    session.commit()
    done = leaving.deactivate_user(session, user_id=zhao.user_id or 0, actor=people["admin"])
    session.commit()
    assert _leader(session, LedgerIssue, issue) is None and _leader(session, Project, project) is None
    assert {(i.id, i.to, i.duty) for i in done.items} == {(issue, None, "leader"), (project, None, "leader")}
    [event] = _events(session, f"ledger_issue:{issue}", "ledger.leader_hand_over")
    assert event.after["responsible_leader_id"] is None and event.after["to"] is None
    assert [t for t in _notes(session, people["zhou"]) if "重新指定" in t]


def test_a_successor_who_is_no_city_leader_takes_issues_but_not_a_projects_bao_gua(
        session: Session, people: dict[str, Actor]) -> None:
    """A project's 包挂 is a 市级领导 (the project page refuses anyone else): it goes up the ladder instead."""
    zhao = people["zhao"]
    issue, project = _issue(session, "WT-2025-0001", zhao), _project(session, "XM-2025-0001", zhao)
    leaving.deactivate_user(session, user_id=zhao.user_id or 0, actor=people["admin"], successor="zhang")
    session.commit()
    assert _leader(session, LedgerIssue, issue) == people["zhang"].user_id
    assert _leader(session, Project, project) == people["qian"].user_id


def _unmarked(s: Session, unit_id: int) -> list[AuditEvent]:
    """The unit's head events of a 停用 (with its reason; the fixture's add_user records one naming the head)."""
    return [e for e in _events(s, f"org_unit:{unit_id}", "org.unit.head") if "reason" in (e.after or {})]


def test_the_units_they_head_or_lead_lose_the_mark_as_the_directory_sync_does(
        session: Session, people: dict[str, Actor]) -> None:
    zhou, zhao = people["zhou"], people["zhao"]
    gxj = _unit(session, "gxj").id
    leaving.deactivate_user(session, user_id=zhou.user_id or 0, actor=people["admin"], successor="zhang")
    leaving.deactivate_user(session, user_id=zhao.user_id or 0, actor=people["admin"], successor="sun")
    session.commit()
    session.expire_all()
    unit = session.get(OrgUnit, gxj)
    assert unit is not None and (unit.leader_id, unit.responsible_leader_id) == (None, None)
    assert not session.scalar(select(Membership.is_head).where(Membership.user_id == zhou.user_id,
                                                               Membership.org_unit_id == gxj))
    first, second = sorted(_unmarked(session, gxj), key=lambda e: e.id)
    assert first.before == {"leader_id": zhou.user_id, "responsible_leader_id": zhao.user_id}
    assert (first.after["leader_id"], first.after["responsible_leader_id"]) == (None, zhao.user_id)
    assert (second.after["leader_id"], second.after["responsible_leader_id"]) == (None, None)
    assert first.after["reason"] == "deactivated" and first.actor_id == people["admin"].user_id
    szf = _unit(session, "szf")
    assert szf.responsible_leader_id == people["qian"].user_id  # another leader's unit: untouched


def test_two_admins_deactivating_the_same_leader_hand_over_once(
        factory: sessionmaker[Session], session: Session, people: dict[str, Actor]) -> None:
    zhao = people["zhao"].user_id or 0
    issue, project = _issue(session, "WT-2025-0001", people["zhao"]), _project(session, "XM-2025-0001", people["zhao"])
    gxj = _unit(session, "gxj").id
    session.close()  # SQLite: its reads began a transaction that holds the writer lock (BEGIN IMMEDIATE)

    def work(i: int) -> None:
        with factory() as s:
            leaving.deactivate_user(s, user_id=zhao, actor=actor_for(s, ("admin", "admin2")[i]), successor="sun")
            s.commit()

    assert at_once(2, work) == [None, None]
    with factory() as s:
        assert len(_events(s, f"ledger_issue:{issue}", "ledger.leader_hand_over")) == 1
        assert len(_events(s, f"project:{project}", "project.leader_hand_over")) == 1
        assert len(_unmarked(s, gxj)) == 1
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "org.user.deactivate", AuditEvent.object_id == str(zhao))) == 1
        assert _leader(s, LedgerIssue, issue) == people["sun"].user_id


def test_the_cli_prints_the_leader_items_and_where_they_went(
        db_url: str, factory: sessionmaker[Session], session: Session, people: dict[str, Actor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    session.close()  # the command's own connection writes (SQLite: one writer at a time)
    with factory() as s:
        _project(s, "XM-2025-0001", people["zhao"])
    monkeypatch.setenv("JZFLOW_DATABASE_URL", db_url)
    done = CliRunner().invoke(cli.main, ["deactivate-user", "zhao", "--successor", "sun"])
    assert done.exit_code == 0, done.output
    assert "XM-2025-0001" in done.output and "责任领导" in done.output and "sun" in done.output
    with factory() as s:
        assert not s.scalar(select(User.is_active).where(User.username == "zhao"))
