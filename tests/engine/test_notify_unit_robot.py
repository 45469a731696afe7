"""A user without a webhook of their own hears through the group robot of the unit the work belongs to, when they
are a member of it; about another unit's work (or work of no unit) they hear in-app and by e-mail only: their first
unit's robot is no place to post another unit's work. On SQLite and PostgreSQL."""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import notify, org
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor, actor_for
from engine.org.models import OrgUnit


@pytest.fixture
def units(session: Session, frozen: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    monkeypatch.setenv("JZFLOW_WEBHOOK_ALLOW_HOSTS", "hooks.example.com")
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_unit(session, code="fgj", name="发展和改革局")
    org.add_unit(session, code="zjj", name="住房和城乡建设局")
    ids = {code: int(session.scalar(select(OrgUnit.id).where(OrgUnit.code == code)) or 0) for code in ("gxj", "fgj", "zjj")}
    notify.set_webhook(session, org_unit_id=ids["gxj"], url="https://hooks.example.com/gxj")
    notify.set_webhook(session, org_unit_id=ids["fgj"], url="https://hooks.example.com/fgj")
    notify.set_webhook(session, org_unit_id=ids["zjj"], url="https://hooks.example.com/zjj")
    session.commit()
    return ids


@pytest.fixture
def li(session: Session, units: dict[str, int]) -> Actor:
    """李娜: a member of 工信局 first, then of 发改局; wants every notice by webhook, and has none of her own."""
    org.add_user(session, username="li", display_name="李娜", unit_codes=["gxj", "fgj"])
    session.flush()
    user = actor_for(session, "li")
    notify.set_preference(session, user_id=int(user.user_id or 0), channels=["in_app", "webhook"])
    session.commit()
    return user


def _sent(session: Session, li: Actor, unit_id: int | None, key: str) -> dict[str, Any]:
    notify.send(session, notify.Note(user_id=int(li.user_id or 0), kind="urge", title="催办: 用电增容", key=key,
                                     unit_id=unit_id))
    rows = session.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.startswith(f"{key}:"))).all()
    return {r.kind: r.payload for r in rows}


def test_work_of_her_second_unit_goes_to_that_units_robot(session: Session, units: dict[str, int], li: Actor) -> None:
    sent = _sent(session, li, units["fgj"], "urge:fgj")
    assert sent["webhook"]["url"] == "https://hooks.example.com/fgj"  # was her first unit's: 工信局


def test_work_of_her_first_unit_goes_to_its_robot(session: Session, units: dict[str, int], li: Actor) -> None:
    assert _sent(session, li, units["gxj"], "urge:gxj")["webhook"]["url"] == "https://hooks.example.com/gxj"


def test_work_of_a_unit_she_is_not_in_reaches_no_robot(session: Session, units: dict[str, int], li: Actor) -> None:
    sent = _sent(session, li, units["zjj"], "urge:zjj")
    assert set(sent) == {"in_app"}  # neither 住建局's robot (not her unit) nor 工信局's (not its work)


def test_work_of_no_unit_reaches_no_robot(session: Session, units: dict[str, int], li: Actor) -> None:
    assert set(_sent(session, li, None, "urge:none")) == {"in_app"}


def test_her_own_webhook_still_wins(session: Session, units: dict[str, int], li: Actor) -> None:
    notify.set_webhook(session, user_id=int(li.user_id or 0), url="https://hooks.example.com/li", flavor="json")
    assert _sent(session, li, units["zjj"], "urge:own")["webhook"]["url"] == "https://hooks.example.com/li"
