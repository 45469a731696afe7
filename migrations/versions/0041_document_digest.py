"""issued_document.pdf, .digest: the issued file and its SHA-256, which /verify compares an uploaded copy with

The 联合意见书 was printed anew on each download (a new creation time, the link of the address the request came to),
and /verify vouched only for its number, subject, date and issuers: a copy whose opinions were edited still
"verified". A document is now printed once, when it is issued; its bytes are kept and served as they are, and their
SHA-256 is shown by /verify, which compares a file the checker uploads with it.

Documents issued before this migration get NULL in both: no file of theirs was kept, and printing one now would
not be the copy their holders have (each download differed), so /verify says their digest was not recorded. They
are still printed on each download, as before.

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-10 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0041'
down_revision = '0040'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('issued_document', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pdf', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('digest', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('issued_document', schema=None) as batch_op:
        batch_op.drop_column('digest')
        batch_op.drop_column('pdf')
