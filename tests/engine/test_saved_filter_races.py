"""Saved inbox filters in a busy office (PostgreSQL, threads): two saves of one name at once (a double click) keep
one filter and leave the name usable; saves at once never pass the cap; two deletes at once delete once. A name
holding control or text-direction characters is refused naming the field."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import org
from engine.audit.models import AuditEvent
from engine.errors import InvalidInput, NotFound
from engine.org.actors import Actor, actor_for
from engine.tasks import inbox
from engine.tasks.collab_models import SavedFilter
from engine.tasks.filters import MAX_SAVED
from tests.engine.conftest import at_once


@pytest.fixture
def filer(pg_factory: sessionmaker[Session]) -> Actor:
    with pg_factory() as session:
        org.add_unit(session, code="gxj", name="工业和信息化局")
        org.add_user(session, username="zhang", display_name="张伟", unit_codes=["gxj"])
        session.commit()
        return actor_for(session, "zhang")


def _save(factory: sessionmaker[Session], actor: Actor, name: str, q: str) -> None:
    with factory() as session:
        inbox.save_filter(session, actor, name=name, list_name="index", flt=inbox.Filter(q=q))
        session.commit()


def test_a_double_click_on_save_keeps_one_filter_and_the_name_stays_usable(pg_factory: sessionmaker[Session],
                                                                          filer: Actor) -> None:
    for _ in range(3):
        errors = at_once(4, lambda i: _save(pg_factory, filer, "逾期的", f"q{i}"))
        assert errors == [None] * 4
    with pg_factory() as session:
        assert session.scalar(select(func.count()).select_from(SavedFilter).where(SavedFilter.name == "逾期的")) == 1
    _save(pg_factory, filer, "逾期的", "again")  # the same name replaces it, as before


def test_saves_at_once_never_pass_the_cap(pg_factory: sessionmaker[Session], filer: Actor) -> None:
    for i in range(MAX_SAVED - 1):
        _save(pg_factory, filer, f"f{i}", "x")
    errors = at_once(6, lambda i: _save(pg_factory, filer, f"new{i}", "x"))
    assert sum(e is None for e in errors) == 1
    assert all(e is None or isinstance(e, InvalidInput) for e in errors)
    with pg_factory() as session:
        assert session.scalar(select(func.count()).select_from(SavedFilter)) == MAX_SAVED


def _delete(factory: sessionmaker[Session], actor: Actor, filter_id: int) -> None:
    with factory() as session:
        inbox.delete_filter(session, actor, filter_id)
        session.commit()


def test_a_double_click_on_delete_deletes_it_once_and_the_other_finds_it_gone(pg_factory: sessionmaker[Session],
                                                                              filer: Actor) -> None:
    for round_ in range(3):
        _save(pg_factory, filer, f"del{round_}", "x")
        with pg_factory() as session:
            filter_id = session.scalar(select(SavedFilter.id).where(SavedFilter.name == f"del{round_}"))
        errors = at_once(3, lambda _i, fid=int(filter_id or 0): _delete(pg_factory, filer, fid))
        assert all(e is None or isinstance(e, NotFound) for e in errors), errors
        with pg_factory() as session:
            assert session.get(SavedFilter, filter_id) is None
            assert session.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == "filter.delete", AuditEvent.object_id == str(filter_id))) == 1


@pytest.mark.parametrize("name", ["逾期\n的", "逾期\u202e的审批", "a\x1b[31m", "\u200b", "tab\there"])
def test_a_filter_name_with_control_or_direction_characters_is_refused_naming_the_field(
        pg_factory: sessionmaker[Session], filer: Actor, name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _save(pg_factory, filer, name, "x")
    assert caught.value.details["field"] == "name"
    with pg_factory() as session:
        assert session.scalar(select(func.count()).select_from(SavedFilter)) == 0
