"""membership: a person is a member of a unit once, and holds a role once.

uq_membership (user, unit, role) holds no NULL: a unit membership has no role and a role no unit, so the same one
stored twice passed it — two single sign-on logins of one person at once each added every unit and role the
provider claimed (engine.org.sso_users now locks the person first). Two partial unique indexes say it in the schema:
(user, unit) where the role is null, (user, role) where the unit is null. The copies already stored are folded into
the oldest row first (head of the unit if any copy was).

Revision ID: 0046
Revises: 0045
Create Date: 2026-12-07 16:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0046'
down_revision = '0045'
branch_labels = None
depends_on = None

UNIT_ONLY = sa.text("role_id IS NULL")
ROLE_ONLY = sa.text("org_unit_id IS NULL")


# Each person's copies of one unit membership (role null), then of one role (unit null): the oldest row is kept, a
# head of the unit if any copy was one.
FOLD = (
    "UPDATE membership SET is_head = TRUE WHERE role_id IS NULL AND id IN (SELECT MIN(id) FROM membership "
    "WHERE role_id IS NULL AND org_unit_id IS NOT NULL GROUP BY user_id, org_unit_id "
    "HAVING COUNT(*) > 1 AND MAX(CASE WHEN is_head THEN 1 ELSE 0 END) = 1)",
    "DELETE FROM membership WHERE role_id IS NULL AND org_unit_id IS NOT NULL AND id NOT IN (SELECT MIN(id) "
    "FROM membership WHERE role_id IS NULL AND org_unit_id IS NOT NULL GROUP BY user_id, org_unit_id)",
    "DELETE FROM membership WHERE org_unit_id IS NULL AND role_id IS NOT NULL AND id NOT IN (SELECT MIN(id) "
    "FROM membership WHERE org_unit_id IS NULL AND role_id IS NOT NULL GROUP BY user_id, role_id)",
)


def upgrade() -> None:
    for statement in FOLD:
        op.execute(statement)
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.create_index('uq_membership_unit', ['user_id', 'org_unit_id'], unique=True,
                              postgresql_where=UNIT_ONLY, sqlite_where=UNIT_ONLY)
        batch_op.create_index('uq_membership_role', ['user_id', 'role_id'], unique=True,
                              postgresql_where=ROLE_ONLY, sqlite_where=ROLE_ONLY)


def downgrade() -> None:
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.drop_index('uq_membership_role')
        batch_op.drop_index('uq_membership_unit')
