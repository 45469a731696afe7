"""The completion's own statements on the session's DBAPI cursor, past SQLAlchemy's execution machinery.

A completion sends two statements (its first read, engine/tasks/first_read.py, and the save's one statement,
engine/runtime/projection.py). Through `Connection.execute` / `exec_driver_sql` each also built an execution
context, looked its compiled form up, ran the result's metadata and row processing: 0.1–0.15 ms of CPU a
statement, about a twentieth of a completion (bench/README.md, eighteenth pass). Here they run on the cursor
of the connection the session already holds, in its transaction, with what SQLAlchemy adds that matters kept:

- errors come out as SQLAlchemy raises them (OperationalError, IntegrityError, … wrapping the driver's), through the
  connection's own handling: a lost connection is invalidated, `handle_error` listeners run;
- `before_cursor_execute` / `after_cursor_execute` listeners, where there are any (a statement counter, tracing),
  see the statement as they would see it through `exec_driver_sql`;
- a Core statement (`Prepared`) is compiled once per dialect, its parameters filled in as SQLAlchemy would (a
  literal's value, a bind processor) and its result columns processed by their types (UTCDateTime). A dialect with
  positional parameters (SQLite's) runs it through SQLAlchemy as before: there a statement costs no round trip.

Rows come back as tuples, in the statement's column order.
"""
from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Select


def rows(session: Session, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run `sql` (the driver's parameter style) with `params` in the session's transaction; return every row."""
    return _run(session.connection(), sql, params)


def _run(conn: Connection, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    cursor = conn.connection.cursor()
    listened = conn._has_events or conn.engine._has_events
    try:
        if listened:
            sql, params = _before(conn, cursor, sql, params)
        cursor.execute(sql, params)
        found = list(cursor.fetchall()) if cursor.description is not None else []
        if listened:
            conn.dispatch.after_cursor_execute(conn, cursor, sql, params, None, False)
        return found
    except Exception as exc:  # as SQLAlchemy raises it: wrapped, and a lost connection invalidated
        conn._handle_dbapi_exception(exc, sql, dict(params), cursor, None)
    finally:
        cursor.close()


def _before(conn: Connection, cursor: Any, sql: str, params: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    for fn in conn.dispatch.before_cursor_execute:  # a listener made with retval=True may change them
        changed = fn(conn, cursor, sql, params, None, False)
        if isinstance(changed, tuple) and len(changed) == 2:
            sql, params = changed
    return sql, params


@dataclass(frozen=True)
class _Compiled:
    sql: str
    defaults: dict[str, Any]  # every parameter, a literal's value filled in
    binds: dict[str, Callable[[Any], Any]]  # the parameters a type converts on the way in
    results: list[tuple[int, Callable[[Any], Any]]]  # the result columns a type converts on the way out


class Prepared:
    """A Core select compiled once per dialect, run through `rows`."""

    def __init__(self, statement: Select[Any], *, named: bool = False) -> None:
        self.statement = statement
        self._by_dialect: dict[int, _Compiled] = {}
        # rows whose columns are also read by name (row.expires_at), as SQLAlchemy's Row allows
        self._row: Callable[[Any], tuple[Any, ...]] = _named(statement) if named else tuple

    def _compiled(self, dialect: Dialect) -> _Compiled:
        held = self._by_dialect.get(id(dialect))
        if held is None:
            compiled = self.statement.compile(dialect=dialect)
            binds: dict[str, Any] = {k: p for k, p in (compiled._bind_processors or {}).items() if p is not None}
            results: list[tuple[int, Any]] = [(i, proc) for i, entry in enumerate(compiled._result_columns)
                       if (proc := entry.type._cached_result_processor(dialect, None)) is not None]
            held = self._by_dialect[id(dialect)] = _Compiled(compiled.string, dict(compiled.construct_params(
                _check=False)), binds, results)
        return held

    def rows(self, session: Session, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run the statement with `params` (its bound parameters by name) in the session's transaction."""
        conn = session.connection()
        if conn.dialect.positional:  # SQLite's qmark: its statements cost no round trip, SQLAlchemy's path as it is
            return [self._row(row) for row in conn.execute(self.statement, dict(params))]
        compiled = self._compiled(conn.dialect)
        values = {**compiled.defaults, **params}
        for name, proc in compiled.binds.items():
            values[name] = proc(values[name])
        found = _run(conn, compiled.sql, values)
        if compiled.results:
            return [self._row(_processed(row, compiled.results)) for row in found]
        return [self._row(row) for row in found] if self._row is not tuple else found


def _named(statement: Select[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """A maker of rows read by name too, one field per result column, named as SQLAlchemy's Row names them."""
    names = list(statement.selected_columns.keys())  # unique: a second `id` is `id_1`, as in a subquery
    row: Any = namedtuple("Row", names, rename=True)  # type: ignore[misc] # the names are known only here
    return cast(Callable[[Any], tuple[Any, ...]], row._make)


def _processed(row: tuple[Any, ...], results: list[tuple[int, Callable[[Any], Any]]]) -> tuple[Any, ...]:
    values = list(row)
    for i, proc in results:
        values[i] = proc(values[i])
    return tuple(values)


__all__ = ["Prepared", "rows"]
