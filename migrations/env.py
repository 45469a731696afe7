"""Alembic environment: the URL comes from the caller (engine.migrate) or JZFLOW_DATABASE_URL."""
from __future__ import annotations

from alembic import context

from engine import config as jz_config
from engine.db import make_engine
from plan.schema import Base

target_metadata = Base.metadata


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    return url or jz_config.load().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    with engine.connect() as connection:
        raw = connection.connection.driver_connection if connection.dialect.name == "sqlite" else None
        if raw is not None:
            # A batch migration copies a table and drops the old one; with foreign keys on, SQLite refuses to
            # drop a table other rows refer to. Off while migrating (outside any transaction, or SQLite ignores
            # it), and every reference checked before the migration commits.
            raw.execute("PRAGMA foreign_keys=OFF")
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
            if raw is not None:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left {len(broken)} broken references, e.g. {broken[:3]}")
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=ON")
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
