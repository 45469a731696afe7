"""Submitted forms and issued documents: the printable 审批单, PDFs, and the public verification page.

- /instances/<id>/sheet        the 审批单 (every finished step's form and opinion, in order), for printing
- /instances/<id>/sheet.pdf    the same as PDF, with the seal area
- /instances/<id>/documents/<doc>.pdf   an issued document (联合意见书) with its number and verification code
- /verify/<code>               public: the number, subject, date and issuers of the document with this code

Access is the engine's (`engine.tasks.submissions`, `engine.documents.render`): whoever may not see the instance
gets 404, as for an instance that does not exist; an applicant from outside, who may see it, gets their own steps
and the issued documents, and 403 for the 审批单.
"""
from __future__ import annotations

from flask import Blueprint, Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from engine import clock, config, documents
from engine.documents import render
from engine.errors import InvalidInput
from engine.tasks import submissions
from web import downloads, links
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
    return _pdf(render.sheet_pdf(db_session(), actor, instance_id), f"审批单-{instance_id}.pdf")


@bp.get("/instances/<int:instance_id>/documents/<int:doc_id>.pdf")
@login_required
def document_pdf(instance_id: int, doc_id: int) -> ResponseReturnValue:
    actor = current_actor()
    visible_row(instance_id, actor)
    doc, body = render.issued_pdf(db_session(), actor, instance_id, doc_id, verify_url)
    return _pdf(body, f"{doc.number}.pdf")


@bp.get("/verify/<code>")
def verify(code: str) -> ResponseReturnValue:
    """Public: check a verification code (unknown and malformed codes count against the address, like logins)."""
    session = db_session()
    settings = config.load()
    now, address = clock.now(), request.remote_addr
    wait = documents.verify_wait(session, address=address, now=now, limit=settings.verify_address_failures,
                                 window_seconds=settings.login_window_seconds)
    if wait:
        minutes = max(1, (wait + 59) // 60)
        return (render_template("documents/verify.html", facts=None, code=code[:40], status="limited",
                                message=_("核验次数过多，请%(minutes)s分钟后再试", minutes=minutes)),
                429, {"Retry-After": str(wait)})
    try:
        facts = documents.verify(session, code)
    except InvalidInput:
        documents.record_miss(session, address=address, now=now, window_seconds=settings.login_window_seconds)
        session.commit()
        return render_template("documents/verify.html", facts=None, code=code[:40], status="malformed",
                               message=_("核验码格式不正确：核验码为20位字母和数字，可带短横线")), 400
    if facts is None:
        documents.record_miss(session, address=address, now=now, window_seconds=settings.login_window_seconds)
        session.commit()
        return render_template("documents/verify.html", facts=None, code=code[:40], status="unknown",
                               message=_("未找到此核验码对应的文书：该文书不是本系统出具的，或核验码有误")), 404
    return render_template("documents/verify.html", facts=facts, code=documents.display_code(
        documents.normalize_code(code)), status="valid", message=_("核验通过：本文书由胶州经济工作流出具"))
