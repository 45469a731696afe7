"""停用 hands over the person's open plan items too: an issue's 责任人 (问题台账) and a 招商线索's handler.

The engine calls the hooks the plan registered (`engine.org.leaving.HANDOVERS`), in the deactivation's transaction;
on SQLite and PostgreSQL. A closed (销号) issue or a finished lead keeps its handler; the deadline ladder reminds
the new handler afterwards. Hostile: an item nobody else could take (no unit, no successor), a bad successor given
to the CLI, an unknown person.
"""
from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import cli, clock, org
from engine.audit.models import AuditEvent
from engine.deadlines import escalation, sla
from engine.deadlines.models import EscalationStep
from engine.errors import InvalidInput, NotFound
from engine.org import leaving
from engine.org.actors import Actor, actor_for
from engine.org.models import OrgUnit, User
from plan.leads.models import InvestmentLead
from plan.ledger.models import LedgerIssue

SH = clock.SHANGHAI


@pytest.fixture
def people(session: Session, frozen: Any) -> dict[str, Actor]:
    """工信局 with a head (zhou) and two staff (zhang, li); an administrator."""
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_user(session, username="zhou", display_name="局长周建华", unit_codes=["gxj"], is_head=True)
    org.add_user(session, username="zhang", display_name="张伟", unit_codes=["gxj"])
    org.add_user(session, username="li", display_name="李娜", unit_codes=["gxj"])
    org.add_user(session, username="admin", display_name="管理员", is_admin=True)
    session.commit()
    return {u: actor_for(session, u) for u in ("zhou", "zhang", "li", "admin")}


def _unit(s: Session) -> int:
    found = s.scalar(select(OrgUnit.id).where(OrgUnit.code == "gxj"))
    assert found is not None
    return found


def _issue(s: Session, code: str, handler: Actor, *, status: str = "in_progress", unit: bool = True,
           due: date = date(2025, 9, 26)) -> int:
    issue = LedgerIssue(code=code, title="企业用电增容迟迟未落实", unit_id=_unit(s) if unit else None, source="manual",
                        handler_id=handler.user_id, status=status, due_at=sla.deadline_of(due),
                        created_at=clock.now(), closed_at=clock.now() if status == "closed" else None)
    s.add(issue)
    s.commit()
    return issue.id


def _lead(s: Session, code: str, handler: Actor, *, status: str = "contacting") -> int:
    lead = InvestmentLead(code=code, title="智能家电配套", enterprise="海智电器", unit_id=_unit(s),
                          handler_id=handler.user_id, status=status, due_at=sla.deadline_of(date(2025, 9, 26)),
                          created_at=clock.now())
    s.add(lead)
    s.commit()
    return lead.id


def _handler(s: Session, model: type[LedgerIssue | InvestmentLead], row_id: int) -> int | None:
    s.expire_all()
    row = s.get(model, row_id)
    assert row is not None
    return row.handler_id


def _events(s: Session, stream: str, action: str) -> list[AuditEvent]:
    return list(s.scalars(select(AuditEvent).where(AuditEvent.stream == stream, AuditEvent.action == action)))


def _active(s: Session, username: str) -> bool:
    s.expire_all()
    return bool(s.scalar(select(User.is_active).where(User.username == username)))


def test_a_named_successor_takes_the_open_issue_and_lead_not_the_closed_one(
        session: Session, people: dict[str, Actor]) -> None:
    zhang, li = people["zhang"], people["li"]
    open_issue, closed = _issue(session, "WT-2025-0001", zhang), _issue(session, "WT-2025-0002", zhang, status="closed")
    lead, dropped = _lead(session, "ZS-2025-0001", zhang), _lead(session, "ZS-2025-0002", zhang, status="dropped")
    done = leaving.deactivate_user(session, user_id=zhang.user_id or 0, actor=people["admin"], successor="li")
    session.commit()
    assert _handler(session, LedgerIssue, open_issue) == li.user_id
    assert _handler(session, InvestmentLead, lead) == li.user_id
    assert _handler(session, LedgerIssue, closed) == zhang.user_id  # 销号: history, not work
    assert _handler(session, InvestmentLead, dropped) == zhang.user_id
    assert sorted((i.kind, i.id, i.to) for i in done.items) == [
        ("investment_lead", lead, "li"), ("ledger_issue", open_issue, "li")]
    assert not done.items_stuck
    [event] = _events(session, f"ledger_issue:{open_issue}", "ledger.hand_over")
    assert event.before == {"handler_id": zhang.user_id} and event.after["handler_id"] == li.user_id
    assert event.after["to"] == "li" and event.actor_id == people["admin"].user_id
    assert len(_events(session, f"investment_lead:{lead}", "lead.hand_over")) == 1
    assert not _events(session, f"ledger_issue:{closed}", "ledger.hand_over")
    again = leaving.deactivate_user(session, user_id=zhang.user_id or 0, actor=people["admin"], successor="li")
    session.commit()
    assert again.items == [] and len(_events(session, f"ledger_issue:{open_issue}", "ledger.hand_over")) == 1


def test_without_a_successor_the_unit_head_takes_it_and_a_leaving_head_gives_it_back_to_the_unit(
        session: Session, people: dict[str, Actor]) -> None:
    mine, heads = _issue(session, "WT-2025-0001", people["zhang"]), _issue(session, "WT-2025-0002", people["zhou"])
    done = leaving.deactivate_user(session, user_id=people["zhang"].user_id or 0, actor=people["admin"])
    session.commit()
    assert _handler(session, LedgerIssue, mine) == people["zhou"].user_id
    assert [(i.id, i.to) for i in done.items] == [(mine, "zhou")]
    head = leaving.deactivate_user(session, user_id=people["zhou"].user_id or 0, actor=people["admin"])
    session.commit()
    # The head left too: both issues go back to 工信局 (no handler: the unit's members are reminded, as after 派单).
    assert _handler(session, LedgerIssue, mine) is None and _handler(session, LedgerIssue, heads) is None
    assert sorted((i.id, i.to) for i in head.items) == [(mine, None), (heads, None)]
    assert len(_events(session, f"ledger_issue:{mine}", "ledger.hand_over")) == 2


def test_an_issue_nobody_else_could_take_is_refused_on_the_admin_path_and_reported_on_the_directory_path(
        session: Session, people: dict[str, Actor]) -> None:
    stray = _issue(session, "WT-2025-0001", people["zhang"], unit=False)
    with pytest.raises(InvalidInput) as refused:
        leaving.deactivate_user(session, user_id=people["zhang"].user_id or 0, actor=people["admin"])
    assert refused.value.details.get("field") == "successor" and "WT-2025-0001" in refused.value.message
    session.rollback()
    assert _active(session, "zhang") and _handler(session, LedgerIssue, stray) == people["zhang"].user_id
    left = leaving.deactivate_user(session, user_id=people["zhang"].user_id or 0, refuse_stuck=False,
                                   reason="directory: left")
    session.commit()
    assert not _active(session, "zhang") and _handler(session, LedgerIssue, stray) == people["zhang"].user_id
    assert [(i.id, i.label.split()[0]) for i in left.items_stuck] == [(stray, "WT-2025-0001")] and not left.items
    named = leaving.deactivate_user(session, user_id=people["zhang"].user_id or 0, actor=people["admin"],
                                    successor="li")
    session.commit()
    assert _handler(session, LedgerIssue, stray) == people["li"].user_id and len(named.items) == 1


def test_the_ladder_reminds_the_new_handler_after_the_deactivation(
        session: Session, people: dict[str, Actor], frozen: Any) -> None:
    issue = _issue(session, "WT-2025-0001", people["zhang"], due=date(2025, 9, 26))
    leaving.deactivate_user(session, user_id=people["zhang"].user_id or 0, actor=people["admin"], successor="li")
    session.commit()
    frozen.freeze(clock.as_utc(sla.deadline_of(date(2025, 9, 27))))
    escalation.sweep(session, now=clock.now())
    session.commit()
    reminded = {s.step: s.recipients for s in session.scalars(
        select(EscalationStep).where(EscalationStep.object_type == "issue", EscalationStep.object_id == issue))}
    assert reminded.get("handler") == [people["li"].user_id]


def _cli(db_url: str, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("JZFLOW_DATABASE_URL", db_url)
    return CliRunner().invoke(cli.main, ["deactivate-user", *args])


def test_the_cli_hands_over_and_prints_it_and_a_bad_successor_changes_nothing(
        db_url: str, factory: sessionmaker[Session], session: Session, people: dict[str, Actor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    session.close()  # the command's own connection writes (SQLite: one writer at a time)
    with factory() as s:
        issue = _issue(s, "WT-2025-0001", people["zhang"])
    for bad in ("nobody", "zhang", "ZHANG", "a\x00b", ""):
        result = _cli(db_url, monkeypatch, "zhang", "--successor", bad) if bad else _cli(db_url, monkeypatch, "ghost")
        assert result.exit_code != 0 and ("successor" in result.output or "user" in result.output), (bad, result.output)
    with factory() as s:
        assert _active(s, "zhang") and _handler(s, LedgerIssue, issue) == people["zhang"].user_id
        assert not list(s.scalars(select(AuditEvent).where(AuditEvent.action.like("%hand_over"))))
    done = _cli(db_url, monkeypatch, "zhang", "--successor", "li")
    assert done.exit_code == 0, done.output
    assert "zhang" in done.output and "WT-2025-0001" in done.output and "li" in done.output
    with factory() as s:
        assert not _active(s, "zhang") and _handler(s, LedgerIssue, issue) == people["li"].user_id


def test_an_unknown_person_is_refused(session: Session, people: dict[str, Actor]) -> None:
    with pytest.raises(NotFound):
        leaving.deactivate_user(session, user_id=999999, actor=people["admin"])


def test_an_urge_of_an_item_left_with_someone_deactivated_reaches_the_rung_above_not_them(
        session: Session, people: dict[str, Actor]) -> None:
    """An item still held by a deactivated person (left by an earlier 停用, or the directory's with no one to take it):
    催办 tells the unit head, as the ladder does, never the person who cannot log in."""
    from engine.notify.models import OutboxMessage
    from plan.supervision import actions
    issue = _issue(session, "WT-2025-0001", people["zhang"])
    session.execute(User.__table__.update().where(User.id == people["zhang"].user_id).values(is_active=False))
    session.commit()
    told = actions.urge(session, actor=people["admin"], object_type="issue", object_id=issue, message="请尽快办理",
                        seen=None)
    session.commit()
    urged = [m.payload.get("user_id") for m in session.scalars(select(OutboxMessage).where(
        OutboxMessage.kind == "in_app")) if "督办" in str(m.payload.get("title"))]
    assert (told, urged) == (1, [people["zhou"].user_id])
