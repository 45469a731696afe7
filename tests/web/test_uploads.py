"""Every way a user gets a file onto the server, over HTTP: task attachments, modeller deploy and import
(files and zip bundles), XLSX/CSV indicator uploads — and every way such content comes back. Whatever
was uploaded comes back as an inert download: Content-Disposition: attachment, an inert type,
nosniff, and a CSP that sandboxes it and allows nothing (web.downloads)."""
from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, org
from engine.org.actors import SYSTEM
from engine.runtime.models import ProcessFile, ProcessVersion
from engine.tasks.collab_models import Attachment
from tests.engine.test_upload_guards import HTML_SCRIPT, XML_BOMBS, xlsx
from tests.web.conftest import PASSWORD_HASH, csrf_of
from tests.web.flows import db
from tests.web.test_modeller import minimal_files, post_json, upload
from tests.web.test_task_page import at_review, bundle, post

Login = Callable[[str], FlaskClient]
SANDBOX = "sandbox; default-src 'none'"
INERT = {"application/octet-stream", "text/plain", "text/csv", "application/json", "application/zip", "image/png",
         "image/jpeg", "image/gif"}


@pytest.fixture
def staff(session: Session, review_org: dict[str, Any]) -> None:
    """A process owner and a data officer besides review_org's people (with the web tests' password)."""
    org.add_role(session, code="process_owner", name="流程管理员")
    org.add_role(session, code="data_officer", name="数据监测")
    for user in (org.add_user(session, username="owner", display_name="流程管理员甲", role_codes=["process_owner"]),
                 org.add_user(session, username="stats", display_name="统计员", role_codes=["data_officer"])):
        user.password_hash = PASSWORD_HASH
    session.commit()


@pytest.fixture
def deployed(app: Flask, factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """The task page tests' processes (web_ops: fill → review by fg → sign off), deployed."""
    with factory() as s:
        deploy.deploy(s, bundle(), actor=SYSTEM)
        s.commit()
    return factory


def assert_inert(response: Any, what: str) -> None:
    """The rule for everything a user supplied: a download, inert, sniff-proof, sandboxed."""
    assert response.status_code == 200, (what, response.status_code)
    assert response.headers["Content-Disposition"].startswith("attachment;"), what
    assert response.mimetype in INERT, (what, response.mimetype)
    assert response.headers["X-Content-Type-Options"] == "nosniff", what
    assert response.headers.getlist("Content-Security-Policy") == [SANDBOX], (what, response.headers)  # not the site's too
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"], what


def version_of(app: Flask, key: str) -> int:
    with db(app) as s:
        found = s.scalar(select(ProcessVersion.id).order_by(ProcessVersion.id.desc()).limit(1))
        assert found is not None, key
        return found


# --------------------------------------------------------------------------- hole 1

def test_hole1_the_raw_diagram_is_an_inert_download(app: Flask, staff: None, login: Login) -> None:
    owner = login("owner")
    assert post_json(owner, "/modeller/deploy", {"files": minimal_files()}).status_code == 200
    version = version_of(app, "minimal")
    assert_inert(owner.get(f"/modeller/versions/{version}/diagram.bpmn"), "diagram.bpmn")
    # … and an owner cannot put a script into a model in the first place.
    files = minimal_files()
    files["minimal.bpmn"] = files["minimal.bpmn"].replace("<spiffworkflow:properties>",
                                                          HTML_SCRIPT + "<spiffworkflow:properties>", 1)
    refused = post_json(owner, "/modeller/deploy", {"files": files})
    assert refused.status_code == 422 and any("xhtml" in p["message"] for p in refused.json["problems"])
    page = upload(owner, [("evil.bpmn", files["minimal.bpmn"].encode())])
    assert page.status_code == 422 and "xhtml" in page.get_data(as_text=True)


ACTIVE_ATTACHMENTS = {
    "js": ("x.js", "text/javascript", b"fetch('/admin/tokens')"),
    "html": ("x.html", "text/html", b"<script>alert(1)</script>"),
    "svg": ("x.svg", "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
    "xhtml in xml": ("x.xml", "application/xml", b'<a:script xmlns:a="http://www.w3.org/1999/xhtml">alert(1)</a:script>'),
    "gif/js polyglot": ("x.gif", "application/javascript", b"GIF89a/*\x00\x00*/=1;alert(1)//"),
    "pdf": ("x.pdf", "application/pdf", b"%PDF-1.4 /JS (app.alert(1))"),
    "no type": ("x", "", b"<script>alert(1)</script>"),
    "traversal": ("../../../etc/passwd", "text/plain", b"root:x:0:0"),
}


def test_hole1_an_attachment_declared_javascript_cannot_run_as_a_script(deployed: sessionmaker[Session],
                                                                        login: Login) -> None:
    _, review = at_review(deployed)
    client = login("fg")
    for name, (filename, declared, body) in ACTIVE_ATTACHMENTS.items():
        sent = post(client, f"/tasks/{review}/attachments", {"file": (io.BytesIO(body), filename, declared)},
                    content_type="multipart/form-data")
        assert sent.status_code == 302, name
    with deployed() as s:
        stored = s.execute(select(Attachment.id, Attachment.name, Attachment.content_type).order_by(Attachment.id)).all()
        s.rollback()
    assert {t for _i, _n, t in stored} == {"application/octet-stream", "text/plain"}
    assert "passwd" in [n for _i, n, _t in stored] and not any("/" in n or ".." in n for _i, n, _t in stored)
    for (attachment_id, name, _type), (label, (_f, _d, body)) in zip(stored, ACTIVE_ATTACHMENTS.items(), strict=True):
        download = client.get(f"/tasks/{review}/attachments/{attachment_id}")
        assert_inert(download, label)
        assert download.data == body and download.mimetype != "text/javascript"
        assert name in download.headers["Content-Disposition"] or "filename*" in download.headers["Content-Disposition"]


def test_every_download_of_user_content_is_inert(app: Flask, deployed: sessionmaker[Session], staff: None,
                                                 login: Login) -> None:
    instance_id, review = at_review(deployed)
    fg = login("fg")
    post(fg, f"/tasks/{review}/attachments", {"file": (io.BytesIO(b"a"), "a.txt", "text/plain")},
         content_type="multipart/form-data")
    with deployed() as s:
        attachment_id = s.scalar(select(Attachment.id))
        version_id = s.scalar(select(ProcessVersion.id).limit(1))
        names = list(s.scalars(select(ProcessFile.name).where(ProcessFile.version_id == version_id)))
        s.rollback()
    assert_inert(fg.get(f"/tasks/{review}/attachments/{attachment_id}"), "attachment")
    assert_inert(fg.get(f"/tasks/{review}/diagram.bpmn"), "task diagram")
    assert_inert(fg.get(f"/instances/{instance_id}/diagram.bpmn"), "instance diagram")
    admin = login("admin")
    assert_inert(admin.get(f"/modeller/versions/{version_id}/diagram.bpmn"), "modeller diagram")
    assert_inert(admin.get(f"/modeller/versions/{version_id}/download.zip"), "version zip")
    for name in names:
        assert_inert(admin.get(f"/modeller/versions/{version_id}/files/{name}"), name)


# --------------------------------------------------------------------------- modeller import: bombs, traversal

def _zip(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


IMPORTS = {
    "too many entries": ([("a.zip", _zip({f"junk/{i}.txt": b"" for i in range(1200)}))], "more than 1000 entries"),
    "ratio bomb": ([("a.zip", _zip({"big.json": b" " * (4 * 1024 * 1024)}))], "compression ratio above 100"),
    "billion laughs": ([("a.bpmn", XML_BOMBS["billion laughs"].encode())], "DOCTYPE"),
    "external entity": ([("a.bpmn", XML_BOMBS["external entity"].encode())], "DOCTYPE"),
    "script in a zipped model": ([("a.zip", _zip({"m/evil.bpmn": minimal_files()["minimal.bpmn"].replace(
        "<spiffworkflow:properties>", HTML_SCRIPT + "<spiffworkflow:properties>", 1).encode()}))], "xhtml"),
    "remote $ref": ([("m.bpmn", minimal_files()["minimal.bpmn"].encode()),
                     ("approve.schema.json", json.dumps({"$ref": "http://127.0.0.1:9/x.json"}).encode()),
                     ("approve.uischema.json", b"{}")], "no URL, no path"),
}


@pytest.mark.parametrize("name", sorted(IMPORTS))
def test_hostile_imports_are_refused(app: Flask, staff: None, login: Login, name: str) -> None:
    files, words = IMPORTS[name]
    response = upload(login("owner"), files)
    assert response.status_code == 422, (response.status_code, response.get_data(as_text=True)[:300])
    assert words in response.get_data(as_text=True)
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ProcessVersion)) == 0


def test_zip_paths_never_reach_a_file_name(app: Flask, staff: None, login: Login) -> None:
    files = minimal_files()
    bundle = _zip({"../../../../tmp/minimal.bpmn": files["minimal.bpmn"].encode(),
                   "/abs/forms/approve.schema.json": files["approve.schema.json"].encode(),
                   "..\\..\\approve.uischema.json": files["approve.uischema.json"].encode()})
    assert upload(login("owner"), [("bundle.zip", bundle)]).status_code == 302
    with db(app) as s:
        names = sorted(s.scalars(select(ProcessFile.name)))
    assert names == ["approve.schema.json", "approve.uischema.json", "minimal.bpmn"]


# --------------------------------------------------------------------------- hole 3 over HTTP

def test_hole3_an_xlsx_memory_bomb_is_refused_by_the_upload_page(app: Flask, staff: None, login: Login) -> None:
    stats = login("stats")
    bomb = xlsx([["指标代码", "数值"]] + [[f"x{i}", i] for i in range(1200)], dimension="A1:XFD6000")
    response = stats.post("/dashboard/data/upload", data={
        "csrf_token": csrf_of(stats, "/dashboard/data?period=2025-08"), "period": "2025-08",
        "file": (io.BytesIO(bomb), "bomb.xlsx")}, content_type="multipart/form-data")
    assert 400 <= response.status_code < 500 and "XFD6000" in response.get_data(as_text=True)


def test_hole3_an_xlsx_memory_bomb_is_refused_by_the_project_import(app: Flask, staff: None, login: Login,
                                                                     session: Session) -> None:
    officer = org.add_user(session, username="unitstats", display_name="单位数据员", unit_codes=["zj"],
                           role_codes=["data_officer"])
    officer.password_hash = PASSWORD_HASH
    session.commit()
    client = login("unitstats")
    bomb = xlsx([["项目名称", "总投资（万元）", "责任单位"]] + [[f"x{i}", 1, "zj"] for i in range(1200)],
                dimension="A1:XFD6000")
    response = client.post("/projects/import", data={
        "csrf_token": csrf_of(client, "/projects/import"), "file": (io.BytesIO(bomb), "bomb.xlsx")},
        content_type="multipart/form-data")
    assert 400 <= response.status_code < 500 and "XFD6000" in response.get_data(as_text=True)
    for name, body in (("fake.xlsx", b"PK\x03\x04broken"), ("x.exe", b"MZ")):
        response = client.post("/projects/import", data={
            "csrf_token": csrf_of(client, "/projects/import"), "file": (io.BytesIO(body), name)},
            content_type="multipart/form-data")
        assert 400 <= response.status_code < 500


# --------------------------------------------------------------------------- a copy checked at /verify

def test_a_copy_checked_at_verify_is_bounded_hashed_and_kept_nowhere(app: Flask, deployed: sessionmaker[Session],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone, logged in or not, may send a file to /verify/<code>: at most 10 MB, read in memory and hashed, never
    written anywhere (not even werkzeug's temporary file for bodies past 500 KB), nothing kept in the database."""
    from datetime import date

    import werkzeug.formparser

    from engine import documents
    from engine.runtime import instances
    from tests.web.test_documents_pages import BOUNDARY, _multipart
    with db(app) as s:
        row = instances.start(s, process_key="minimal", actor=SYSTEM, title="核验")
        doc = documents.issue(s, instance_id=row.id, kind="upload_suite", rule=documents.NumberRule(
            "upload_suite", "U{year}-{seq:04d}"), title="文书", subject="公开事项", issuers=["发展和改革局"],
            issued_on=date(2025, 9, 1), actor=SYSTEM)
        code, issued = doc.verify_code, bytes(doc.pdf or b"")

    def no_disk(*args: object, **kwargs: object) -> object:
        raise AssertionError("an uploaded copy went to a temporary file")
    monkeypatch.setattr(werkzeug.formparser, "SpooledTemporaryFile", no_disk)
    with db(app) as s:
        attachments = s.scalar(select(func.count()).select_from(Attachment))
    client = app.test_client()
    cases = {"genuine": (issued, 200, "与签发文件一致"), "one byte off": (issued[:-1] + b"\x00", 200, "与签发文件不一致"),
             "2 MB of active content": (HTML_SCRIPT.encode() * (2_000_000 // len(HTML_SCRIPT)), 200, "与签发文件不一致"),
             "traversal name": (issued, 200, "与签发文件一致"),
             "past 10 MB": (b"%PDF" + b"x" * documents.MAX_CHECKED_FILE, 413, "文件过大")}
    for what, (body, status, words) in cases.items():
        name = "../../etc/passwd" if what == "traversal name" else "copy.pdf"
        response = client.post(f"/verify/{code}", data=_multipart(csrf_of(client), body, name),
                               content_type=f"multipart/form-data; boundary={BOUNDARY}")
        text = response.get_data(as_text=True)
        assert response.status_code == status and words in text, (what, response.status_code, text[:300])
        assert "<script>" not in text, what
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(Attachment)) == attachments


def test_an_upload_sent_twice_is_kept_once_and_another_file_from_the_same_page_is_kept_too(
        deployed: sessionmaker[Session], login: Login) -> None:
    """上传附件 sent twice (a double click, a resend after a slow answer) stored the file twice. The form carries
    `once`: the same file with the same key is answered as the first; a different file sent from the same page is a
    new upload, kept — never dropped silently as a repeat."""
    from tests.web.conftest import form_at
    _, review = at_review(deployed)
    client = login("fg")
    action = f"/tasks/{review}/attachments"
    fields = form_at(client, f"/tasks/{review}", action)
    assert fields.get("once")

    def send(body: bytes, name: str) -> Any:
        return client.post(action, data={**fields, "file": (io.BytesIO(body), name, "text/plain")},
                           content_type="multipart/form-data")

    assert [send(b"report v1", "report.txt").status_code for _ in range(2)] == [302, 302]
    assert send(b"report v2", "report.txt").status_code == 302  # another file from the same page
    assert send(b"report v1", "copy.txt").status_code == 302  # the same bytes under another name
    with deployed() as s:
        stored = [(n, c) for n, c in s.execute(select(Attachment.name, Attachment.content).order_by(Attachment.id))]
        s.rollback()
    assert stored == [("report.txt", b"report v1"), ("report.txt", b"report v2"), ("copy.txt", b"report v1")]
