"""联合意见书: the joint certificate of a 并联审批, numbered by the engine when the window issues it (联合出证).

The number follows the city's rule 胶审〔年份〕序号号 (e.g. 胶审〔2026〕0001号): a per-year sequence, four digits
zero-padded, gap-free and unique (`engine.documents.numbering`); JZFLOW_NUMBER_RULES may change the template of
the rule `approval_certificate` (e.g. ``{"approval_certificate": "胶审〔{year}〕{seq:05d}号"}``). Nobody types a
number: the service task after 联合出证 issues it, stores it with a verification code, audits it, and puts it in the
instance's data (`certificate`). The layout prints the departments' review opinions, the seal area (盖章处) for the
issuing departments, and the verification code with the public address that checks it. The instance's 审批单 is
issued with it (its own rule `approval_sheet`, 胶审单〔年份〕序号号), so a printed sheet is checked at /verify too.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from engine import clock, documents
from engine.documents import pdf, render, sheet
from engine.errors import InvalidInput
from engine.runtime import effects
from plan.approval import facts

RULE = "approval_certificate"
DEFAULT_TEMPLATE = "胶审〔{year}〕{seq:04d}号"
SHEET_RULE = "approval_sheet"  # the 审批单 issued with it (engine.documents.sheet), numbered apart
SHEET_TEMPLATE = "胶审单〔{year}〕{seq:04d}号"
KIND = "approval_joint_certificate"
SERVICE = "approval_issue_certificate"
STAGES = {"land_planning": "立项用地规划许可", "construction_works": "工程建设许可",
          "construction_permit": "施工许可", "completion_acceptance": "竣工验收"}
DECISIONS = {"approve": "同意", "supplement": "补正", "disapprove": "不同意"}


def _latest_reviews(review_log: object) -> list[Any]:
    """Each department's last entry of the review log (the round that decided), in the order they first reviewed."""
    latest: dict[str, Any] = {}
    for item in review_log if isinstance(review_log, Sequence) and not isinstance(review_log, str) else []:
        latest[str(item.get("code")) if isinstance(item, Mapping) else f"#{len(latest)}"] = item
    return list(latest.values())


def _approvals(ctx: effects.RunContext, departments: object, review_log: object) -> list[facts.Review]:
    """The departments' reviews the certificate prints: every department's last recorded review, each an approval.

    Raises: ValueError naming departments or review_log (a department that did not approve, an opinion rewritten)
    """
    recorded = facts.reviews(ctx)
    approved = facts.require_reviews(SERVICE, "departments", departments, recorded, decision="approve")
    if {r.code for r in approved} != set(recorded):
        raise facts.refuse(SERVICE, "departments", "not every department that reviewed approved")
    logged = facts.require_reviews(SERVICE, "review_log", _latest_reviews(review_log), recorded, decision="approve")
    if {r.code for r in logged} != set(recorded):
        raise facts.refuse(SERVICE, "review_log", "it leaves out a department's review")
    return approved


def _issue_day(ctx: effects.RunContext, issued_on: str) -> date:
    """Return the 出证日期 the window typed: from the day the application was made up to today (Asia/Shanghai).

    Raises: InvalidInput naming issued_on (a slip of the year numbered the certificate in a closed year's series)
    """
    day = date.fromisoformat(issued_on)
    applied = clock.as_utc(ctx.running.row.started_at).astimezone(clock.SHANGHAI).date()
    today = clock.now().astimezone(clock.SHANGHAI).date()
    if day < applied:
        raise InvalidInput(f"出证日期 {day} 早于申请日期 {applied} ({day} is before the application day {applied})",
                           field="issued_on")
    if day > today:
        raise InvalidInput(f"出证日期 {day} 晚于今天 {today} ({day} is after today, {today})", field="issued_on")
    return day


@effects.service(SERVICE)
def issue_certificate(ctx: effects.RunContext, project_name: str, issued_on: str, departments: list[Any],
                      review_log: list[Any], applicant_unit: str = "", stage: str = "",
                      project_code: str = "") -> dict[str, Any]:
    """Issue the instance's 联合意见书 with the next 胶审 number (once per instance) and return its number.

    The project, the departments and their opinions are the recorded ones (`facts`), never the diagram's.

    Raises: ValueError (a parameter no record backs, naming it; a malformed date), InvalidInput (a date before the
    application or still to come, a bad number rule)
    """
    day = _issue_day(ctx, issued_on)
    project = facts.project(ctx, SERVICE, {"project_name": project_name, "project_code": project_code,
                                           "stage": stage, "applicant_unit": applicant_unit})
    reviews = _approvals(ctx, departments, review_log)
    issuers = [r.name for r in reviews]
    project_name = project["project_name"]
    doc = documents.issue(
        ctx.session, instance_id=ctx.running.row.id, kind=KIND, rule=documents.rule(RULE, DEFAULT_TEMPLATE),
        title="并联审批联合意见书", subject=project_name, issuers=issuers, issued_on=day, actor=ctx.actor,
        details={"applicant_unit": project["applicant_unit"], "stage": project["stage"],
                 "project_code": project["project_code"],
                 "reviews": [{"code": r.code, "name": r.name, "decision": r.decision, "opinion": r.opinion,
                              "round": r.round} for r in reviews]})
    # the 审批单 behind it, every step to 联合出证, issued with it: a printed copy is checked at /verify like it
    issued_sheet = sheet.issue(ctx.session, instance_id=ctx.running.row.id, rule=documents.rule(SHEET_RULE,
                                                                                               SHEET_TEMPLATE),
                               subject=project_name, issuers=issuers, issued_on=day, actor=ctx.actor)
    return {"number": doc.number, "document_id": doc.id, "issued_on": doc.issued_on.isoformat(),
            "sheet_number": issued_sheet.number, "sheet_document_id": issued_sheet.id}


@render.layout(KIND)
def joint_certificate(inp: render.LayoutInput) -> pdf.Document:
    """Lay out the 联合意见书: to the applicant, the departments' opinions, the seal area, the verification code."""
    doc = inp.doc
    details = doc.details if isinstance(doc.details, Mapping) else {}
    stage = STAGES.get(str(details.get("stage") or ""), str(details.get("stage") or ""))
    applicant = str(details.get("applicant_unit") or "")
    issuers = "、".join(doc.issuers)
    facts = [("项目名称", doc.subject)]
    if details.get("project_code"):
        facts.append(("项目代码", str(details["project_code"])))
    if applicant:
        facts.append(("申请单位", applicant))
    if stage:
        facts.append(("审批阶段", stage))
    facts += [("审批部门", issuers), ("出证日期", render.chinese_date(doc.issued_on.year, doc.issued_on.month,
                                                                  doc.issued_on.day))]
    paragraphs = [f"{applicant or '申请单位'}：",
                  f"你单位报送的“{doc.subject}”{stage}并联审批申请，经{issuers}并联审查，各部门均出具同意意见。"
                  "现出具本联合意见书，请据此办理后续手续。"]
    reviews = [r for r in details.get("reviews") or [] if isinstance(r, Mapping)]
    sections = [pdf.Section(heading=str(r.get("name")), meta=f"审查结论：{DECISIONS.get(str(r.get('decision')), '')}",
                            opinions=[str(r.get("opinion"))] if r.get("opinion") else [])
                for r in reviews]
    return pdf.Document(
        title=f"{doc.subject}{doc.title}", number=doc.number, facts=facts, paragraphs=paragraphs, sections=sections,
        seal=pdf.Seal(doc.issuers, render.chinese_date(doc.issued_on.year, doc.issued_on.month, doc.issued_on.day)),
        verify_code=documents.display_code(doc.verify_code), verify_url=inp.verify_url,
        footer=f"{doc.number} · 胶州市并联审批")


__all__ = ["DEFAULT_TEMPLATE", "KIND", "RULE", "SHEET_RULE", "SHEET_TEMPLATE", "issue_certificate", "joint_certificate"]
