"""Issued documents (certificates with a number and a verification code) and the per-year number sequences."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from engine import clock
from engine.orm import Base


class DocumentSequence(Base):
    """The last number issued under one rule in one year: the row an issuer locks, so numbers have no gap."""

    __tablename__ = "document_sequence"
    __table_args__ = (UniqueConstraint("rule", "year", name="uq_document_sequence_rule_year"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(80))
    year: Mapped[int] = mapped_column(Integer)
    last: Mapped[int] = mapped_column(Integer, default=0)


class IssuedDocument(Base):
    """A document the engine issued for an instance: its number, verification code and the facts it certifies."""

    __tablename__ = "issued_document"
    __table_args__ = (UniqueConstraint("instance_id", "kind", name="uq_issued_document_instance_kind"),
                      UniqueConstraint("rule", "year", "seq", name="uq_issued_document_rule_year_seq"),
                      UniqueConstraint("number", name="uq_issued_document_number"),
                      UniqueConstraint("verify_code", name="uq_issued_document_verify_code"))
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    kind: Mapped[str] = mapped_column(String(80))  # the layout it is printed with
    rule: Mapped[str] = mapped_column(String(80))  # the numbering rule's name
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(120))
    verify_code: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(300))  # what it certifies (the undertaking's name)
    issuers: Mapped[list[str]] = mapped_column(JSON, default=list)  # the issuing departments
    issued_on: Mapped[date] = mapped_column(Date)
    issued_at: Mapped[datetime] = mapped_column(default=clock.now)
    issued_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    details: Mapped[Any | None] = mapped_column(JSON)  # the layout's own facts (not shown by /verify)
    # The file as issued, made once when the document is issued and served as is on every download, and its SHA-256
    # (hex), which /verify shows and compares an uploaded copy with. NULL for documents issued before migration 0040:
    # those were printed anew on each download, so no one file was the issued one.
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    digest: Mapped[str | None] = mapped_column(String(64))
