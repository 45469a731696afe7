"""app_user.sso_subject: the identity provider's subject an account is bound to, whatever its source

An existing account (made here, or by the directory sync) was taken by whichever provider user's token named its
username at the first SSO login; a directory account was never bound at all, so any subject naming it got in at
every login. The binding now has a column of its own, apart from the account's source and the directory's DN
(external_id), unique: one subject, one account. Accounts a first SSO login made or bound (source "oidc", the sub in
external_id) keep their subject (the oldest of them, when the same subject had several made for it). Directory and local accounts start unbound: JZFLOW_OIDC_LINK decides how they are
linked (default: by an administrator, `jzflow sso-link`; docs/operations.md).

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-08 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0034'
down_revision = '0033'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sso_subject', sa.String(length=400), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_app_user_sso_subject'), ['sso_subject'])
    # A subject whose username claim changed had a second account made for it: the first one keeps the binding
    op.execute("UPDATE app_user SET sso_subject = external_id WHERE source = 'oidc' AND external_id IS NOT NULL "
               "AND id = (SELECT min(u.id) FROM app_user u WHERE u.source = 'oidc' "
               "AND u.external_id = app_user.external_id)")


def downgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_app_user_sso_subject'), type_='unique')
        batch_op.drop_column('sso_subject')
