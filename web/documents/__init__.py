"""Submitted forms and issued documents: the printable 审批单, PDFs, and the public verification page.

- /instances/<id>/sheet        the 审批单 (every finished step's form and opinion, in order), for printing
- /instances/<id>/sheet.pdf    the same as PDF, with the seal area; once issued (a 并联审批's, at 联合出证), the issued
                               file with its number and verification code
- /instances/<id>/documents/<doc>.pdf   an issued document (受理通知书, 不予受理决定书, 联合意见书, 不予许可决定书) with its
                               number and verification code
- /verify/<code>               public: the title, number, subject, date and issuers of the document with this code, and the
                               SHA-256 of the issued file; POST a copy to learn whether it is that file (never kept)

Access is the engine's (`engine.tasks.submissions`, `engine.documents.render`): whoever may not see the instance
gets 404, as for an instance that does not exist; an applicant from outside, who may see it, gets their own steps
and the issued documents, and 403 for the 审批单.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy.orm import Session

from engine import clock, config, documents
from engine.documents import render
from engine.documents import sheet as approval_sheet
from engine.errors import InvalidInput
from engine.tasks import submissions
from web import downloads, guards, links
from web.common import current_actor, db_session
from web.instances import visible_row

bp = Blueprint("documents", __name__)


def _pdf(body: bytes, name: str) -> Response:
    # A download, opened by the reader's PDF viewer: the app's CSP (object-src 'none') would keep a browser's
    # built-in viewer from showing it inline, and a printed certificate comes from a PDF reader anyway.
    response = Response(body, mimetype="application/pdf")
    response.headers["Content-Disposition"] = downloads.disposition(name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.cache_control.private = True
    response.cache_control.no_store = True
    return response


def verify_url(code: str) -> str:
    """Return the public address that checks a verification code."""
    return links.external_url("documents.verify", code=code)


@bp.get("/instances/<int:instance_id>/sheet")
@login_required
def sheet(instance_id: int) -> ResponseReturnValue:
    actor = current_actor()
    row = visible_row(instance_id, actor)
    session = db_session()
    steps = submissions.approval_sheet(session, actor, instance_id)
    issued = documents.for_instance(session, instance_id)
    return render_template("documents/sheet.html", row=row, instance=row.instance, steps=steps, issued=issued,
                           printed_at=clock.now())


@bp.get("/instances/<int:instance_id>/sheet.pdf")
@login_required
def sheet_pdf(instance_id: int) -> ResponseReturnValue:
    actor = current_actor()
    visible_row(instance_id, actor)
    return _pdf(approval_sheet.sheet_pdf(db_session(), actor, instance_id), f"审批单-{instance_id}.pdf")


@bp.get("/instances/<int:instance_id>/documents/<int:doc_id>.pdf")
@login_required
def document_pdf(instance_id: int, doc_id: int) -> ResponseReturnValue:
    actor = current_actor()
    visible_row(instance_id, actor)
    doc, body = render.issued_pdf(db_session(), actor, instance_id, doc_id, verify_url)
    return _pdf(body, f"{doc.number}.pdf")


FORM_ROOM = 64 * 1024  # the multipart framing and the CSRF token around an uploaded copy
MEGABYTES = documents.MAX_CHECKED_FILE // (1024 * 1024)


def _verify_page(status_code: int, *, code: str, status: str, message: str, facts: documents.PublicFacts | None = None,
                 outcome: str | None = None, headers: dict[str, str] | None = None) -> ResponseReturnValue:
    page = render_template("documents/verify.html", facts=facts, code=code, status=status, message=message,
                           outcome=outcome, megabytes=MEGABYTES, good=status_code < 400 and outcome != "different")
    return page, status_code, headers or {}


class _Check:
    """One request's checking: the client's counters (login_failure; `documents.counters`): the address's when
    anonymous, the user's and the address's ceiling when signed in."""

    def __init__(self, code: str) -> None:
        self.session: Session = db_session()
        self.settings = config.load()
        self.now: datetime = clock.now()
        self.counters = documents.counters(
            address=request.remote_addr, user_id=current_user.user.id if current_user.is_authenticated else None,
            address_limit=self.settings.verify_address_failures, user_limit=self.settings.verify_user_failures,
            ceiling=self.settings.verify_address_ceiling)
        self.code = code[:40]

    def limited(self) -> ResponseReturnValue | None:
        wait = documents.verify_wait(self.session, self.counters, now=self.now,
                                     window_seconds=self.settings.login_window_seconds)
        if not wait:
            return None
        minutes = max(1, (wait + 59) // 60)
        return _verify_page(429, code=self.code, status="limited", headers={"Retry-After": str(wait)},
                            message=_("核验次数过多，请%(minutes)s分钟后再试", minutes=minutes))

    def count(self) -> None:
        documents.record_miss(self.session, self.counters, now=self.now,
                              window_seconds=self.settings.login_window_seconds)
        self.session.commit()

    def facts(self) -> tuple[documents.PublicFacts | None, ResponseReturnValue | None]:
        """Return the document's public facts, or the page that says the code is malformed or unknown."""
        try:
            facts = documents.verify(self.session, self.code)
        except InvalidInput:
            return None, _verify_page(400, code=self.code, status="malformed",
                                      message=_("核验码格式不正确：核验码为20位字母和数字，可带短横线"))
        if facts is None:
            return None, _verify_page(404, code=self.code, status="unknown",
                                      message=_("未找到此核验码对应的文书：该文书不是本系统出具的，或核验码有误"))
        self.code = documents.display_code(documents.normalize_code(self.code))
        return facts, None


@bp.get("/verify/<code>")
def verify(code: str) -> ResponseReturnValue:
    """Public: check a verification code (unknown and malformed codes count against the address, like logins)."""
    check = _Check(code)
    limited = check.limited()
    if limited is not None:
        return limited
    facts, refused = check.facts()
    if refused is not None:
        check.count()
        return refused
    return _verify_page(200, code=check.code, status="valid", facts=facts,
                        message=_("核验通过：本文书由胶州经济工作流出具"))


@bp.post("/verify/<code>")
@guards.small_body(documents.MAX_CHECKED_FILE + FORM_ROOM)
def verify_file(code: str) -> ResponseReturnValue:
    """Public: compare a copy the checker holds with the issued file, by SHA-256, reading it once and keeping nothing.

    Every upload counts against the address as an unknown code does (the server reads and hashes up to 10 MB for it),
    so guessing codes and sending files share one limit.
    """
    check = _Check(code)
    limited = check.limited()
    if limited is not None:
        return limited
    check.count()
    facts, refused = check.facts()
    if facts is None:
        return refused
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _verify_page(400, code=check.code, status="valid", facts=facts,
                            message=_("请选择要比对的文件（您持有的PDF文书）"))
    try:
        same = documents.matches(facts, upload.stream)
    except documents.NoDigest:
        return _verify_page(422, code=check.code, status="valid", facts=facts,
                            message=_("本文书出具于启用文件摘要之前，未记录文件摘要，无法比对文件内容"))
    except documents.FileTooLarge:
        return _too_large(check.code, facts)
    if same:
        return _verify_page(200, code=check.code, status="valid", facts=facts, outcome="same",
                            message=_("与签发文件一致：您上传的文件与本系统签发的文件逐字节相同"))
    return _verify_page(200, code=check.code, status="valid", facts=facts, outcome="different",
                        message=_("与签发文件不一致：您上传的文件不是本系统签发的原件，内容可能已被改动"))


def _too_large(code: str, facts: documents.PublicFacts | None = None) -> ResponseReturnValue:
    return _verify_page(413, code=code, status="too_large", facts=facts,
                        message=_("文件过大：用于核验的文件不能超过 %(megabytes)s MB", megabytes=MEGABYTES))


@bp.errorhandler(guards.BodyTooLarge)
def _body_too_large(exc: guards.BodyTooLarge) -> Any:
    """A copy far past the limit, refused as werkzeug read the body (before CSRF and the view): counted all the same."""
    code = str((request.view_args or {}).get("code", ""))
    check = _Check(code)
    limited = check.limited()
    if limited is not None:
        return limited
    check.count()
    return _too_large(check.code)
