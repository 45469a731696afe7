"""PostgreSQL connections: a transaction that wrote nothing ends without forgetting the prepared statements.

psycopg forgets every prepared statement of a connection on ROLLBACK (and deallocates them on the server).
A request that only reads ends its transaction that way, so in an office's mixed traffic (pages between
completions) the hot statements were planned again and again: a completion after a page view took a third
longer (bench/after_read.py).
"""
from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from psycopg import IsolationLevel, pq
from psycopg import errors as pg_errors
from sqlalchemy import Engine, create_engine, event, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from engine import pgconn
from engine.db import make_engine, make_sessionmaker
from engine.org.models import OrgUnit
from tests.conftest import PG_ADMIN_URL, PgDatabases

HOT = "SELECT count(*) FROM org_unit WHERE code = %(code)s"


@pytest.fixture
def pg_url(pg_databases: PgDatabases) -> Iterator[str]:
    url = pg_databases.fresh()
    yield url
    pg_databases.drop(url)


@pytest.fixture
def one_connection(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)  # every session on the same connection
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(one_connection: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(one_connection)


def _prepared(session: Session) -> list[str]:
    return list(session.connection().exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars())


def _warm(sessions: sessionmaker[Session]) -> None:
    """Run HOT often enough (psycopg prepares from the 6th run) in committed transactions."""
    for _ in range(6):
        with sessions() as s:
            s.connection().exec_driver_sql(HOT, {"code": "x"}).scalar()
            s.commit()
    with sessions() as s:
        assert any("FROM org_unit" in p for p in _prepared(s)), "the statement was never prepared"
        s.commit()


def test_read_only_transaction_keeps_the_prepared_statements(sessions: sessionmaker[Session]) -> None:
    _warm(sessions)
    with sessions() as s:  # a page view: reads, then closes without a commit
        s.scalars(select(OrgUnit.id)).all()
    with sessions() as s:
        assert any("FROM org_unit" in p for p in _prepared(s))
        s.commit()


def test_explicit_rollback_of_a_read_keeps_them(sessions: sessionmaker[Session]) -> None:
    _warm(sessions)
    with sessions() as s:
        s.scalars(select(OrgUnit.id)).all()
        s.rollback()
        assert any("FROM org_unit" in p for p in _prepared(s))


def _orm_insert(s: Session) -> None:
    s.add(OrgUnit(code="written", name="写入"))
    s.flush()


def _core_update(s: Session) -> None:
    s.execute(update(OrgUnit).values(name="改名"))


def _core_insert(s: Session) -> None:
    s.execute(insert(OrgUnit).values(code="written", name="写入"))


def _write_after_reads(s: Session) -> None:
    s.scalars(select(OrgUnit.id)).all()
    s.execute(text("SELECT 1")).scalar()
    _orm_insert(s)
    s.scalars(select(OrgUnit.id)).all()


def _writable_cte(s: Session) -> None:
    s.execute(text("WITH w AS (INSERT INTO org_unit (code, name, kind) VALUES ('written', '写入', 'department') "
                   "RETURNING id) SELECT id FROM w")).scalar()


def _lowercase_and_comment(s: Session) -> None:
    s.execute(text("/* select */ insert into org_unit (code, name, kind) values ('written', '写入', 'department')"))


def _driver_cursor(s: Session) -> None:
    raw = s.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.execute("INSERT INTO org_unit (code, name, kind) VALUES ('written', '写入', 'department')")


def _driver_executemany(s: Session) -> None:
    raw = s.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.executemany("INSERT INTO org_unit (code, name, kind) VALUES (%s, %s, 'department')", [("written", "写入")])


def _other_cursor_class(s: Session) -> None:
    import psycopg

    raw = s.connection().connection.driver_connection
    assert raw is not None
    s.scalars(select(OrgUnit.id)).all()  # began as a read
    raw.cursor_factory = psycopg.Cursor  # whoever swaps the cursor class: its writes are not seen, so no COMMIT
    with raw.cursor() as cur:
        cur.execute("INSERT INTO org_unit (code, name, kind) VALUES ('written', '写入', 'department')")


def _select_into(s: Session) -> None:
    s.execute(text("SELECT 1 AS one INTO written_table"))


WRITES: dict[str, Callable[[Session], None]] = {
    "orm insert": _orm_insert, "core update": _core_update, "core insert": _core_insert,
    "write after reads": _write_after_reads, "writable CTE behind SELECT": _writable_cte,
    "lower case behind a comment": _lowercase_and_comment, "driver cursor": _driver_cursor,
    "driver executemany": _driver_executemany, "SELECT INTO": _select_into,
    "another cursor class": _other_cursor_class,
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_rollback_still_undoes_every_write(sessions: sessionmaker[Session], write: Callable[[Session], None]) -> None:
    with sessions() as s:
        s.add(OrgUnit(code="kept", name="原名"))
        s.commit()
    _warm(sessions)
    with sessions() as s:
        write(s)
        s.rollback()
    with sessions() as s:
        assert s.scalars(select(OrgUnit.code)).all() == ["kept"]
        assert s.scalar(select(OrgUnit.name)) == "原名"
        assert s.connection().exec_driver_sql("SELECT to_regclass('written_table')").scalar() is None
    with sessions() as s:  # closing without a commit undoes it too
        write(s)
    with sessions() as s:
        assert s.scalars(select(OrgUnit.code)).all() == ["kept"]


def test_a_failed_statement_is_rolled_back_and_the_connection_serves_on(sessions: sessionmaker[Session]) -> None:
    _warm(sessions)
    with sessions() as s:
        s.scalars(select(OrgUnit.id)).all()
        with pytest.raises(DBAPIError):
            s.execute(text("SELECT 1/0"))
        s.rollback()
        assert s.execute(text("SELECT 2")).scalar() == 2


def test_a_read_only_end_refused_at_commit_is_still_a_rollback(sessions: sessionmaker[Session],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    def refuse(self: psycopg.Connection[object]) -> None:
        self.execute("SELECT 1/0")  # fails inside the transaction, as a refused COMMIT ends it

    with sessions() as s:
        s.scalars(select(OrgUnit.id)).all()
        monkeypatch.setattr(psycopg.Connection, "commit", refuse)
        s.rollback()  # no error: the caller asked for a rollback and got one
        monkeypatch.undo()
        assert s.execute(text("SELECT 2")).scalar() == 2


def test_read_only_end_releases_row_locks(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        factory = make_sessionmaker(engine)
        with factory() as s:
            s.add(OrgUnit(code="locked", name="锁"))
            s.commit()
        first = factory()
        first.execute(select(OrgUnit).where(OrgUnit.code == "locked").with_for_update()).scalar_one()
        first.close()  # ends the transaction: the lock goes with it
        with factory() as second:
            second.execute(text("SET LOCAL lock_timeout = '2s'"))
            assert second.execute(select(OrgUnit.id).where(OrgUnit.code == "locked").with_for_update()).scalar()
            second.commit()
    finally:
        engine.dispose()


# --- checkout: a ping only where the socket says the server may have gone ------------------------------------

def _pid(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        pid = s.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        s.commit()
    assert isinstance(pid, int)
    return pid


def _count_pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_conn: object) -> bool:
        pings.append(1)
        return ping(dbapi_conn)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return pings


def _terminate(pid: int) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            assert c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    finally:
        admin.dispose()


def _until_hung_up(raw: pgconn.Connection) -> None:
    deadline = time.monotonic() + 5
    while not pgconn.hung_up(raw) and time.monotonic() < deadline:  # the server's goodbye is on its way
        time.sleep(0.01)


def test_a_healthy_idle_connection_is_taken_without_a_round_trip(one_connection: Engine,
                                                                  sessions: sessionmaker[Session],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pings = _count_pings(one_connection, monkeypatch)
    pids = {_pid(sessions) for _ in range(5)}
    assert len(pids) == 1 and pings == []


def test_a_connection_whose_backend_was_ended_is_replaced_at_checkout(one_connection: Engine,
                                                                       sessions: sessionmaker[Session],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pid = _pid(sessions)
    _terminate(pid)
    _until_hung_up(one_connection.pool._pool.queue[0].dbapi_connection)  # type: ignore[attr-defined]  # the idle one
    pings = _count_pings(one_connection, monkeypatch)
    with sessions() as s:  # no error reaches the caller: the pool found out and connected again
        assert s.execute(select(OrgUnit.id)).all() is not None
        new_pid = s.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
    assert new_pid != pid and pings == [1]


def test_a_connection_made_at_checkout_is_trusted_as_the_pre_ping_trusts_it(one_connection: Engine,
                                                                            sessions: sessionmaker[Session]) -> None:
    """Two kills in a row (the fault suite's killer): the pooled connection, then the one made to replace it.

    SQLAlchemy tries twice at a checkout, then gives up with "This connection is closed" before the request has
    run anything: a 500 where a lost connection is a retry. A connection just made is taken as it is (SQLAlchemy's
    own pre-ping does the same); a statement on a dead one is a lost connection, which the caller retries.
    """
    _terminate(_pid(sessions))
    _until_hung_up(one_connection.pool._pool.queue[0].dbapi_connection)  # type: ignore[attr-defined]

    killed: list[int] = []

    def kill_the_first_replacement(dbapi_conn: pgconn.Connection, _record: object) -> None:
        if killed:
            return
        killed.append(dbapi_conn.info.backend_pid)
        _terminate(dbapi_conn.info.backend_pid)
        _until_hung_up(dbapi_conn)

    event.listen(one_connection, "connect", kill_the_first_replacement)
    with sessions() as s, pytest.raises(DBAPIError) as lost:  # not InvalidRequestError at the checkout
        s.execute(select(OrgUnit.id)).all()
    assert lost.value.connection_invalidated
    with sessions() as s:  # the next one connects afresh and serves
        assert s.execute(select(OrgUnit.id)).all() is not None
    event.remove(one_connection, "connect", kill_the_first_replacement)
    assert len(killed) == 1


def test_a_connection_not_idle_is_asked_before_use(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        raw = s.connection().connection.driver_connection
        assert isinstance(raw, pgconn.Connection)
        s.execute(select(OrgUnit.id)).all()
        assert pgconn.hung_up(raw)  # inside a transaction: never handed out as it is without a ping
        s.commit()
        assert not pgconn.hung_up(raw)


# --- cursor.description, built once per statement and result shape ----------------------------------------------

def _columns(engine: Engine, query: str, params: dict[str, object] | None = None) -> list[pgconn.psycopg.Column]:
    with engine.connect() as conn:
        cursor = conn.exec_driver_sql(query, params or {}).cursor
        assert cursor is not None and cursor.description is not None
        columns = list(cursor.description)
        conn.rollback()
    return columns


def _description(engine: Engine, query: str, params: dict[str, object] | None = None) -> list[tuple[object, ...]]:
    return [(c.name, c.type_code) for c in _columns(engine, query, params)]


def test_a_statement_run_again_is_described_without_building_its_columns_again(
        one_connection: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    query = "SELECT id, code, name FROM org_unit WHERE code = %(code)s"
    first = _description(one_connection, query, {"code": "x"})
    for _ in range(8):  # and once psycopg runs it as a prepared statement (from its sixth run), as hot ones are
        assert _description(one_connection, query, {"code": "x"}) == first
    built: list[int] = []
    column = pgconn.psycopg.Column

    def counting(cursor: object, index: int) -> object:
        built.append(index)
        return column(cursor, index)  # type: ignore[arg-type]

    monkeypatch.setattr("psycopg._cursor_base.Column", counting)
    assert _description(one_connection, query, {"code": "y"}) == first
    assert built == []
    assert [name for name, _ in first] == ["id", "code", "name"]


def test_the_same_text_with_other_columns_or_types_is_described_as_it_now_is(one_connection: Engine) -> None:
    """A renamed column or a changed type (a migration) under the same statement text: never an old description."""
    with one_connection.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE described (a INTEGER, b TEXT)")
    query = "SELECT * FROM described"
    assert [n for n, _ in _description(one_connection, query)] == ["a", "b"]
    with one_connection.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE described RENAME COLUMN b TO c")
    assert [n for n, _ in _description(one_connection, query)] == ["a", "c"]
    before = _description(one_connection, query)
    with one_connection.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE described ALTER COLUMN a TYPE BIGINT")
    after = _description(one_connection, query)
    assert after[0][0] == "a" and after[0][1] != before[0][1]
    with one_connection.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE described ADD COLUMN d VARCHAR(10)")
    query = "SELECT d FROM described"
    assert _columns(one_connection, query)[0].display_size == 10
    with one_connection.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE described ALTER COLUMN d TYPE VARCHAR(20)")  # the same type, longer
    assert _columns(one_connection, query)[0].display_size == 20
    assert _description(one_connection, "SELECT 1 AS one, 'x' AS two") == [("one", 23), ("two", 25)]
    assert _description(one_connection, "SELECT 2 AS uno, 'y' AS dos") == [("uno", 23), ("dos", 25)]



# --- BEGIN goes out with the transaction's first statement, in one round trip ------------------------------------

@contextmanager
def _traced(raw: pgconn.Connection) -> Iterator[list[str]]:
    """The block's protocol messages, one a line: "F Parse ..." sent, "B CommandComplete ..." received."""
    lines: list[str] = []
    with tempfile.TemporaryFile() as trace:
        raw.pgconn.trace(trace.fileno())
        raw.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield lines
        finally:
            raw.pgconn.untrace()
        trace.seek(0)
        for line in trace.read().decode().splitlines():
            direction, _length, message, *rest = line.split("\t")
            lines.append(" ".join([direction, message, *(part.strip() for part in rest)]).strip())


def _round_trips(lines: list[str]) -> int:
    """How many times the client sent something and then waited for the answer."""
    return sum(1 for before, after in itertools.pairwise(["B", *lines]) if before[0] == "B" and after[0] == "F")


@pytest.fixture
def raw(one_connection: Engine) -> Iterator[pgconn.Connection]:
    with one_connection.connect() as conn:
        driver = conn.connection.driver_connection
        assert isinstance(driver, pgconn.Connection)
        conn.rollback()
        yield driver
        driver.rollback()


@pytest.mark.parametrize("runs", [1, 6, 7], ids=["unprepared", "prepared-now", "prepared"])  # psycopg prepares at 6
def test_a_transaction_s_first_statement_takes_its_begin_along(raw: pgconn.Connection, runs: int) -> None:
    cur = raw.cursor()
    for n in range(1, runs + 1):
        with _traced(raw) as lines:
            cur.execute("SELECT %(n)s::int + 1 AS next", {"n": n})
            assert cur.fetchall() == [(n + 1,)]
        assert raw.pgconn.transaction_status == pq.TransactionStatus.INTRANS
        raw.commit()
    assert _round_trips(lines) == 1, lines
    assert lines[0] == 'F Parse "" "BEGIN" 0', lines
    completed = [line for line in lines if line.startswith("B CommandComplete")]
    assert completed == ['B CommandComplete "BEGIN"', 'B CommandComplete "SELECT 1"'], lines
    assert cur.description is not None and cur.description[0].name == "next" and cur.rowcount == 1


def test_statements_after_the_first_and_commit_are_as_before(raw: pgconn.Connection) -> None:
    cur = raw.cursor()
    cur.execute("SELECT %(n)s::int", {"n": 1})
    with _traced(raw) as lines:
        cur.execute("SELECT %(n)s::int", {"n": 2})
        raw.commit()
    assert not any("BEGIN" in line for line in lines) and _round_trips(lines) == 2


def test_statements_without_parameters_may_be_several_and_get_a_begin_of_their_own(raw: pgconn.Connection) -> None:
    cur = raw.cursor()
    with _traced(raw) as lines:
        cur.execute("CREATE TEMP TABLE several (n int); INSERT INTO several VALUES (1), (2)")
    assert raw.pgconn.transaction_status == pq.TransactionStatus.INTRANS
    assert _round_trips(lines) == 2 and lines[0] == 'F Query "BEGIN"', lines
    raw.rollback()  # undoes both: they ran inside the transaction
    cur.execute("SELECT count(*) FROM pg_class WHERE relname = %(name)s", {"name": "several"})
    assert cur.fetchone() == (0,)


def test_an_autocommit_connection_sends_no_begin(pg_url: str) -> None:
    with pgconn.Connection.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:
        with _traced(conn) as lines:
            conn.execute("SELECT %(n)s::int", {"n": 1})
        assert not any("BEGIN" in line for line in lines)
        assert conn.pgconn.transaction_status == pq.TransactionStatus.IDLE


def test_the_isolation_level_asked_for_is_the_one_begun(raw: pgconn.Connection) -> None:
    raw.isolation_level = IsolationLevel.SERIALIZABLE
    try:
        row = raw.execute("SELECT current_setting(%(name)s)", {"name": "transaction_isolation"}).fetchone()
        assert row == ("serializable",)
        raw.rollback()
    finally:
        raw.isolation_level = None


def test_a_failing_first_statement_fails_its_transaction_and_the_connection_serves_on(raw: pgconn.Connection) -> None:
    with pytest.raises(pg_errors.DivisionByZero):
        raw.execute("SELECT %(n)s::int / 0", {"n": 1})
    assert raw.pgconn.transaction_status == pq.TransactionStatus.INERROR
    with pytest.raises(pg_errors.InFailedSqlTransaction):  # the transaction had begun: it stays failed until ended
        raw.execute("SELECT 1")
    raw.rollback()
    with pytest.raises(pg_errors.SyntaxError):
        raw.execute("SELEC %(n)s", {"n": 1})
    raw.rollback()
    assert raw.execute("SELECT %(n)s::int", {"n": 5}).fetchone() == (5,)
    assert raw.pgconn.pipeline_status == pq.PipelineStatus.OFF
    raw.commit()


def test_a_statement_whose_preparation_fails_is_reported_and_nothing_is_left_half_prepared(
        raw: pgconn.Connection) -> None:
    raw.execute("CREATE TABLE soon_gone (n int)")
    raw.commit()
    query = "SELECT count(*) FROM soon_gone WHERE n > %(n)s"
    for _ in range(5):  # psycopg prepares it on the next run
        raw.execute(query, {"n": 0}).fetchone()
        raw.commit()
    raw.execute("DROP TABLE soon_gone")
    raw.commit()
    with pytest.raises(pg_errors.UndefinedTable):  # the Parse fails, in the same round trip as BEGIN
        raw.execute(query, {"n": 0})
    raw.rollback()
    raw.execute("CREATE TABLE soon_gone (n int)")
    raw.commit()
    assert raw.execute(query, {"n": 0}).fetchone() == (0,)  # prepared afresh, not taken for prepared
    raw.commit()


def test_a_backend_ended_while_idle_is_an_operational_error_and_the_connection_is_closed(
        pg_url: str) -> None:
    with pgconn.Connection.connect(pg_url.replace("+psycopg", "")) as conn:
        _terminate(conn.info.backend_pid)
        _until_hung_up(conn)
        with pytest.raises(pg_errors.OperationalError):
            conn.execute("SELECT %(n)s::int", {"n": 1})
        assert conn.closed


# --- a long statement's text is taken apart once, as a short one's is ----------------------------------------------

def test_a_long_statement_is_taken_apart_once_and_runs_with_each_run_s_parameters(
        raw: pgconn.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg keeps its parse of a statement's placeholders only up to 4,096 characters: the save's statement is
    longer, and parsing it again cost every completion 75 µs."""
    from psycopg import _queries
    padding = " AND %(n)s::int IS NOT NULL" * 200  # well over psycopg's limit
    query = f"SELECT %(n)s::int + %(m)s::int WHERE true{padding}"
    assert len(query) > _queries.MAX_CACHED_STATEMENT_LENGTH
    parsed: list[bytes] = []
    real = _queries._query2pg_nocache

    def counting(q: bytes, encoding: str) -> object:
        parsed.append(q)
        return real(q, encoding)

    monkeypatch.setattr(_queries, "_query2pg_nocache", counting)
    pgconn.forget_long_statements()
    answers = [raw.execute(query, {"n": n, "m": 10}).fetchone() for n in range(8)]  # prepared from the sixth run on
    raw.rollback()
    assert answers == [(n + 10,) for n in range(8)]
    assert len(parsed) <= 1
    with pytest.raises(pg_errors.ProgrammingError, match="m"):  # a parameter missing is said, as psycopg says it
        raw.execute(query, {"n": 1})
    raw.rollback()
    assert raw.execute(query.replace("true", "1 = 1"), {"n": 1, "m": 1}).fetchone() == (2,)  # another text: its own
    raw.rollback()
