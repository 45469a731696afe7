"""流程建模: process owners edit BPMN/DMN/forms in the browser, deploy, compare versions and migrate instances.

Auditors and admins read everything here (versions, files, diffs, the modeller without its deploy
button); only process owners and admins deploy and migrate. Deploying runs the same validation as
`jzflow deploy` (engine.deploy); its problems come back as JSON and are drawn on the diagram.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from flask import Blueprint, Flask, Response, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required
from werkzeug.datastructures import MultiDict

from engine import content_limits, deploy, org
from engine.deadlines import sla
from engine.deploy import versions
from engine.errors import DeployInvalid, InvalidInput, NotFound
from engine.org.actors import Actor
from engine.runtime import effects
from engine.runtime.models import ProcessInstance
from web import access, downloads, formrender
from web.common import commit, current_actor, db_session
from web.extensions import SECURITY_HEADERS
from web.modeller import problems, uploads
from web.modeller.labels import panel_labels, ui_labels

bp = Blueprint("modeller", __name__)
MIGRATE_LIST_LIMIT = versions.MAX_MIGRATE  # the page lists as many as one migration may move


@bp.after_request
def _modeller_csp(response: Response) -> Response:
    """Allow data: fonts: the palette's and context pad's icons (bpmn-font, dmn-font) are embedded that way."""
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    if response.headers.get("Content-Security-Policy") == downloads.SANDBOX:
        return response  # a user's file: it keeps its sandbox
    if "font-src" not in policy:  # runs before the app's defaults, which only fill in what is missing
        response.headers["Content-Security-Policy"] = policy.rstrip("; ") + "; font-src 'self' data:"
    return response


def _reader() -> Actor:
    """Return the acting user if they may read versions (process owners, auditors, admins).

    Raises: Forbidden
    """
    actor = current_actor()
    versions.require_read(db_session(), actor)
    return actor


def _owner() -> Actor:
    """Return the acting user if they may deploy and migrate (process owners, admins).

    Raises: Forbidden
    """
    actor = current_actor()
    versions.require_deploy(db_session(), actor)
    return actor


def init_app(app: Flask) -> None:
    """Show 流程建模 in the menu to those `_reader` lets in."""
    access.door(app, "modeller.index", _reader, "流程管理员、审计督查人员或系统管理员")


@bp.get("/modeller")
@login_required
def index() -> ResponseReturnValue:
    actor = _reader()
    session = db_session()
    return render_template("modeller/index.html", processes=versions.processes(session),
                           may_deploy=versions.may_deploy(session, actor))


@bp.get("/modeller/processes/<key>")
@login_required
def process(key: str) -> ResponseReturnValue:
    actor = _reader()
    session = db_session()
    rows = versions.versions(session, key)
    return render_template("modeller/process.html", key=key, rows=rows, may_deploy=versions.may_deploy(session, actor))


# --- the editor -----------------------------------------------------------------------------------------

@bp.get("/modeller/versions/<int:version_id>/edit")
@login_required
def edit(version_id: int) -> ResponseReturnValue:
    actor = _reader()
    session = db_session()
    row = versions.version(session, version_id)
    return render_template("modeller/edit.html", row=row, may_deploy=versions.may_deploy(session, actor),
                           files_url=url_for("modeller.files_json", version_id=version_id), labels=ui_labels(),
                           panel_labels=panel_labels)


@bp.get("/modeller/new")
@login_required
def new() -> ResponseReturnValue:
    _owner()
    return render_template("modeller/edit.html", row=None, may_deploy=True, files_url="", labels=ui_labels(),
                           panel_labels=panel_labels)


@bp.get("/modeller/versions/<int:version_id>/files.json")
@login_required
def files_json(version_id: int) -> ResponseReturnValue:
    _reader()
    session = db_session()
    row = versions.version(session, version_id)
    kinds = versions.file_kinds(session, version_id)
    main = versions.main_bpmn(session, version_id)
    return jsonify(key=row.key, version=row.version, version_id=row.id, main=main[0] if main else None,
                   files=[{"name": n, "kind": kinds.get(n, "form"), "text": t}
                          for n, t in versions.files(session, version_id).items()])


@bp.get("/modeller/targets.json")
@login_required
def targets() -> ResponseReturnValue:
    """What the properties panel offers: roles and org units for lanes, services, escalation profiles."""
    _reader()
    session = db_session()
    units = [{"code": u.code, "name": u.name, "kind": u.kind} for u, _leader, _resp in org.units(session)]
    roles = [{"code": r.code, "name": r.name} for r in org.roles(session)]
    try:
        profiles = sorted(k for k in sla.load_policies().by_section.get("tasks", {}) if k != "default")
    except (ValueError, OSError, yaml.YAMLError):  # a broken escalation.yaml must not take the modeller down
        profiles = []
    return jsonify(roles=roles, units=units, services=sorted(effects.load_all()), escalation_profiles=profiles)


@bp.post("/modeller/deploy")
@login_required
def deploy_files() -> ResponseReturnValue:
    actor = _owner()
    body = request.get_json(silent=True)
    files = uploads.from_json(body)
    bases = uploads.base_versions_from_json(body)
    session = db_session()
    try:
        results = deploy.deploy(session, files, actor=actor, base_versions=bases)
    except DeployInvalid as exc:
        session.rollback()
        return jsonify(error=exc.code, message=_("部署被拒绝，未保存任何内容"),
                       problems=problems.shown(exc.problems)), 422
    except deploy.StaleBaseVersion as exc:
        session.rollback()
        return jsonify(_stale(exc)), 409
    deployed = []
    for result in results:
        latest = deploy.latest_version(session, result.key)
        deployed.append({"key": result.key, "version": result.version, "created": result.created,
                         "version_id": latest.id if latest else None, "warnings": problems.shown(list(result.warnings)),
                         "url": url_for("modeller.process", key=result.key),
                         "edit_url": url_for("modeller.edit", version_id=latest.id) if latest else None})
    commit()
    return jsonify(deployed=deployed)


def _stale(exc: deploy.StaleBaseVersion) -> dict[str, Any]:
    """Say who deployed which version when since the edit's base, with the diff between the base and the latest."""
    d = exc.details
    base_id, latest_id = d["base_version_id"], d["latest_version_id"]
    since = [{**row, "edit_url": url_for("modeller.edit", version_id=row["version_id"])} for row in d["since"]]
    return {
        "error": exc.code, "key": d["key"], "base_version": d["base_version"], "latest_version": d["latest_version"],
        "message": _("流程 %(key)s 在您编辑期间已有他人部署新版本（您的修改基于 v%(base)s，最新为 v%(latest)s），"
                     "您的修改未部署。请查看差异，在最新版本上重新修改。",
                     key=d["key"], base=d["base_version"], latest=d["latest_version"]),
        "since": since,
        # A new process (base 0) has no base version to compare: the version list shows what is there.
        "diff_url": url_for("modeller.diff", key=d["key"], old=base_id, new=latest_id) if base_id else None,
        "latest_edit_url": url_for("modeller.edit", version_id=latest_id),
        "versions_url": url_for("modeller.process", key=d["key"]),
    }


@bp.post("/modeller/form-preview")
@login_required
def form_preview() -> ResponseReturnValue:
    """Render a JSON Schema (+ UI schema) the way the task page will show it, for the live preview."""
    _reader()
    body = request.get_json(silent=True) or {}
    schema, ui = body.get("schema"), body.get("uischema")
    if not isinstance(schema, dict) or not (ui is None or isinstance(ui, dict)):
        raise InvalidInput(_("表单定义须为 JSON 对象"), field="schema")
    for field, doc in (("schema", schema), ("uischema", ui)):  # the limits deploy holds the form to
        too_big = content_limits.form_problems(doc)
        if too_big:
            raise InvalidInput(_("无法预览此表单") + f": {too_big[0][0]}: {too_big[0][1]}", field=field)
    try:
        html = formrender.render(formrender.Form(schema, ui), MultiDict(), disabled=False)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise InvalidInput(_("无法预览此表单") + f": {exc}", field="schema") from exc
    return Response(str(html), mimetype="text/html")


# --- files and import -------------------------------------------------------------------------------------

@bp.get("/modeller/versions/<int:version_id>/files/<path:name>")
@login_required
def file_download(version_id: int, name: str) -> ResponseReturnValue:
    _reader()
    texts = versions.files(db_session(), version_id)
    if name not in texts:
        raise NotFound(_("此版本没有该文件"), version_id=version_id, name=name)
    return downloads.user_file(texts[name], name)


@bp.get("/modeller/versions/<int:version_id>/diagram.bpmn")
@login_required
def diagram(version_id: int) -> ResponseReturnValue:
    _reader()
    main = versions.main_bpmn(db_session(), version_id)
    if main is None:
        raise NotFound(_("此版本没有BPMN文件"), version_id=version_id)
    # Read by the modeller with fetch(); opened directly, an inert download (it may hold anything an owner wrote).
    return downloads.user_file(main[1], main[0], max_age=3600)  # versions never change


@bp.get("/modeller/versions/<int:version_id>/download.zip")
@login_required
def download_zip(version_id: int) -> ResponseReturnValue:
    _reader()
    session = db_session()
    row = versions.version(session, version_id)
    return downloads.user_file(versions.zip_of(session, version_id), f"{row.key}-v{row.version}.zip", "application/zip")


@bp.post("/modeller/import")
@login_required
def import_files() -> ResponseReturnValue:
    actor = _owner()
    session = db_session()
    translation: deploy.Translation | None = None
    try:
        files: Mapping[str, bytes | str] = uploads.from_uploads(request.files.getlist("files"))
        if request.form.get("translate") == "1":
            translation = deploy.translate_bundle(files)
            files = translation.files
        results = deploy.deploy(session, files, actor=actor)
    except (DeployInvalid, InvalidInput) as exc:
        session.rollback()
        found = problems.shown(exc.problems) if isinstance(exc, DeployInvalid) else []
        return render_template("modeller/import_result.html", problems=found, message=exc.message,
                               translation=translation, processes=versions.processes(session),
                               may_deploy=True), 422
    commit()
    if translation is not None:
        problems.flash_report(translation)
    for result in results:
        if result.created:
            flash(_("已部署 %(key)s 版本 %(version)s", key=result.key, version=result.version), "info")
        else:
            flash(_("%(key)s 未变化，仍为版本 %(version)s", key=result.key, version=result.version), "info")
        problems.flash_warnings(result.warnings)
    if len(results) == 1:
        return redirect(url_for("modeller.process", key=results[0].key))
    return redirect(url_for("modeller.index"))


# --- versions: diff and migration ----------------------------------------------------------------------------

@bp.get("/modeller/processes/<key>/diff")
@login_required
def diff(key: str) -> ResponseReturnValue:
    _reader()
    session = db_session()
    rows = versions.versions(session, key)
    old_id, new_id = _version_arg("old"), _version_arg("new")
    if old_id is None:
        if len(rows) < 2:
            flash(_("只有一个版本，无可比较"), "info")
            return redirect(url_for("modeller.process", key=key))
        old_id = rows[1].id
    result = versions.diff(session, old_id, rows[0].id if new_id is None else new_id)
    if result.old.key != key:
        raise NotFound(_("版本不属于此流程"), process_key=key)
    main = versions.main_bpmn(session, result.new.id)
    markers = {c.element_id: c.kind for c in result.elements if main is None or c.file == main[0]}
    return render_template("modeller/diff.html", key=key, rows=rows, result=result, markers=markers)


def _version_arg(name: str) -> int | None:
    """Return the version id given as query argument `name`, None when absent.

    Raises: InvalidInput (not a version id)
    """
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 12:
        raise InvalidInput(_("版本编号无效") + f": {name}={raw[:40]}", field=name)
    return int(raw)


def _instances_on(version_id: int) -> list[ProcessInstance]:
    return versions.migratable_on(db_session(), version_id, limit=MIGRATE_LIST_LIMIT)


@bp.get("/modeller/versions/<int:version_id>/migrate")
@login_required
def migrate_preview(version_id: int) -> ResponseReturnValue:
    actor = _reader()
    session = db_session()
    row = versions.version(session, version_id)
    rows = versions.versions(session, row.key)
    target_id = request.args.get("to", type=int) or rows[0].id
    target = versions.version(session, target_id)
    previews = [versions.preview(session, i.id, target_id) for i in _instances_on(version_id)]
    return render_template("modeller/migrate.html", row=row, rows=rows, target=target, previews=previews,
                           may_deploy=versions.may_deploy(session, actor), report=None)


@bp.post("/modeller/versions/<int:version_id>/migrate")
@login_required
def migrate(version_id: int) -> ResponseReturnValue:
    actor = _owner()
    session = db_session()
    target_id = request.form.get("to", type=int)
    if target_id is None:
        raise InvalidInput(_("请选择目标版本"), field="to")
    ids = [int(v) for v in request.form.getlist("instance") if v.isdigit()]
    if not ids:
        raise InvalidInput(_("请选择要迁移的流程实例"), field="instance")
    report = versions.migrate(session, ids, target_id, actor)
    commit()
    row = versions.version(session, version_id)
    target = versions.version(session, target_id)
    previews = [versions.preview(session, i.id, target_id) for i in _instances_on(version_id)]
    return render_template("modeller/migrate.html", row=row, rows=versions.versions(session, row.key), target=target,
                           previews=previews, may_deploy=True, report=report)
