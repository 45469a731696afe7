"""SQLite: human_task, task_candidate and process_state_history ids are never reused (AUTOINCREMENT)

Without AUTOINCREMENT SQLite gives a new row the largest id in the table plus one. Archiving moves rows out of
these tables with their ids (archive_*), so once the newest rows were archived the next step took an archived
step's id: audit events, comments and CCs naming that id became ambiguous, and archiving the new step failed on
the archive table's primary key, every hour. PostgreSQL's sequences never go back: nothing to do there.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-04 21:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None

# hot table → its archive mirror (ids are kept when rows move there)
TABLES = (("human_task", "archive_human_task"), ("task_candidate", "archive_task_candidate"),
          ("process_state_history", "archive_process_state_history"))


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    for hot, cold in TABLES:
        with op.batch_alter_table(hot, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass
        # The copy set the counter to the hot table's largest id; it starts past the archive's too.
        high = conn.scalar(sa.text(f"SELECT max(coalesce((SELECT max(id) FROM {hot}), 0), "  # nosec B608
                                   f"coalesce((SELECT max(id) FROM {cold}), 0))"))
        conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :name"), {"name": hot})
        conn.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :seq)"),
                     {"name": hot, "seq": int(high or 0)})


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for hot, _cold in reversed(TABLES):
        with op.batch_alter_table(hot, recreate="always"):
            pass
