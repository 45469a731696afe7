"""sessions end server-side, login failures counted in the database, the audit trail keyed and untruncatable

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 15:00:00

- app_user.session_epoch: a login session carries the epoch it began in; logout, a password change and
  deactivation bump it, so every earlier session cookie stops working (web/common.py's user loader).
- login_failure: failed logins per account and per client address, shared by every process.
- PostgreSQL: TRUNCATE of audit_event / audit_checkpoint is refused (a statement trigger; the row
  triggers of 0001 never saw TRUNCATE).
- Existing audit rows are re-keyed (HMAC under the audit key) after the old chain is checked
  (engine/audit/rekey.py says why re-key rather than keep legacy rows).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_epoch', sa.Integer(), server_default='0', nullable=False))
    op.create_table('login_failure',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_login_failure'))
    )
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        op.execute("ALTER TABLE audit_checkpoint DISABLE TRIGGER audit_checkpoint_append_only")
    from engine.audit.rekey import rekey
    rekey(bind)
    if postgres:
        op.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")
        op.execute("ALTER TABLE audit_checkpoint ENABLE TRIGGER audit_checkpoint_append_only")
        for table in ("audit_event", "audit_checkpoint"):
            op.execute(f"""
                CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
            """)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_checkpoint_no_truncate ON audit_checkpoint")
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
    op.drop_table('login_failure')
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_column('session_epoch')
