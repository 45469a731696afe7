"""indicator: the upper end of a range, further plan lines quoting the same target, parts of a count

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 18:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

# The plan states 新增落户创投风投机构20家 twice (lines 26 and 91); earlier seeds made two indicators of it.
# The seed now quotes line 91 on the first one: the second one's figures and plan items move over.
DUPLICATE, KEPT = 'finance_vc_institutions_new', 'vc_institutions_new'


def upgrade() -> None:
    # Plain ADD COLUMN, no batch: on SQLite a batch copies and drops the table, which the foreign keys of
    # indicator_value and plan_item refuse once they hold rows.
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column('indicator', sa.Column('target_high', sa.Numeric(precision=16, scale=4), nullable=True))
    op.add_column('indicator', sa.Column('also_quoted', sa.JSON(), nullable=True))
    if sqlite:  # SQLite adds a column's foreign key only inline (Alembic's add_column will not)
        op.execute("ALTER TABLE indicator ADD COLUMN parent_id INTEGER "
                   "CONSTRAINT fk_indicator_parent_id_indicator REFERENCES indicator (id)")
    else:
        op.add_column('indicator', sa.Column('parent_id', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_indicator_parent_id_indicator', 'indicator', 'indicator', ['parent_id'], ['id'])
    op.create_index(op.f('ix_indicator_parent_id'), 'indicator', ['parent_id'], unique=False)
    _merge_duplicate()


def _merge_duplicate() -> None:
    conn = op.get_bind()
    ids = dict(conn.execute(sa.text("SELECT code, id FROM indicator WHERE code IN (:a, :b)"),
                            {"a": DUPLICATE, "b": KEPT}).all())
    if DUPLICATE not in ids or KEPT not in ids:
        return
    old, new = ids[DUPLICATE], ids[KEPT]
    # A period recorded on both keeps the kept indicator's figure.
    conn.execute(sa.text("UPDATE indicator_value SET indicator_id = :new WHERE indicator_id = :old AND period NOT IN "
                         "(SELECT period FROM indicator_value WHERE indicator_id = :new)"), {"old": old, "new": new})
    conn.execute(sa.text("DELETE FROM indicator_value WHERE indicator_id = :old"), {"old": old})
    conn.execute(sa.text("UPDATE plan_item SET indicator_id = :new WHERE indicator_id = :old"), {"old": old, "new": new})
    conn.execute(sa.text("DELETE FROM indicator WHERE id = :old"), {"old": old})


def downgrade() -> None:
    # The folded duplicate is not restored: its figures live on in vc_institutions_new.
    op.drop_index(op.f('ix_indicator_parent_id'), table_name='indicator')
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint('fk_indicator_parent_id_indicator', 'indicator', type_='foreignkey')
    for column in ('parent_id', 'also_quoted', 'target_high'):
        op.drop_column('indicator', column)
