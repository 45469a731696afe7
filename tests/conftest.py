"""Shared fixtures: the same engine tests run on SQLite and PostgreSQL (docs/architecture.md).

PostgreSQL comes from JZFLOW_TEST_PG_URL (default: the local server of this machine kind). Where
it cannot be reached the PostgreSQL cases are skipped on a laptop — and fail under CI=true.
"""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, migrate, org
from engine.db import make_engine, make_sessionmaker
from engine.org.actors import Actor, actor_for

FIXTURES = Path(__file__).parent / "fixtures"
PG_ADMIN_URL = os.environ.get("JZFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
# One audit key and one anchor file for the whole run, shared with CLI runs and worker subprocesses
# (tests/workers.py passes them on): a test that wants the key file or its own anchor file says so.
os.environ.setdefault("JZFLOW_AUDIT_KEY", "test-audit-key-" + uuid.uuid4().hex)
os.environ.setdefault("JZFLOW_AUDIT_ANCHOR", str(Path(os.environ.get("TMPDIR", "/tmp"))
                                                 / f"jzflow-test-anchors-{os.getpid()}.log"))


def _pg_available() -> str | None:
    try:
        eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:  # any connection failure means "not available"
        return str(exc).splitlines()[0]


def require_service(name: str, problem: str | None) -> None:
    """Skip on a laptop, fail under CI, when a service the test needs is missing."""
    if problem is None:
        return
    message = f"{name} not available: {problem}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing service is a failure)")
    pytest.skip(message)


class PgDatabases:
    """Create throwaway PostgreSQL databases from one migrated template."""

    def __init__(self) -> None:
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.prefix = f"jzt_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.template = f"{self.prefix}_tpl"
        self.created: list[str] = []
        self._count = 0
        self._failures: list[str] = []
        self._dropping: queue.Queue[str | None] = queue.Queue()
        self._dropper = threading.Thread(target=self._drop_in_turn, name="pg-dropper", daemon=True)
        self._dropper.start()
        self._create(self.template)
        migrate.upgrade(self.url(self.template))

    def url(self, name: str) -> str:
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def _create(self, name: str, template: str | None = None) -> None:
        with self.admin.connect() as conn:
            suffix = f" TEMPLATE {template}" if template else ""
            conn.execute(text(f'CREATE DATABASE "{name}"{suffix}'))
        self.created.append(name)

    def fresh(self) -> str:
        name = f"{self.prefix}_{self._count}"
        self._count += 1
        self._create(name, self.template)
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop one database once its test has ended, on a thread of its own (~160 ms a drop here).

        Dropping them all at the session's end cost more than the last test's whole timeout (the
        clean-clone run: ~2,400 databases, the teardown stopped at 300 s); one at a time beside the
        tests that follow, the run never holds more than a handful and the end waits for none.
        """
        name = url.rsplit("/", 1)[1]
        if name in self.created:
            self.created.remove(name)
            self._dropping.put(name)

    def _drop_in_turn(self) -> None:
        while (name := self._dropping.get()) is not None:
            try:
                with self.admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:  # reported by drop_all: a database left behind is the run's failure
                self._failures.append(f"{name}: {exc}")
            finally:
                self._dropping.task_done()

    def settle(self) -> None:
        """Wait until every database handed to drop() is gone."""
        self._dropping.join()

    def drop_all(self) -> None:
        self._dropping.put(None)
        self._dropper.join()
        with self.admin.connect() as conn:
            for name in reversed(self.created):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.created.clear()
        self.admin.dispose()
        assert not self._failures, f"test databases not dropped: {self._failures}"


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    require_service("PostgreSQL", _pg_available())
    dbs = PgDatabases()
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A fresh, migrated database per test, committed for real (threads and workers can see it)."""
    if request.param == "sqlite":
        path = tmp_path / "jzflow.sqlite"
        path.write_bytes(sqlite_template.read_bytes())
        return f"sqlite:///{path}"
    dbs: PgDatabases = request.getfixturevalue("pg_databases")
    url = dbs.fresh()
    # Registered before db_engine's teardown runs, so it runs after it: the engine is disposed first.
    request.addfinalizer(lambda: dbs.drop(url))
    return url


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(db_engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(db_engine)


@pytest.fixture
def session(factory: sessionmaker[Session]) -> Iterator[Session]:
    s = factory()
    yield s
    s.rollback()
    s.close()


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    yield
    clock.unfreeze()


@pytest.fixture
def frozen() -> Iterator[Callable[..., Any]]:
    """Freeze the clock; returns engine.clock for advance()."""
    from datetime import datetime
    clock.freeze(datetime(2025, 9, 1, 9, 0, tzinfo=clock.SHANGHAI))
    yield clock
    clock.unfreeze()


@pytest.fixture
def review_org(session: Session) -> dict[str, Actor]:
    """Org units, roles and users that review_process's lanes and DMN departments map to."""
    for code, name in [("applicant", "申请人"), ("reviewer", "审批部门"), ("leader", "领导")]:
        org.add_role(session, code=code, name=name)
    for code, name in [("window", "窗口"), ("fgj", "发改"), ("zrzy", "自然资源"), ("sthj", "生态环境"),
                       ("scjg", "市场监管"), ("zj", "住建")]:
        org.add_unit(session, code=code, name=name)
    org.add_user(session, username="applicant", display_name="项目单位张三", role_codes=["applicant"])
    org.add_user(session, username="window", display_name="窗口李四", unit_codes=["window"])
    org.add_user(session, username="fg", display_name="发改王五", unit_codes=["fgj"], role_codes=["reviewer"])
    org.add_user(session, username="zr", display_name="自然资源赵六", unit_codes=["zrzy"], role_codes=["reviewer"])
    org.add_user(session, username="st", display_name="生态环境钱七", unit_codes=["sthj"], role_codes=["reviewer"])
    org.add_user(session, username="boss", display_name="领导孙八", role_codes=["leader"])
    org.add_user(session, username="admin", display_name="管理员", is_admin=True)
    session.commit()
    return {u: actor_for(session, u) for u in ("applicant", "window", "fg", "zr", "st", "boss", "admin")}


def pdf_text(body: bytes, tmp_path: Path) -> str:
    """Return the text of a PDF as poppler's pdftotext reads it (skips the test without poppler-utils)."""
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext) is not installed: make system-packages")
    path = tmp_path / "doc.pdf"
    path.write_bytes(body)
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout


def read_fixture_dir(*parts: str) -> dict[str, bytes]:
    from engine.deploy import read_directory
    return read_directory(FIXTURES.joinpath(*parts))
