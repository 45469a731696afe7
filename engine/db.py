"""Database engine and sessions; one commit point per request or job (the caller's)."""
from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, select, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an Engine; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # isolation_level=None hands BEGIN to us so SQLite transactions follow SQLAlchemy's.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front: no deadlock-prone lock upgrades.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # The connection returned last is taken first: at a quiet hour one connection serves, with its statements
    # prepared (engine/pgconn.py), and the others idle instead of taking turns with cold caches.
    kwargs.setdefault("pool_use_lifo", True)
    if make_url(url).get_dialect().driver != "psycopg":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    from engine import pgconn  # psycopg is only imported where PostgreSQL is used

    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return pgconn.Connection.connect(*cargs, **cparams)

    if not kwargs.get("pool_pre_ping"):
        @event.listens_for(engine, "connect")
        def _made(_dbapi_conn: Any, record: Any) -> None:
            record.info[_FRESH] = True

        @event.listens_for(engine, "checkout")
        def _alive(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
            # A connection just made is taken as it is, as SQLAlchemy's pre-ping takes it: the pool tries twice at a
            # checkout and then fails the request before it ran anything, where a statement that finds the
            # connection gone is a lost connection the caller retries. Two kills in a row did that.
            if record.info.pop(_FRESH, False):
                return
            # a pre-ping only where the socket says the server may have gone (engine/pgconn.py)
            if pgconn.hung_up(dbapi_conn) and not _answers(engine, dbapi_conn):
                raise DisconnectionError("the server closed the connection")
    return engine


_FRESH = "jzflow.fresh"  # connected, not yet checked out


def _answers(engine: Engine, dbapi_conn: Any) -> bool:
    try:
        return bool(engine.dialect.do_ping(dbapi_conn))
    except Exception:  # any failure: the pool replaces the connection
        return False


COMMIT_STARTED = "jzflow.commit_started"


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory whose objects stay usable after commit.

    Each session notes in `info[COMMIT_STARTED]` that it began a commit: work that failed on a lost
    connection may be run again only when no commit was attempted (one that was may have succeeded).
    """
    factory = sessionmaker(bind=engine, expire_on_commit=False)

    @event.listens_for(factory, "before_commit")
    def _commit_started(session: Session) -> None:
        session.info[COMMIT_STARTED] = True

    return factory


def is_disconnect(exc: BaseException) -> bool:
    """Tell whether a database error means the connection was lost (or could not be made)."""
    return isinstance(exc, DBAPIError) and (bool(exc.connection_invalidated) or isinstance(exc, OperationalError))


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Commit on success, roll back on error: the one commit point of a job or command."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_postgres(session_or_engine: Session | Engine) -> bool:
    """Tell whether we talk to PostgreSQL (for SKIP LOCKED and the audit trigger)."""
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


def advisory_lock(session: Session, *names: str) -> None:
    """Hold the named locks until the session's transaction ends, taken in sorted order (one statement).

    A PostgreSQL transaction-level advisory lock per name, keyed by the first 64 bits of the name's sha256 (the
    keys stay the same from one release to the next: an old and a new process running side by side during an
    upgrade wait for each other). Taken again by the same transaction, a lock is held already. Names are taken
    in sorted order, so two transactions taking overlapping sets cannot each hold one the other waits for.
    No-op on SQLite, where every transaction began IMMEDIATE and so holds the one writer lock already.
    """
    if not names or not is_postgres(session):
        return
    keys = [advisory_key(name) for name in sorted(set(names))]
    if len(keys) == 1:
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": keys[0]})
        return
    session.execute(text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) WITH ORDINALITY"
                         " AS t(k, i) ORDER BY i"), {"keys": keys})


def lock_in_order(session: Session, column: Any, ids: Sequence[int], *, wait_seconds: float) -> list[int]:
    """Lock the rows whose `column` (a primary key) is in `ids`, FOR UPDATE in ascending order in one statement,
    waiting at most `wait_seconds` for one another transaction holds (the session's own lock_timeout applies after).

    Returns [] when every row is held, else the ids another transaction still held, ascending, and nothing of this
    call stays locked (its savepoint rolled back). Taking them in one order, two such calls on overlapping sets never
    deadlock. No-op on SQLite, where every transaction began IMMEDIATE and so holds the one writer lock already.
    """
    if not ids or not is_postgres(session):
        return []
    wanted = select(column).where(column.in_(ids)).order_by(column)
    busy: list[int] = []
    for _ in range(3):  # the holder may finish between the timeout and the look: lock again
        savepoint = session.begin_nested()
        try:
            previous = session.scalar(text("SELECT current_setting('lock_timeout')"))
            session.execute(text("SELECT set_config('lock_timeout', :t, true)"),
                            {"t": f"{max(1, int(wait_seconds * 1000))}ms"})
            session.execute(wanted.with_for_update())
        except OperationalError as exc:
            savepoint.rollback()  # its locks and its lock_timeout with it
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
        else:
            session.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": previous})
            savepoint.commit()
            return []
        look = session.begin_nested()
        free = set(session.scalars(wanted.with_for_update(skip_locked=True)))
        busy = [i for i in session.scalars(wanted) if i not in free]
        look.rollback()
        if busy:
            return busy
    return busy or sorted(set(ids))


def advisory_key(name: str) -> int:
    """Return the advisory lock key of a name: the first 64 bits of its sha256, as PostgreSQL's bigint takes them."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


_DATABASE_KEYS: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def database_key(session: Session) -> str:
    """Name the session's database for a per-process cache (its URL, the password hidden).

    Rendered once per engine: str(url) builds the text anew each time, and a completion asked five times.
    """
    engine = session.get_bind().engine
    key = _DATABASE_KEYS.get(engine)
    if key is None:
        key = _DATABASE_KEYS[engine] = str(engine.url)
    return key


def ping(session: Session) -> None:
    """Ask the database a trivial question (health checks): raises when it cannot answer."""
    session.execute(text("select 1"))
