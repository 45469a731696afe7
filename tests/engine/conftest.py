"""Engine fixtures for concurrency: a PostgreSQL database with a connection pool for many threads."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, org
from engine.db import make_engine, make_sessionmaker
from engine.org.actors import SYSTEM, Actor, actor_for
from tests.conftest import FIXTURES, PgDatabases
from tests.sinks import SmtpSink

SIBLINGS = FIXTURES / "concurrency"


@pytest.fixture
def pg(pg_databases: PgDatabases) -> Iterator[Engine]:
    url = pg_databases.fresh()
    engine = make_engine(url, pool_size=20)
    yield engine
    engine.dispose()
    pg_databases.drop(url)


@pytest.fixture
def pg_factory(pg: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(pg)


def staff(factory: sessionmaker[Session], n: int, *, bpmn_dir: Path = SIBLINGS) -> list[Actor]:
    """N users of one department, and the sibling-task process deployed."""
    with factory() as session:
        org.add_unit(session, code="dept", name="审批部门")
        for i in range(n):
            org.add_user(session, username=f"u{i}", display_name=f"用户{i}", unit_codes=["dept"])
        deploy.deploy(session, deploy.read_directory(bpmn_dir), actor=SYSTEM, check_lanes=False)
        session.commit()
        return [actor_for(session, f"u{i}") for i in range(n)]


def at_once(n: int, work: Callable[[int], None]) -> list[BaseException | None]:
    """Run work(0..n-1) in n threads released together; return what each raised."""
    barrier = threading.Barrier(n)
    outcomes: list[BaseException | None] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


class InterleavedLock:
    """Stands in for a lock: each of `then` runs once, right after the first release (another thread getting in
    between two holds of the lock)."""

    def __init__(self, lock: Any, *then: Callable[[], None]) -> None:
        self.lock, self.then = lock, list(then)

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
        while self.then:
            self.then.pop()()


def waits_for_a_lock(factory: sessionmaker[Session], pid: int) -> bool:
    """Tell whether the PostgreSQL backend `pid` waits for a lock now (a look in a transaction of its own:
    pg_stat_activity is a snapshot within one)."""
    with factory() as look:
        return bool(look.execute(text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :p"),
                                 {"p": pid}).scalar())


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    """A local SMTP server the mail jobs deliver to (and the public URL their links name)."""
    with SmtpSink() as sink:
        monkeypatch.setenv("JZFLOW_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("JZFLOW_SMTP_PORT", str(sink.port))
        monkeypatch.setenv("JZFLOW_PUBLIC_URL", "https://jzflow.jiaozhou.test")
        yield sink
