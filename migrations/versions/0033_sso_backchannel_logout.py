"""sso_session, sso_logout_token: OpenID Connect back-channel logout (统一身份认证后台退出)

Logging out, or being disabled, at the city's identity provider did not end a jzflow session. The provider now
POSTs a logout token (engine/org/oidc_backchannel.py): sso_session records every login through the provider, with
the subject it verified (`sub`) and the provider's session (`sid`) when named, so a token naming the sid ends that
login only, and one naming the sub finds the person whatever their account's source; sso_logout_token keeps the tokens taken (sha256 of issuer
and jti) while they could still be accepted, so a replayed one is refused.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-06 14:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0033'
down_revision = '0032'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sso_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('sub', sa.String(length=400), nullable=False),
    sa.Column('sid', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_sso_session_user_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sso_session')),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('sso_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sso_session_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sso_session_sid'), ['sid'], unique=False)
        batch_op.create_index(batch_op.f('ix_sso_session_sub'), ['sub'], unique=False)
        batch_op.create_index(batch_op.f('ix_sso_session_user_id'), ['user_id'], unique=False)
    op.create_table('sso_logout_token',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_sso_logout_token')),
    )
    with op.batch_alter_table('sso_logout_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sso_logout_token_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sso_logout_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sso_logout_token_expires_at'))
    op.drop_table('sso_logout_token')
    with op.batch_alter_table('sso_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sso_session_user_id'))
        batch_op.drop_index(batch_op.f('ix_sso_session_sub'))
        batch_op.drop_index(batch_op.f('ix_sso_session_sid'))
        batch_op.drop_index(batch_op.f('ix_sso_session_expires_at'))
    op.drop_table('sso_session')
