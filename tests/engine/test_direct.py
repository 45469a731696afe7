"""Statements on the session's DBAPI cursor (engine/direct.py) behave as through SQLAlchemy's execution.

What a caller or an operator relies on stays: the session's transaction, SQLAlchemy's exception types (a lost
connection invalidated, not handed out again), statement listeners, and a Core statement's parameters and result
types as SQLAlchemy gives them.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, event, insert, literal, select, text
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from engine import direct
from engine.org.models import OrgUnit
from engine.runtime.models import ProcessInstance
from tests.conftest import PG_ADMIN_URL

pytestmark = pytest.mark.usefixtures("factory")


def _unit(session: Session, code: str) -> int:
    session.execute(insert(OrgUnit).values(code=code, name=code))
    return int(session.scalar(select(OrgUnit.id).where(OrgUnit.code == code)) or 0)


def _is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def test_rows_run_in_the_sessions_transaction(factory: sessionmaker[Session], db_engine: Engine) -> None:
    if not _is_postgres(db_engine):
        pytest.skip("the driver's parameter style here is PostgreSQL's (the save's statement runs only there)")
    with factory() as session:
        unit_id = _unit(session, "DIRECT-1")
        found = direct.rows(session, "SELECT id, code FROM org_unit WHERE id = %(id)s", {"id": unit_id})
        assert found == [(unit_id, "DIRECT-1")]  # sees the transaction's own uncommitted row
        assert direct.rows(session, "UPDATE org_unit SET name = %(n)s WHERE id = %(id)s",
                           {"n": "改名", "id": unit_id}) == []  # no result set: no rows, no error
        session.rollback()
    with factory() as session:
        assert session.scalar(select(OrgUnit.id).where(OrgUnit.code == "DIRECT-1")) is None  # rolled back with it


def test_errors_come_out_as_sqlalchemys_and_the_session_rolls_back(factory: sessionmaker[Session],
                                                                  db_engine: Engine) -> None:
    if not _is_postgres(db_engine):
        pytest.skip("PostgreSQL's parameter style")
    with factory() as session:
        unit_id = _unit(session, "DIRECT-2")
        session.commit()
    with factory() as session:
        with pytest.raises(IntegrityError) as caught:
            direct.rows(session, "INSERT INTO org_unit (code, name) VALUES (%(c)s, %(c)s)", {"c": "DIRECT-2"})
        assert "org_unit" in str(caught.value) and caught.value.orig is not None  # the driver's error inside
        session.rollback()
        with pytest.raises(ProgrammingError):
            direct.rows(session, "SELECT no_such_column FROM org_unit", {})
        session.rollback()
        assert session.scalar(select(OrgUnit.code).where(OrgUnit.id == unit_id)) == "DIRECT-2"  # usable again


def test_a_lost_connection_is_invalidated_not_handed_out_again(factory: sessionmaker[Session],
                                                               db_engine: Engine) -> None:
    if not _is_postgres(db_engine):
        pytest.skip("a server to lose the connection to")
    admin = _admin()
    with factory() as session:
        pid = direct.rows(session, "SELECT pg_backend_pid() WHERE %(x)s", {"x": True})[0][0]
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(OperationalError) as caught:
            for _ in range(50):  # the backend is gone once its socket says so
                direct.rows(session, "SELECT 1 WHERE %(x)s", {"x": True})
        assert caught.value.connection_invalidated
        session.rollback()
        again = direct.rows(session, "SELECT pg_backend_pid() WHERE %(x)s", {"x": True})[0][0]
    admin.dispose()
    assert again != pid  # a new connection, not the dead one


def _admin() -> Engine:
    from sqlalchemy import create_engine
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def test_statement_listeners_see_the_statement(factory: sessionmaker[Session], db_engine: Engine) -> None:
    if not _is_postgres(db_engine):
        pytest.skip("PostgreSQL's parameter style")
    seen: list[tuple[str, str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append(("before", statement, params))

    def after(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append(("after", statement, params))

    event.listen(db_engine, "before_cursor_execute", before)
    event.listen(db_engine, "after_cursor_execute", after)
    try:
        with factory() as session:
            direct.rows(session, "SELECT %(v)s::int", {"v": 7})
            session.rollback()
    finally:
        event.remove(db_engine, "before_cursor_execute", before)
        event.remove(db_engine, "after_cursor_execute", after)
    assert [(k, s, p) for k, s, p in seen if "%(v)s" in s] == [("before", "SELECT %(v)s::int", {"v": 7}),
                                                             ("after", "SELECT %(v)s::int", {"v": 7})]


_PREPARED = direct.Prepared(
    select(ProcessInstance.id, ProcessInstance.started_at, literal("实例:").label("prefix"))
    .where(ProcessInstance.id == bindparam("instance_id")))
_EMPTY = direct.Prepared(select(OrgUnit.id).where(OrgUnit.code == bindparam("code")))


def test_a_prepared_statement_gives_what_sqlalchemy_gives(factory: sessionmaker[Session], db_engine: Engine) -> None:
    from engine.runtime import instances
    from tests.engine.conftest import staff

    people = staff(factory, 1)
    with factory() as session:
        instance_id = instances.start(session, process_key="siblings", actor=people[0]).id
        session.commit()
    with factory() as session:
        ours = _PREPARED.rows(session, {"instance_id": instance_id})
        theirs = [tuple(r) for r in session.execute(_PREPARED.statement, {"instance_id": instance_id})]
        assert ours == theirs
        (row,) = ours
        assert row[0] == instance_id and row[2] == "实例:"  # a literal's value as SQLAlchemy binds it
        assert isinstance(row[1], datetime) and row[1].tzinfo is not None and row[1].utcoffset() == UTC.utcoffset(None)
        assert _EMPTY.rows(session, {"code": "没有这个单位"}) == []
        session.rollback()


def test_a_prepared_statement_refuses_what_the_database_cannot_hold(factory: sessionmaker[Session],
                                                                    db_engine: Engine) -> None:
    if not _is_postgres(db_engine):
        pytest.skip("PostgreSQL refuses NUL in text")
    with factory() as session, pytest.raises(DataError) as caught:  # as SQLAlchemy's own execution raises it
        _EMPTY.rows(session, {"code": "NUL\x00"})
    assert "NUL" in str(caught.value)


def test_named_rows_read_by_name_as_sqlalchemys_rows(factory: sessionmaker[Session]) -> None:
    named = direct.Prepared(select(OrgUnit.id, OrgUnit.code.label("unit_code")).where(OrgUnit.code == bindparam("c")),
                            named=True)
    with factory() as session:
        unit_id = _unit(session, "DIRECT-3")
        (row,) = named.rows(session, {"c": "DIRECT-3"})
        (theirs,) = session.execute(named.statement, {"c": "DIRECT-3"}).all()
        assert (row.id, row.unit_code) == (theirs.id, theirs.unit_code) == (unit_id, "DIRECT-3")
        assert tuple(row) == tuple(theirs)
        session.rollback()
    both = direct.Prepared(select(OrgUnit.id, ProcessInstance.id).where(OrgUnit.id == bindparam("u"))
                           .join(ProcessInstance, literal(True)), named=True)
    assert both._row((1, 2)) == (1, 2) and both._row((1, 2))._asdict() == {"id": 1, "id_1": 2}  # type: ignore[attr-defined]
