"""Machine access to the JSON API: bearer tokens, stored only as their sha256."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine import clock
from engine.orm import Base


class ApiToken(Base):
    """A named bearer token of one user; the plaintext is shown once and never stored."""

    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the plaintext
    prefix: Mapped[str] = mapped_column(String(16))  # its first characters, to tell tokens apart on screen
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    # Refused from this moment (401 token_expired): chosen at issue, at most JZFLOW_TOKEN_MAX_DAYS ahead.
    expires_at: Mapped[datetime] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    # What it may do (engine/org/tokens.py SCOPES), chosen at issue: "read" (GET, HEAD, OPTIONS) or "read_write"
    # (all its owner may); tokens from before migration 0035, or issued by the old code during the upgrade, are
    # read_write (the server default), the power they always had.
    scope: Mapped[str] = mapped_column(String(20), server_default="read_write")


class IdempotencyRecord(Base):
    """The first answer to an API POST sent with an `Idempotency-Key`, written in the same transaction as
    its work: a commit holds both or neither, so a retried request gets the first result, never a second run."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_record_user_id_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path and body
    status: Mapped[int] = mapped_column()
    body: Mapped[str] = mapped_column(Text)  # the JSON answered
    created_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)
