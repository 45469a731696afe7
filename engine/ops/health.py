"""Readiness: can this process do its work now? The database answers and the schema is current (the broker is asked
too: without it the process serves, degraded).

Liveness (/healthz) asks nothing of anyone: a process that answers is up. Readiness (/readyz) is what a load
balancer asks before sending traffic, and what an upgrade waits for (new code stays unready until the
migrations it needs have run).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from engine import migrate
from engine.db import ping
from engine.ops import queues


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True  # False: a failure degrades the process but it still serves (the broker)


@lru_cache(maxsize=1)
def code_heads() -> frozenset[str]:
    """The migration heads this code expects (read once from migrations/)."""
    return frozenset(ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_heads())


def known_revisions() -> frozenset[str]:
    """Every revision this code's migrations know (an archive or database at another one is from newer code)."""
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    return frozenset(rev.revision for rev in script.walk_revisions())


def database_revisions(engine: Engine) -> frozenset[str]:
    with engine.connect() as conn:
        return frozenset(MigrationContext.configure(conn).get_current_heads())


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def check_database(engine: Engine) -> Check:
    try:
        with engine.connect() as conn:
            from sqlalchemy.orm import Session
            with Session(bind=conn) as session:
                ping(session)
        return Check("database", True, engine.dialect.name)
    except Exception as exc:  # any failure to answer is "not ready"
        return Check("database", False, _short(exc))


def check_migrations(engine: Engine) -> Check:
    try:
        have, want = database_revisions(engine), code_heads()
    except Exception as exc:  # no database: reported by check_database too
        return Check("migrations", False, _short(exc))
    if have == want:
        return Check("migrations", True, ",".join(sorted(have)))
    ahead = have - known_revisions()
    if ahead:
        return Check("migrations", False, f"the database is at {','.join(sorted(ahead))}, newer than this code "
                                          f"({','.join(sorted(want))}): deploy the new code")
    return Check("migrations", False, f"the database is at {','.join(sorted(have)) or 'nothing'}, this code needs "
                                      f"{','.join(sorted(want))}: run `jzflow migrate`")


def check_broker(broker_url: str) -> Check:
    """Ask the broker; not required: requests record their effects in the outbox and beat catches up after.

    Every host shares the one broker, so a required check would take every host out of the load balancer at once.
    """
    try:
        queues.ping(broker_url)
        return Check("broker", True, broker_url.split(":", 1)[0], required=False)
    except Exception as exc:  # any failure to answer is "degraded"
        return Check("broker", False, _short(exc), required=False)


def readiness(engine: Engine, broker_url: str) -> list[Check]:
    """Run every readiness check; the required ones must pass."""
    database = check_database(engine)
    migrations = check_migrations(engine) if database.ok else Check("migrations", False, "database not reachable")
    return [database, migrations, check_broker(broker_url)]
