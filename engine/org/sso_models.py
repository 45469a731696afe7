"""What single sign-on keeps server-side for the provider's back-channel logout (engine/org/oidc_backchannel.py)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from engine import clock
from engine.orm import Base


class SsoSession(Base):
    """One login through the provider: the subject its ID token verified (`sub`) and the provider's session (`sid`),
    when it named one.

    The browser's session holds this row's id: a logout token for that sid ends this login and no other of the
    person's; one naming the sub finds the account by it whatever the account's source (a directory-synced account
    keeps its DN as external_id, never the provider's sub). The row lives as long as a session may (its
    `expires_at`); a login whose row has ended, expired or gone is over. Ids are never reused (SQLite
    AUTOINCREMENT), so a purged row's id never names a later login.
    """

    __tablename__ = "sso_session"
    __table_args__ = ({"sqlite_autoincrement": True},)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    sub: Mapped[str] = mapped_column(String(400), index=True)
    sid: Mapped[str | None] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None] = mapped_column()


class SsoLogoutToken(Base):
    """A logout token already taken, by the sha256 of its issuer and `jti`, kept while it could still be accepted."""

    __tablename__ = "sso_logout_token"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
