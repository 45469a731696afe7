"""指标数据录入: the period's entry form, file upload with a preview, confirm, fill-in templates."""
from __future__ import annotations

import base64
import binascii
import hashlib

from flask import Response, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required

from engine import clock
from engine.errors import InvalidInput
from plan import dashboard, indicators
from plan import investment as plan
from web import once
from web.common import current_actor, db_session
from web.dashboard.blueprint import bp


def _period(value: str | None) -> str:
    return dashboard.check_period(value, dashboard.default_period(db_session(), clock.now()))


@bp.get("/dashboard/data")
@login_required
def data() -> ResponseReturnValue:
    session, actor = db_session(), current_actor()
    indicators.require_entry(session, actor)
    period = _period(request.args.get("period"))
    return render_template("dashboard/data.html", period=period,
                           rows=indicators.current_figures(session, period, actor=actor), every_unit=actor.is_admin,
                           seen=indicators.period_version(session, period, actor=actor), show=plan.show)


@bp.post("/dashboard/data")
@login_required
def save() -> ResponseReturnValue:
    session = db_session()
    indicators.require_entry(session, current_actor())  # before the input is looked at: refused is refused
    if (sent := once.replayed()) is not None:  # a double click: saved by the first
        return _replayed(sent)
    period = _period(request.form.get("period"))
    values = {code[len("value:"):]: (text, request.form.get("source:" + code[len("value:"):], ""))
              for code, text in request.form.items() if code.startswith("value:")}
    result = indicators.save_form(session, period=period, values=values, actor=current_actor(),
                                  seen=request.form.get("seen", "")[:64])
    return _saved(period, result)


def _saved(period: str, result: indicators.Replaced) -> ResponseReturnValue:
    """Commit with the page's `once` answer: the same page sent again is that answer, not a second replace (its
    figures changed since the page was drawn, by this save: `seen` would call that someone else's change)."""
    location = once.commit_once(url_for("dashboard.index", period=period))
    flash(_("已保存 %(period)s：新增 %(added)s，修改 %(changed)s，删除 %(removed)s", period=period,
            added=result.added, changed=result.changed, removed=result.removed))
    return redirect(location)


def _replayed(location: str) -> ResponseReturnValue:
    flash(_("此表单已提交，数据已保存，未重复保存"))
    return redirect(location)


@bp.post("/dashboard/data/upload")
@login_required
def upload() -> ResponseReturnValue:
    session, actor = db_session(), current_actor()
    indicators.require_entry(session, actor)
    period = _period(request.form.get("period"))
    file = request.files.get("file")
    if file is None or not file.filename:
        raise InvalidInput(_("请选择 XLSX 或 CSV 文件"), field="file")
    payload = file.read(indicators.MAX_BYTES + 1)
    preview = indicators.preview_upload(session, period=period, filename=file.filename, data=payload, actor=actor)
    status = 200 if preview.ok else 422
    return render_template("dashboard/preview.html", preview=preview, show=plan.show,
                           seen=indicators.period_version(session, period, actor=actor),
                           payload=base64.b64encode(payload).decode() if preview.ok else ""), status


@bp.post("/dashboard/data/confirm")
@login_required
def confirm() -> ResponseReturnValue:
    session = db_session()
    indicators.require_entry(session, current_actor())
    if (sent := once.replayed()) is not None:  # 确认保存 clicked twice: stored by the first
        return _replayed(sent)
    period = _period(request.form.get("period"))
    try:
        payload = base64.b64decode(request.form.get("payload", ""), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(_("上传内容已损坏，请重新上传"), field="payload") from None
    if hashlib.sha256(payload).hexdigest() != request.form.get("sha256"):
        raise InvalidInput(_("上传内容已损坏，请重新上传"), field="payload")
    result = indicators.apply_upload(session, period=period, filename=request.form.get("filename", "upload.csv"),
                                     data=payload, actor=current_actor(), seen=request.form.get("seen", "")[:64])
    return _saved(period, result)


@bp.get("/dashboard/data/template.<fmt>")
@login_required
def template(fmt: str) -> ResponseReturnValue:
    session, actor = db_session(), current_actor()
    indicators.require_entry(session, actor)
    period = _period(request.args.get("period"))
    if fmt == "csv":
        body, mimetype = indicators.template_csv(session, period, actor=actor), "text/csv; charset=utf-8"
    elif fmt == "xlsx":
        body = indicators.template_xlsx(session, period, actor=actor)
        mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    else:
        raise InvalidInput(_("模板格式须为 csv 或 xlsx"), field="format")
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="indicators-{period}.{fmt}"'
    return response
