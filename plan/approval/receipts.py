"""受理凭证: the written receipt the window gives when it accepts (受理通知书) or does not accept (不予受理决定书).

《中华人民共和国行政许可法》第三十二条: accepting or not accepting an application, the authority gives the applicant a
written receipt, sealed and dated; not accepting, it states why, and where the matter is not within its remit it
tells the applicant which authority to apply to. The service tasks after 一窗受理 issue them as the 不予许可决定书 is
issued (`engine.documents.issue`: once per instance, in the step's transaction, a verification code, the file printed
once and its SHA-256 audited), each numbered in its own series: `approval_acceptance` 胶受〔年份〕序号号 and
`approval_not_accepted` 胶不受〔年份〕序号号 by default (JZFLOW_NUMBER_RULES may change them). The window's unit (the
accepting person's) issues them. The 受理通知书 names the 审批时限 the process counts: the slowest chosen department's
SLA in working days from acceptance (`core.time_limit_wd`, the 并联审批 commitment), 补正 time not counted. The
不予受理决定书 prints the window's reasons (`window_opinion`), the authority to apply to when one is named, and the
行政复议/行政诉讼 rights the 不予许可决定书 prints (`rejection.RIGHTS`). Both are the applicant's to download.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy import select

from engine import clock, documents
from engine.documents import pdf, render
from engine.documents.core import MAX_TEXT
from engine.org.models import OrgUnit
from engine.runtime import effects
from plan.approval import core, facts
from plan.approval.certificate import STAGES
from plan.approval.rejection import RIGHTS
from plan.dates import require_not_past
from plan.projects import fields

ACCEPTANCE_RULE = "approval_acceptance"
ACCEPTANCE_TEMPLATE = "胶受〔{year}〕{seq:04d}号"  # to confirm with the city, like 胶不许
ACCEPTANCE_KIND = "approval_acceptance_notice"
ACCEPTANCE_TITLE = "受理通知书"
ACCEPTANCE_SERVICE = "approval_issue_acceptance_notice"
NOT_ACCEPTED_RULE = "approval_not_accepted"
NOT_ACCEPTED_TEMPLATE = "胶不受〔{year}〕{seq:04d}号"  # to confirm with the city
NOT_ACCEPTED_KIND = "approval_not_accepted_notice"
NOT_ACCEPTED_TITLE = "不予受理决定书"
NOT_ACCEPTED_SERVICE = "approval_issue_not_accepted_notice"
WINDOW_UNIT = "行政审批服务局"  # the 一窗受理 window's unit, when the accepting person belongs to none
MODES = {"accept": "受理（材料齐全）", "accept_deferred": "容缺受理"}
ACCEPTANCE_BASIS = "根据《中华人民共和国行政许可法》第三十二条的规定，特此通知。"
NOT_ACCEPTED_BASIS = "根据《中华人民共和国行政许可法》第三十二条第一款的规定，作出本决定。"


def _window_unit(ctx: effects.RunContext) -> str:
    """The unit the window person acts for: their org unit (the first by code), else the 行政审批服务局."""
    if not ctx.actor.org_unit_ids:
        return WINDOW_UNIT
    name = ctx.session.scalar(select(OrgUnit.name).where(OrgUnit.id.in_(ctx.actor.org_unit_ids))
                              .order_by(OrgUnit.code).limit(1))
    return str(name or WINDOW_UNIT)


def _today() -> date:
    return clock.now().astimezone(clock.SHANGHAI).date()


def _project(ctx: effects.RunContext, service: str, project_name: str, applicant_unit: str, stage: str,
             project_code: str) -> dict[str, str]:
    """The project as recorded (`facts.project`), cut to the document's lengths.

    Raises: ValueError naming a parameter no record backs
    """
    found = facts.project(ctx, service, {"project_name": project_name, "project_code": project_code, "stage": stage,
                                         "applicant_unit": applicant_unit})
    return {key: value[:MAX_TEXT] for key, value in found.items()}


def _window(ctx: effects.RunContext, service: str, parameter: str, key: str, given: str) -> str:
    """The value the window submitted under `key` on its last 一窗受理, which the diagram's `given` must be.

    Raises: ValueError naming `parameter` (no such step, or another value)
    """
    written = facts.last_submitted(ctx, facts.WINDOW_TASK)
    value = str((written or {}).get(key) or "").strip()
    if written is None or value != str(given or "").strip():
        raise facts.refuse(service, parameter, "the window submitted no such value on 一窗受理")
    return value


def _departments(service: str, ctx: effects.RunContext, departments: list[Any]) -> list[str]:
    """The names of the departments to review, each an org unit of the city (its recorded name, not the diagram's).

    Raises: ValueError naming departments (a code that is no unit)
    """
    names = []
    for index, item in enumerate(departments[:core.MAX_DEPARTMENTS]):
        code = str(item.get("code") or "") if isinstance(item, Mapping) else ""
        name = ctx.session.scalar(select(OrgUnit.name).where(OrgUnit.code == code)) if code else None
        if name is None:
            raise facts.refuse(service, "departments", f"item {index} ({code}) is no department of the city")
        names.append(str(name)[:MAX_TEXT])
    return names


@effects.service(ACCEPTANCE_SERVICE)
def issue_acceptance_notice(ctx: effects.RunContext, project_name: str, acceptance: str, departments: list[Any],
                            applicant_unit: str = "", stage: str = "", project_code: str = "",
                            commitment_deadline: str = "") -> dict[str, Any]:
    """Issue the instance's 受理通知书 with the next 胶受 number (once per instance) and return its number.

    The project, the window's decision and the departments are the recorded ones (`facts`), never the diagram's.

    Raises: ValueError (not an acceptance, no departments, a parameter no record backs, naming it), InvalidInput (an
    empty subject, a bad number rule)
    """
    if acceptance not in MODES:
        raise ValueError(f"acceptance '{acceptance}' is not one of {sorted(MODES)}")
    project = _project(ctx, ACCEPTANCE_SERVICE, project_name, applicant_unit, stage, project_code)
    _window(ctx, ACCEPTANCE_SERVICE, "acceptance", "acceptance", acceptance)
    if acceptance == "accept_deferred":
        _window(ctx, ACCEPTANCE_SERVICE, "commitment_deadline", "commitment_deadline", commitment_deadline)
    names = _departments(ACCEPTANCE_SERVICE, ctx, departments)
    if acceptance == "accept_deferred":  # its timer would fire at once: the form goes back to the window, named
        require_not_past(fields.day(commitment_deadline, "commitment_deadline"), field="commitment_deadline",
                         name="承诺补交期限")
    limit = core.time_limit_wd(departments)
    unit = _window_unit(ctx)
    doc = documents.issue(
        ctx.session, instance_id=ctx.running.row.id, kind=ACCEPTANCE_KIND,
        rule=documents.rule(ACCEPTANCE_RULE, ACCEPTANCE_TEMPLATE), title=ACCEPTANCE_TITLE,
        subject=project.pop("project_name"), issuers=[unit], issued_on=_today(), actor=ctx.actor,
        details={**project, "mode": acceptance, "time_limit_wd": limit, "departments": names,
                 "commitment_deadline": str(commitment_deadline or "")[:20] if acceptance == "accept_deferred"
                 else ""})
    return {"number": doc.number, "document_id": doc.id, "issued_on": doc.issued_on.isoformat(),
            "time_limit_wd": limit}


@effects.service(NOT_ACCEPTED_SERVICE)
def issue_not_accepted_notice(ctx: effects.RunContext, project_name: str, reasons: str, refer_to: str = "",
                              applicant_unit: str = "", stage: str = "", project_code: str = "") -> dict[str, Any]:
    """Issue the instance's 不予受理决定书 with the next 胶不受 number (once per instance) and return its number.

    The project and the window's reasons are the recorded ones (`facts`), never the diagram's.

    Raises: ValueError (no reasons, a parameter no record backs, naming it), InvalidInput (an empty subject, a bad
    number rule)
    """
    if not str(reasons or "").strip():
        raise ValueError("a decision not to accept states its reasons (window_opinion is empty)")
    project = _project(ctx, NOT_ACCEPTED_SERVICE, project_name, applicant_unit, stage, project_code)
    _window(ctx, NOT_ACCEPTED_SERVICE, "acceptance", "acceptance", "reject")
    reasons = _window(ctx, NOT_ACCEPTED_SERVICE, "reasons", "window_opinion", reasons)
    refer_to = _window(ctx, NOT_ACCEPTED_SERVICE, "refer_to", "refer_authority", refer_to) if refer_to else ""
    doc = documents.issue(
        ctx.session, instance_id=ctx.running.row.id, kind=NOT_ACCEPTED_KIND,
        rule=documents.rule(NOT_ACCEPTED_RULE, NOT_ACCEPTED_TEMPLATE), title=NOT_ACCEPTED_TITLE,
        subject=project.pop("project_name"), issuers=[_window_unit(ctx)], issued_on=_today(), actor=ctx.actor,
        details={**project, "reasons": reasons[:pdf.MAX_FIELD_TEXT], "refer_to": refer_to[:MAX_TEXT]})
    return {"number": doc.number, "document_id": doc.id, "issued_on": doc.issued_on.isoformat()}


def _facts(doc: documents.IssuedDocument, details: Mapping[str, Any], stage: str) -> list[tuple[str, str]]:
    facts = [("项目名称", doc.subject)]
    if details.get("project_code"):
        facts.append(("项目代码", str(details["project_code"])))
    if details.get("applicant_unit"):
        facts.append(("申请单位", str(details["applicant_unit"])))
    return [*facts, ("申请事项", f"{stage}并联审批")]


def _parts(inp: render.LayoutInput) -> tuple[Mapping[str, Any], str, str, str]:
    doc = inp.doc
    details = doc.details if isinstance(doc.details, Mapping) else {}
    stage = STAGES.get(str(details.get("stage") or ""), str(details.get("stage") or ""))
    day = render.chinese_date(doc.issued_on.year, doc.issued_on.month, doc.issued_on.day)
    return details, stage, day, str(details.get("applicant_unit") or "申请单位")


def _day(iso: str) -> str:
    """A date as printed (2025年10月10日), or the text as given when it is not one."""
    try:
        day = date.fromisoformat(iso)
    except ValueError:
        return iso
    return render.chinese_date(day.year, day.month, day.day)


def _document(inp: render.LayoutInput, facts: list[tuple[str, str]], paragraphs: list[str], day: str) -> pdf.Document:
    doc = inp.doc
    return pdf.Document(
        title=doc.title, number=doc.number, facts=facts, paragraphs=paragraphs, seal=pdf.Seal(doc.issuers, day),
        verify_code=documents.display_code(doc.verify_code), verify_url=inp.verify_url,
        footer=f"{doc.number} · 胶州市并联审批")


@render.layout(ACCEPTANCE_KIND)
def acceptance_notice(inp: render.LayoutInput) -> pdf.Document:
    """Lay out the 受理通知书: to the applicant, what was accepted, when, the time limit, the seal area."""
    doc = inp.doc
    details, stage, day, applicant = _parts(inp)
    limit, unit = int(details.get("time_limit_wd") or 0), "、".join(doc.issuers)
    departments = "、".join(str(d) for d in details.get("departments") or [])
    mode = MODES.get(str(details.get("mode") or ""), "")
    facts = [*_facts(doc, details, stage), ("受理方式", mode), ("受理日期", day),
             ("审批时限", f"自受理之日起{limit}个工作日"), ("审批部门", departments), ("受理窗口", unit)]
    paragraphs = [f"{applicant}：",
                  f"你单位报送的“{doc.subject}”{stage}并联审批申请，经审查，本机关决定{mode or '受理'}。",
                  f"本申请由{departments}并联审查，审批时限为自受理之日起{limit}个工作日（法定节假日不计；"
                  "补正材料的时间不计入审批时限）。"]
    if details.get("commitment_deadline"):
        paragraphs.append(f"请于{_day(str(details['commitment_deadline']))}24时前补交容缺材料；逾期未补交的，由责任领导"
                          "决定延长承诺期限或者终止审批。")
    return _document(inp, facts, [*paragraphs, ACCEPTANCE_BASIS], day)


@render.layout(NOT_ACCEPTED_KIND)
def not_accepted_notice(inp: render.LayoutInput) -> pdf.Document:
    """Lay out the 不予受理决定书: to the applicant, the decision and its reasons, the rights notice, the seal area."""
    doc = inp.doc
    details, stage, day, applicant = _parts(inp)
    unit = "、".join(doc.issuers)
    facts = [*_facts(doc, details, stage), ("决定", "不予受理"), ("作出决定的机关", unit), ("决定日期", day)]
    paragraphs = [f"{applicant}：",
                  f"你单位报送的“{doc.subject}”{stage}并联审批申请，经审查，本机关决定不予受理。理由如下：",
                  str(details.get("reasons") or "")]
    if details.get("refer_to"):
        paragraphs.append(f"该申请事项依法不属于本机关职权范围，请向{details['refer_to']}申请。")
    return _document(inp, facts, [*paragraphs, NOT_ACCEPTED_BASIS, RIGHTS], day)


__all__ = ["ACCEPTANCE_KIND", "ACCEPTANCE_RULE", "ACCEPTANCE_TEMPLATE", "ACCEPTANCE_TITLE", "NOT_ACCEPTED_KIND",
           "NOT_ACCEPTED_RULE", "NOT_ACCEPTED_TEMPLATE", "NOT_ACCEPTED_TITLE", "acceptance_notice",
           "issue_acceptance_notice", "issue_not_accepted_notice", "not_accepted_notice"]
