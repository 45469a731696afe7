"""不予许可决定书: the written decision a 并联审批 ends with when a department disapproves (出具不予许可决定).

《中华人民共和国行政许可法》第三十八条: a decision not to grant a licence is made in writing, states its reasons and
tells the applicant of the right to 申请行政复议 or 提起行政诉讼. The service task after 出具不予许可决定 issues it
as the 联合意见书 is issued after 联合出证 (`engine.documents.issue`: once per instance, in the step's transaction, a
verification code, the file printed once and its SHA-256 audited), numbered in its own series: the rule
`approval_rejection`, 胶不许〔年份〕序号号 by default (JZFLOW_NUMBER_RULES may change it). The document prints the
project and applicant, the 事项, the decision, the reasons the window wrote (the form's `notice_text`), each
disapproving department's opinion, the rights notice (行政复议 within 60 days, 行政诉讼 within 6 months), the
deciding departments and the date. It is not internal: the applicant downloads it like the certificate.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine import clock, documents
from engine.documents import pdf, render
from engine.documents.core import MAX_TEXT
from engine.runtime import effects
from plan.approval import facts
from plan.approval.certificate import STAGES

RULE = "approval_rejection"
DEFAULT_TEMPLATE = "胶不许〔{year}〕{seq:04d}号"  # a series of its own, like 胶审单 beside 胶审: to confirm with the city
KIND = "approval_rejection_notice"
SERVICE = "approval_issue_rejection_notice"
TITLE = "不予许可决定书"
MAX_DEPARTMENTS = 50
BASIS = "根据《中华人民共和国行政许可法》第三十八条第二款的规定，作出本决定。"
RIGHTS = ("如不服本决定，你单位可以自知道或者应当知道本决定之日起六十日内，依照《中华人民共和国行政复议法》的规定"
          "申请行政复议；也可以自知道或者应当知道本决定之日起六个月内，依照《中华人民共和国行政诉讼法》第四十六条的"
          "规定向人民法院提起行政诉讼。")


def _disapprovals(ctx: effects.RunContext, value: object) -> list[dict[str, str]]:
    """The disapproving departments (name, opinion) as their members submitted them (`facts.reviews`), each once.

    Raises: ValueError naming disapprovals (an item no recorded disapproval backs, or none)
    """
    found = facts.require_reviews(SERVICE, "disapprovals", value, facts.reviews(ctx), decision="disapprove")
    return [{"name": r.name[:MAX_TEXT], "opinion": r.opinion[:pdf.MAX_FIELD_TEXT]} for r in found][:MAX_DEPARTMENTS]


def _reasons(ctx: effects.RunContext, reasons: str) -> str:
    """The reasons as the window wrote them on 出具不予许可决定 (its last completion).

    Raises: ValueError naming reasons (no such step, or other words)
    """
    written = facts.last_submitted(ctx, facts.REJECTION_TASK)
    if written is None or str(written.get("notice_text") or "").strip() != str(reasons or "").strip():
        raise facts.refuse(SERVICE, "reasons", "the window wrote no such reasons on 出具不予许可决定")
    return str(reasons).strip()


@effects.service(SERVICE)
def issue_rejection_notice(ctx: effects.RunContext, project_name: str, reasons: str, disapprovals: list[Any],
                           applicant_unit: str = "", stage: str = "", project_code: str = "") -> dict[str, Any]:
    """Issue the instance's 不予许可决定书 with the next 胶不许 number (once per instance) and return its number.

    The project, the departments, their opinions and the reasons are the recorded ones (`facts`), never the diagram's.

    Raises: ValueError (a parameter no record backs, naming it), InvalidInput (an empty subject, a bad number rule)
    """
    project = facts.project(ctx, SERVICE, {"project_name": project_name, "project_code": project_code,
                                           "stage": stage, "applicant_unit": applicant_unit})
    departments = _disapprovals(ctx, disapprovals)
    reasons = _reasons(ctx, reasons)
    day = clock.now().astimezone(clock.SHANGHAI).date()
    doc = documents.issue(
        ctx.session, instance_id=ctx.running.row.id, kind=KIND, rule=documents.rule(RULE, DEFAULT_TEMPLATE),
        title=TITLE, subject=project["project_name"], issuers=[d["name"] for d in departments], issued_on=day,
        actor=ctx.actor, details={"applicant_unit": project["applicant_unit"][:MAX_TEXT], "stage": project["stage"],
                                  "project_code": project["project_code"][:MAX_TEXT],
                                  "reasons": reasons[:pdf.MAX_FIELD_TEXT], "disapprovals": departments})
    return {"number": doc.number, "document_id": doc.id, "issued_on": doc.issued_on.isoformat()}


@render.layout(KIND)
def rejection_notice(inp: render.LayoutInput) -> pdf.Document:
    """Lay out the 不予许可决定书: to the applicant, the decision and its reasons, the rights notice, the seal area."""
    doc = inp.doc
    details = doc.details if isinstance(doc.details, Mapping) else {}
    stage = STAGES.get(str(details.get("stage") or ""), str(details.get("stage") or ""))
    applicant = str(details.get("applicant_unit") or "")
    issuers = "、".join(doc.issuers)
    day = render.chinese_date(doc.issued_on.year, doc.issued_on.month, doc.issued_on.day)
    facts = [("项目名称", doc.subject)]
    if details.get("project_code"):
        facts.append(("项目代码", str(details["project_code"])))
    if applicant:
        facts.append(("申请单位", applicant))
    facts += [("申请事项", f"{stage}并联审批"), ("决定", "不予许可"), ("作出决定的部门", issuers), ("决定日期", day)]
    paragraphs = [f"{applicant or '申请单位'}：",
                  f"你单位报送的“{doc.subject}”{stage}并联审批申请，经{issuers}依法审查，决定不予许可。理由如下：",
                  str(details.get("reasons") or "")]
    paragraphs += [f"{d.get('name')}审查意见：{d.get('opinion')}" for d in details.get("disapprovals") or []
                   if isinstance(d, Mapping) and d.get("opinion")]
    return pdf.Document(
        title=TITLE, number=doc.number, facts=facts, paragraphs=[*paragraphs, BASIS, RIGHTS],
        seal=pdf.Seal(doc.issuers, day), verify_code=documents.display_code(doc.verify_code),
        verify_url=inp.verify_url, footer=f"{doc.number} · 胶州市并联审批")


__all__ = ["DEFAULT_TEMPLATE", "KIND", "RULE", "TITLE", "issue_rejection_notice", "rejection_notice"]
