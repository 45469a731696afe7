"""Documents as PDF, after the access check: an issued document in its kind's layout, and an instance's 审批单.

An application registers a layout per document kind (`layout`); a kind without one prints in the generic layout
(title, number, facts, issuers, seal area, verification code). An issued document is printed once, when it is issued
(`make_file`): every download is that file, byte for byte, so the digest /verify shows is the one of every copy. Its
layout gets no steps then (one file goes to every reader, the applicant included) and the verification link of
JZFLOW_PUBLIC_URL (`core.verify_link`). Documents issued before files were kept are printed on each download, as
before. The 审批单 (approval sheet, `engine.documents.sheet`) is printed here too once it is issued, with every step
finished by then; only whoever may read the whole sheet (`submissions.approval_sheet`) downloads it.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import extensions
from engine.documents import core, pdf
from engine.documents.models import IssuedDocument
from engine.errors import NotFound
from engine.org.actors import SYSTEM, Actor
from engine.runtime.models import ProcessInstance
from engine.tasks import access, submissions


@dataclass(frozen=True)
class LayoutInput:
    doc: IssuedDocument
    instance: ProcessInstance
    steps: list[submissions.Submission]  # the finished steps the reader may see (none in an issued file)
    verify_url: str | None


Layout = Callable[[LayoutInput], pdf.Document]
LAYOUTS: dict[str, Layout] = {}


def layout(kind: str) -> Callable[[Layout], Layout]:
    """Register the layout of a document kind (an application's own document)."""
    def register(fn: Layout) -> Layout:
        LAYOUTS[kind] = fn
        return fn
    return register


def generic(inp: LayoutInput) -> pdf.Document:
    """Print a document with its public facts, the seal area and the verification code."""
    doc = inp.doc
    return pdf.Document(
        title=doc.title, number=doc.number,
        facts=[("事项", doc.subject), ("出具日期", doc.issued_on.isoformat()), ("出具单位", "、".join(doc.issuers))],
        seal=pdf.Seal(doc.issuers, chinese_date(doc.issued_on.year, doc.issued_on.month, doc.issued_on.day)),
        verify_code=core.display_code(doc.verify_code), verify_url=inp.verify_url, footer=doc.number)


def chinese_date(year: int, month: int, day: int) -> str:
    return f"{year}年{month}月{day}日"


def _instance(session: Session, actor: Actor, instance_id: int) -> ProcessInstance:
    access.require_view(session, actor, instance_id)
    instance = session.get(ProcessInstance, instance_id)
    if instance is None:
        raise access.not_found(instance_id)
    return instance


def issued_pdf(session: Session, actor: Actor, instance_id: int, doc_id: int,
               verify_url: Callable[[str], str] | None = None) -> tuple[IssuedDocument, bytes]:
    """Return an issued document of the instance and its PDF, for whoever may see the instance (the 审批单: whoever
    may read the whole sheet).

    Raises: Forbidden, NotFound (no such document on this instance), FontMissing
    """
    instance = _instance(session, actor, instance_id)
    doc = session.scalar(select(IssuedDocument).where(IssuedDocument.id == doc_id,
                                                      IssuedDocument.instance_id == instance_id))
    if doc is None:
        raise NotFound(f"文书不存在 (no such document): {doc_id}", document_id=doc_id)
    if doc.kind == core.SHEET_KIND:  # internal: only for whoever may read the whole sheet
        submissions.approval_sheet(session, actor, instance_id)
    if doc.pdf is not None:
        return doc, doc.pdf  # the issued file itself, whoever reads it and whenever
    inp = LayoutInput(doc=doc, instance=instance, steps=submissions.for_instance(session, actor, instance_id),
                      verify_url=verify_url(core.display_code(doc.verify_code)) if verify_url else None)
    return doc, pdf.render(_layout(doc.kind)(inp))


def make_file(session: Session, doc: IssuedDocument) -> None:
    """Print a document being issued, once: keep the file and its SHA-256 on the row (flush is the caller's).

    Raises: FontMissing (the issuing step then fails, and is retried once a font is installed)
    """
    instance = session.get(ProcessInstance, doc.instance_id)
    if instance is None:
        raise access.not_found(doc.instance_id)
    # The 审批单 is every step finished by now, whoever issues it, and the step whose completion issues it (联合出证:
    # saved after this run); any other document holds no step
    steps = [*submissions.approval_sheet(session, SYSTEM, doc.instance_id),
             *submissions.completing_now(session, doc.instance_id)] if doc.kind == core.SHEET_KIND else []
    inp = LayoutInput(doc=doc, instance=instance, steps=steps, verify_url=core.verify_link(doc.verify_code))
    body = pdf.render(_layout(doc.kind)(inp))
    doc.pdf, doc.digest = body, hashlib.sha256(body).hexdigest()


def _layout(kind: str) -> Layout:
    from engine.documents import sheet  # noqa: F401 (registers the 审批单's layout; it prints with this module)
    extensions.load()
    from engine.runtime import effects
    effects.load_all()  # the application's layouts are registered where its services are
    return LAYOUTS.get(kind, generic)


__all__ = ["LAYOUTS", "Layout", "LayoutInput", "chinese_date", "generic", "issued_pdf", "layout", "make_file"]
