"""The run's throwaway PostgreSQL databases go as their tests end, not all at the session's end.

The clean-clone run created ~2,400 of them and dropped them in the session's teardown: at ~160 ms a
drop that outlasted the last test's 300 s timeout and failed the run after every test had passed.
"""
from __future__ import annotations

from sqlalchemy import text

from tests.conftest import PgDatabases


def _exists(dbs: PgDatabases, name: str) -> bool:
    with dbs.admin.connect() as conn:
        return conn.execute(text("select 1 from pg_database where datname = :n"), {"n": name}).first() is not None


def test_a_database_is_dropped_after_its_test(pg_databases: PgDatabases) -> None:
    url = pg_databases.fresh()
    name = url.rsplit("/", 1)[1]
    assert _exists(pg_databases, name)
    pg_databases.drop(url)
    pg_databases.settle()
    assert not _exists(pg_databases, name)
    assert name not in pg_databases.created


def test_the_run_holds_few_databases(pg_databases: PgDatabases) -> None:
    """Earlier tests' databases (db_url, pg) are gone by now: only the template and a test's own remain."""
    pg_databases.settle()
    assert len(pg_databases.created) <= 5, pg_databases.created
