"""The 审批单 (approval sheet): an instance's every finished step in order, for those who may read the whole sheet.

Until it is issued it prints on demand, as a working copy (no number, no verification code, dated the day printed).
An application issues it (`issue`, e.g. with a 并联审批's 联合意见书 at 联合出证) as a document of its own, through
the same machinery as every issued document (`core.issue`, `render.make_file`): a number of its rule, a verification
code, printed once with every step finished by then and the step whose completion runs the issuing service (its
completion is saved after the run: `submissions.completing_now` adds it as it will read, with the numbers the run
issued before the sheet, e.g. the 联合意见书's), its bytes and SHA-256 kept, the digest audited in
`document.issue`; from then on every download of the sheet is that file, and /verify shows its public facts (number,
subject, date, issuers, digest: never a step) and compares a copy. Unlike other documents it is internal
(`core.SHEET_KIND`): an applicant from outside, who sees the instance, neither downloads it nor sees it listed.
"""
from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from engine import clock
from engine.documents import core, numbering, pdf, render
from engine.documents.models import IssuedDocument
from engine.org.actors import Actor
from engine.runtime.models import ProcessDefinition, ProcessInstance
from engine.tasks import submissions

KIND = core.SHEET_KIND
TITLE = "审批单"


def _document(session: Session, instance: ProcessInstance, steps: list[submissions.Submission], *, day: date,
              doc: IssuedDocument | None = None, verify_url: str | None = None) -> pdf.Document:
    """Lay out the sheet: facts, every step in order, the instance's other documents' numbers, the seal area."""
    process_name = session.scalar(select(ProcessDefinition.name).where(
        ProcessDefinition.id == instance.definition_id)) or ""
    docs = [d for d in core.for_instance(session, instance.id) if d.kind != KIND]
    started = clock.as_utc(instance.started_at).astimezone(clock.SHANGHAI)
    facts = [("流程", process_name), ("事项", instance.title), ("流程编号", str(instance.id))]
    if instance.business_key:
        facts.append(("业务编号", instance.business_key))
    facts.append(("发起时间", started.strftime("%Y-%m-%d %H:%M")))
    facts += [(d.title, d.number) for d in docs]
    sections = []
    for n, step in enumerate(steps, 1):
        at = step.at.astimezone(clock.SHANGHAI).strftime("%Y-%m-%d %H:%M") if step.at else ""
        sections.append(pdf.Section(heading=f"{n}. {step.name}", meta=f"办理人：{step.actor}　办理时间：{at}",
                                    fields=step.fields, opinions=step.opinions,
                                    opinion_label="申请说明" if step.by_applicant else "审批意见",
                                    note="（此步骤其后被退回或撤回，已重新办理）" if step.superseded else ""))
    issuers = list(doc.issuers) if doc is not None else [i for d in docs for i in d.issuers]
    seal = pdf.Seal(issuers or ["经办单位"], render.chinese_date(day.year, day.month, day.day))
    footer = f"{process_name} · {instance.title}"
    if doc is None:
        return pdf.Document(title=f"{TITLE} · {instance.title}", facts=facts, sections=sections, seal=seal,
                            footer=footer)
    return pdf.Document(title=f"{TITLE} · {instance.title}", number=doc.number, facts=facts, sections=sections,
                        seal=seal, verify_code=core.display_code(doc.verify_code), verify_url=verify_url,
                        footer=f"{doc.number} · {footer}")


@render.layout(KIND)
def issued_layout(inp: render.LayoutInput) -> pdf.Document:
    """The issued sheet: every step finished when it was issued (`render.make_file` gives them), with its code."""
    session = object_session(inp.doc)  # the issuing step's, which holds the document being issued
    assert session is not None
    return _document(session, inp.instance, inp.steps, day=inp.doc.issued_on, doc=inp.doc, verify_url=inp.verify_url)


def issued(session: Session, instance_id: int) -> IssuedDocument | None:
    """Return the instance's issued sheet, if it has one (no access check)."""
    return session.scalar(select(IssuedDocument).where(IssuedDocument.instance_id == instance_id,
                                                       IssuedDocument.kind == KIND))


def sheet_document(session: Session, actor: Actor, instance_id: int) -> pdf.Document:
    """Build the instance's 审批单 as a working copy, dated today.

    Raises: Forbidden (not allowed to read the whole sheet), NotFound
    """
    steps = submissions.approval_sheet(session, actor, instance_id)
    instance = session.get(ProcessInstance, instance_id)
    assert instance is not None  # approval_sheet found it
    return _document(session, instance, steps, day=clock.now().astimezone(clock.SHANGHAI).date())


def sheet_pdf(session: Session, actor: Actor, instance_id: int) -> bytes:
    """Return the instance's 审批单 as PDF: the issued file once it is issued, else a working copy.

    Raises: Forbidden, NotFound, FontMissing
    """
    submissions.approval_sheet(session, actor, instance_id)  # the access check, before anything is read
    doc = issued(session, instance_id)
    if doc is not None and doc.pdf is not None:
        return doc.pdf
    return pdf.render(sheet_document(session, actor, instance_id))


def issue(session: Session, *, instance_id: int, rule: numbering.NumberRule, subject: str, issuers: list[str],
          issued_on: date, actor: Actor) -> IssuedDocument:
    """Issue the instance's 审批单 with the rule's next number (once; `core.issue`), printed with every step so far.

    Raises: InvalidInput (an empty subject), FontMissing
    """
    return core.issue(session, instance_id=instance_id, kind=KIND, rule=rule, title=TITLE, subject=subject,
                      issuers=issuers, issued_on=issued_on, actor=actor)


__all__ = ["KIND", "TITLE", "issue", "issued", "issued_layout", "sheet_document", "sheet_pdf"]
