"""PostgreSQL connections that keep their prepared statements when a transaction that wrote nothing ends.

psycopg prepares a statement on a connection from its sixth run, which saves PostgreSQL planning it again
(half a millisecond for a completion's first read). But psycopg forgets every prepared statement of the
connection on ROLLBACK and deallocates them on the server, because a rolled-back DDL could leave them stale.
A request that only reads (a page, the inbox) ends its transaction with a rollback, so in an office's mixed
traffic the hot statements were planned again after every page view: a completion right after one took a
third longer (bench/after_read.py).

A transaction that ran nothing but SELECTs changed nothing, so ending it with COMMIT is the same as ending it
with ROLLBACK, for the data, the locks it took and the settings it made, and keeps the prepared statements.
That holds for a SELECT … FOR KEY SHARE / FOR UPDATE too (a completion's first read locks its instance's row): it
marks the row as locked, which either ending releases; it writes no value.
Anything else, anything not known for sure to be a plain SELECT, or a cursor class other than this module's
makes it a transaction that may have written, and it is rolled back as before.

A connection taken from the pool is checked without a round trip (`hung_up`): a server that restarted, or an
administrator who ended the backend, closes the socket and usually says why first, so the socket has something
to read. Only then is the connection asked `SELECT 1`; SQLAlchemy's pre-ping asked that on every checkout,
a tenth of a millisecond and a few percent of a completion.

A transaction's BEGIN goes out with its first statement, in one round trip. psycopg sends BEGIN alone and waits for
its answer before it sends the statement: a round trip that does nothing, 0.08–0.15 ms on a loopback connection, in
every request. When a transaction begins with a statement that has parameters (one statement, the extended
protocol either way), the cursor here sends BEGIN and the statement in one libpq pipeline ending in one Sync, and
reads both answers. The server sees what it saw before (BEGIN, then the statement, in order); a failing statement
leaves the transaction failed, as before. A statement without parameters may hold several, which only the simple
protocol runs: it gets psycopg's own BEGIN.

psycopg takes a statement's text apart (where its placeholders are) once and keeps that, but only for statements up to
4,096 characters: an ORM's long statements rarely repeat. The save's one statement (engine/runtime/projection.py) is
longer and runs in every completion; taking it apart again cost 75 µs each time. The cursor here keeps the parts of
the last 64 long texts as well.

psycopg also builds `cursor.description` anew each time it is asked, a Column per column: 60 µs for a
completion's first read (51 columns), which SQLAlchemy asks once per statement. The cursor here keeps the list
built for a statement's text and its result's column names, types and type modifiers (a varchar's length), and
hands out a copy.
"""
from __future__ import annotations

import re
import select
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import _queries, adapt, generators
from psycopg import errors as pg_errors
from psycopg._preparing import Prepare
from psycopg.abc import PQGen
from psycopg.pq import ExecStatus, Format, PipelineStatus, TransactionStatus
from psycopg.pq.abc import PGresult

# A plain SELECT: the statement starts with the word (no comment, no WITH: a writable CTE hides behind one) and
# holds no INTO (SELECT … INTO makes a table).
_SELECT = re.compile(r"\s*SELECT\b", re.IGNORECASE)
_INTO = re.compile(r"\bINTO\b", re.IGNORECASE)


def _is_plain_select(query: Any) -> bool:
    return isinstance(query, str | bytes) and _plain_select(query)


@lru_cache(maxsize=512)  # the application's statements are few and repeat; a scan of one costs 10–40 µs
def _plain_select(query: str | bytes) -> bool:
    text = query.decode("utf-8", "replace") if isinstance(query, bytes) else query
    return _SELECT.match(text) is not None and _INTO.search(text) is None


@lru_cache(maxsize=64)
def _long_query2pg(query: bytes, encoding: str) -> Any:
    return _queries._query2pg_nocache(query, encoding)


def forget_long_statements() -> None:
    """Drop the kept parts of long statements (tests)."""
    _long_query2pg.cache_clear()


class _Query(_queries.PostgresQuery):
    """psycopg's conversion of a statement and its parameters, keeping the parts of a long text too (see the module)."""

    def convert(self, query: Any, vars: Any) -> None:
        if vars is None or not isinstance(query, str | bytes) or \
                len(query) <= _queries.MAX_CACHED_STATEMENT_LENGTH or len(vars) > _queries.MAX_CACHED_STATEMENT_PARAMS:
            super().convert(query, vars)  # psycopg's own cache, or a text it is not worth keeping
            return
        self.query, self._want_formats, self._order, self._parts = _long_query2pg(
            self._ensure_bytes(query), self._tx.encoding)
        self.dump(vars)


_DESCRIPTIONS_MAX = 1024
_descriptions: dict[tuple[str | bytes, tuple[bytes | None, ...], tuple[tuple[int, int], ...]], list[psycopg.Column]] = {}


class Cursor(psycopg.Cursor[Any]):
    """A cursor that tells its connection whether the transaction has only read so far (and describes results
    of a statement it has seen with the columns built the first time)."""

    _query_cls = _Query

    @property
    def description(self) -> list[psycopg.Column] | None:
        res = self.pgresult
        # The statement as it was given: psycopg keeps what it sent only when it did not run a prepared statement.
        query = getattr(self, "_last_query", None)
        if res is None or res.status != ExecStatus.TUPLES_OK or not isinstance(query, str | bytes):
            return super().description
        fields = range(res.nfields)  # the same text may return other columns after a migration: they are the key
        key = (query, tuple(res.fname(i) for i in fields), tuple((res.ftype(i), res.fmod(i)) for i in fields))
        columns = _descriptions.get(key)
        if columns is None:
            columns = super().description or []
            if len(_descriptions) >= _DESCRIPTIONS_MAX:
                _descriptions.clear()
            _descriptions[key] = columns
        return list(columns)

    def _note(self, query: Any) -> None:
        conn = self.connection
        if not isinstance(conn, Connection):
            return
        if conn.pgconn.transaction_status == TransactionStatus.IDLE:  # this statement begins a transaction
            conn.only_read = _is_plain_select(query)
        elif not _is_plain_select(query):
            conn.only_read = False

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        self._note(query)
        return super().execute(query, params, **kwargs)

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        self._note(None)  # never a plain read
        super().executemany(query, params_seq, **kwargs)

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        self._note(None)
        return super().copy(statement, params, **kwargs)

    def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        self._note(query)
        return super().stream(query, params, **kwargs)

    def _execute_gen(self, query: Any, params: Any = None, *, prepare: bool | None = None,
                     binary: bool | None = None) -> PQGen[None]:
        conn = self._conn
        if params is None or conn._pipeline is not None or conn.autocommit or \
                conn.pgconn.transaction_status != TransactionStatus.IDLE:
            yield from super()._execute_gen(query, params, prepare=prepare, binary=binary)
            return
        # psycopg's _execute_gen, with the connection's BEGIN sent along with the statement (see the module)
        if self.closed:
            raise pg_errors.InterfaceError("the cursor is closed")
        self._reset()
        if not self._last_query or self._last_query is not query:
            self._last_query = None
            self._tx = adapt.Transformer(self)
        pgq = self._convert_query(query, params)
        if pgq.params:
            yield from self._begin_and_execute_gen(pgq, prepare=prepare, binary=binary)
        else:  # perhaps several statements, which only the simple protocol runs: psycopg's BEGIN, then them
            yield from conn._start_query()
            yield from self._maybe_prepare_gen(pgq, prepare=prepare, binary=binary)
        self._last_query = query
        yield from conn._prepared.maintain_gen(conn)

    def _begin_and_execute_gen(self, pgq: Any, *, prepare: bool | None, binary: bool | None) -> PQGen[None]:
        """psycopg's _maybe_prepare_gen outside a pipeline, with BEGIN first and one Sync after the statement."""
        conn, pgconn = self._conn, self._pgconn
        prep, name = self._get_prepared(pgq, prepare)
        pgconn.enter_pipeline_mode()
        try:
            pgconn.send_query_params(conn._get_tx_start_command(), None)
            if prep is Prepare.NO:
                self._query = pgq
                binary_format = self.format == Format.BINARY if binary is None else binary
                pgconn.send_query_params(pgq.query, pgq.params, param_formats=pgq.formats, param_types=pgq.types,
                                         result_format=Format.BINARY if binary_format else Format.TEXT)
            else:
                if prep is Prepare.SHOULD:
                    self._send_prepare(name, pgq)
                self._send_query_prepared(name, pgq, binary=binary)
            pgconn.pipeline_sync()
            key = conn._prepared.maybe_add_to_cache(pgq, prep, name)
            replies = yield from _until_sync(pgconn)
        finally:
            if pgconn.pipeline_status != PipelineStatus.OFF:
                try:
                    pgconn.exit_pipeline_mode()
                except psycopg.Error:  # answers still pending: the connection broke mid-way and is closed
                    pgconn.finish()
        *before, results = replies  # BEGIN's answer, the Parse's when the statement was prepared now, the statement's
        for reply in before:
            for result in reply:
                if result.status == ExecStatus.FATAL_ERROR:
                    raise pg_errors.error_from_result(result, encoding=self._encoding)
        if key is not None:
            conn._prepared.validate(key, prep, name, results)
        self._check_results(results)
        self._set_results(results)


def _until_sync(pgconn: Any) -> PQGen[list[list[PGresult]]]:
    """Read a pipeline's answers up to its Sync: a list of results for each command sent."""
    yield from generators.send(pgconn)
    replies: list[list[PGresult]] = []
    reply: list[PGresult] = []
    while True:
        result = yield from generators.fetch(pgconn)
        if result is None:  # the end of one command's results
            replies.append(reply)
            reply = []
        elif result.status == ExecStatus.PIPELINE_SYNC:
            return replies
        else:
            reply.append(result)


class Connection(psycopg.Connection[Any]):
    """A psycopg connection whose rollback of a transaction that only read is a COMMIT (see the module)."""

    # Set only by this module's cursor, which every statement through psycopg's cursor() goes through. A statement
    # sent some other way leaves it as it was, false unless this transaction began with a plain SELECT of ours.
    only_read = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = Cursor

    def rollback(self) -> None:
        if self.only_read and self.cursor_factory is Cursor and \
                self.pgconn.transaction_status == TransactionStatus.INTRANS:
            try:
                super().commit()  # reads only: the same outcome, the prepared statements kept
            except psycopg.OperationalError:
                raise  # the connection is gone: as a rollback would have found
            except psycopg.Error:  # refused (a serializable read-only transaction can be): it ended rolled back
                super().rollback()
        else:
            super().rollback()
        self.only_read = False

    def commit(self) -> None:
        super().commit()
        self.only_read = False


def hung_up(conn: psycopg.Connection[Any]) -> bool:
    """Tell, without a round trip, whether an idle connection may be dead: closed, in a broken state, or the server
    has sent something unasked (a hang-up: the reason and the end of the stream; rarely a notice)."""
    if conn.closed or conn.pgconn.transaction_status != TransactionStatus.IDLE:
        return True
    fd = conn.fileno()
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    readable, _, broken = select.select([fd], [], [fd], 0)  # no poll() on Windows
    return bool(readable or broken)
