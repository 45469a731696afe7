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
    try:  # a refused migration raises: its pooled connection is closed too
        with engine.connect() as connection:
            raw = connection.connection.driver_connection if connection.dialect.name == "sqlite" else None
            if raw is not None:
                # A batch migration copies a table and drops the old one; with foreign keys on, SQLite refuses to
                # drop a table other rows refer to. Off while migrating (outside any transaction, or SQLite ignores
                # it), and every reference checked before the migration commits.
                raw.execute("PRAGMA foreign_keys=OFF")
            # SQLite's DDL is transactional (make_engine hands BEGIN to SQLAlchemy), but Alembic assumes it is not and
            # would commit each migration on its own: the check below would then refuse an upgrade already written.
            # One transaction for the whole upgrade, as on PostgreSQL: a refused or failed upgrade changes nothing.
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                              transactional_ddl=True)
            with context.begin_transaction():
                context.run_migrations()
                if raw is not None:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:  # rows: (table, rowid, referenced table, foreign key index)
                        named = "; ".join(f"{table} row {rowid} → {parent}" for table, rowid, parent, _fk in broken[:5])
                        raise RuntimeError(f"migration refused, nothing changed: it would leave {len(broken)} broken "
                                           f"references ({named}); repair or delete those rows and migrate again")
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
