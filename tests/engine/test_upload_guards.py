"""Every way a user gets a file onto the server, engine side: deploy bundles (BPMN/DMN/forms), task
attachments, XLSX/CSV indicator uploads, webhook targets. Hostile input only: active content (HTML,
SVG, XSLT, JavaScript types), references out of the deployment, XML and zip bombs, memory bombs,
internal network targets. Each is refused with a message naming the file or field, or made inert."""
from __future__ import annotations

import io
import json
import re
import socket
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, notify, org
from engine.errors import DeployInvalid, FormInvalid, InvalidInput
from engine.jobs import run_outbox
from engine.notify import outbound
from engine.notify.models import OutboxMessage
from engine.org.actors import SYSTEM, Actor
from engine.runtime import forms, instances
from engine.runtime.models import ProcessVersion
from engine.tasks import collab
from engine.tasks.collab_models import Attachment
from plan import indicators
from plan.indicators import sheets
from tests.conftest import FIXTURES
from tests.sinks import HookSink

GOOD = FIXTURES / "good"
REPO = Path(__file__).resolve().parents[2]


def minimal(extension: str = "", prolog: str = "") -> dict[str, str]:
    """The minimal process with `extension` put into its user task's extensionElements."""
    bpmn = (GOOD / "minimal.bpmn").read_text(encoding="utf-8")
    if prolog:
        bpmn = bpmn.replace("?>", "?>" + prolog, 1)
    bpmn = bpmn.replace("<spiffworkflow:properties>", extension + "<spiffworkflow:properties>", 1)
    return {"minimal.bpmn": bpmn, **{p.name: p.read_text(encoding="utf-8") for p in (GOOD / "forms").glob("approve.*")}}


def refusal(session: Session, files: dict[str, str]) -> str:
    with pytest.raises(DeployInvalid) as caught:
        deploy.deploy(session, files, actor=SYSTEM)
    assert session.scalar(select(func.count()).select_from(ProcessVersion)) == 0
    return " | ".join(f"{p.file}:{p.element_id}:{p.message}" for p in caught.value.problems)


# --------------------------------------------------------------------------- hole 1: active content in models

HTML_SCRIPT = '<html:script xmlns:html="http://www.w3.org/1999/xhtml" src="/tasks/1/attachments/1"/>'
ACTIVE = {
    "xhtml script": HTML_SCRIPT,
    "xhtml body onload": '<h:body xmlns:h="http://www.w3.org/1999/xhtml" onload="alert(1)"/>',
    "svg script": '<s:svg xmlns:s="http://www.w3.org/2000/svg"><s:script>alert(1)</s:script></s:svg>',
    "xinclude": '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>',
    "xslt": '<x:stylesheet xmlns:x="http://www.w3.org/1999/XSL/Transform" version="1.0"/>',
    "unknown vendor": '<evil:thing xmlns:evil="http://evil.example/ns">x</evil:thing>',
}


def test_hole1_deploy_refuses_an_html_script_in_extension_elements(session: Session, review_org: Any) -> None:
    found = refusal(session, minimal(HTML_SCRIPT))
    assert "minimal.bpmn:approve:" in found and "<script>" in found and "http://www.w3.org/1999/xhtml" in found


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_foreign_namespace_elements_are_refused(session: Session, review_org: Any, name: str) -> None:
    assert "is not a BPMN/DMN extension jzflow knows" in refusal(session, minimal(ACTIVE[name]))


def test_a_stylesheet_instruction_is_refused(session: Session, review_org: Any) -> None:
    prolog = '<?xml-stylesheet type="text/xsl" href="/tasks/1/attachments/2"?>'
    assert "processing instruction <?xml-stylesheet?>" in refusal(session, minimal(prolog=prolog))


def test_known_modeller_extensions_still_deploy(session: Session, review_org: Any) -> None:
    color = ('<bioc:x xmlns:bioc="http://bpmn.io/schema/bpmn/biocolor/1.0"/>'
             '<camunda:properties xmlns:camunda="http://camunda.org/schema/1.0/bpmn"/>')
    deploy.deploy(session, minimal(color), actor=SYSTEM)
    assert session.scalar(select(func.count()).select_from(ProcessVersion)) == 1


def test_hole1_an_attachment_declared_javascript_is_stored_as_octet_stream(session: Session,
                                                                          review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, minimal(), actor=SYSTEM)
    row = instances.start(session, process_key="minimal", actor=review_org["fg"])
    kept = {}
    for declared in ("text/javascript", "text/html", "image/svg+xml", "application/xhtml+xml", "text/xml",
                     "application/pdf", "text/css", "image/png", "text/plain; charset=gbk", "APPLICATION/JSON"):
        found = collab.attach(session, instance_id=row.id, actor=review_org["fg"], name="../../x.js",
                              content=b"GIF89a/*\x00*/=alert(1)//", content_type=declared)
        kept[declared] = found.content_type
        assert found.name == "x.js"  # no path, never a traversal
    assert kept == {"text/javascript": "application/octet-stream", "text/html": "application/octet-stream",
                    "image/svg+xml": "application/octet-stream", "application/xhtml+xml": "application/octet-stream",
                    "text/xml": "application/octet-stream", "application/pdf": "application/octet-stream",
                    "text/css": "application/octet-stream", "image/png": "image/png",
                    "text/plain; charset=gbk": "text/plain", "APPLICATION/JSON": "application/json"}


def test_attachment_size_and_name_limits(session: Session, review_org: dict[str, Actor]) -> None:
    deploy.deploy(session, minimal(), actor=SYSTEM)
    row = instances.start(session, process_key="minimal", actor=review_org["fg"])
    for name, content, field in (("a.txt", b"", "file"), ("..", b"x", "name"), ("/", b"x", "name"),
                                 ("big.bin", b"\0" * (collab.MAX_ATTACHMENT_BYTES + 1), "file")):
        with pytest.raises(InvalidInput) as caught:
            collab.attach(session, instance_id=row.id, actor=review_org["fg"], name=name, content=content)
        assert caught.value.details.get("field") == field
    assert session.scalar(select(func.count()).select_from(Attachment)) == 0


def test_an_instance_holds_a_bounded_number_and_size_of_files(session: Session, review_org: dict[str, Actor],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone who sees an instance may attach to it (an applicant to their case): 20 MB a post and posts without end
    filled the database. An instance's files are bounded in number and in bytes; a refusal keeps nothing."""
    monkeypatch.setattr(collab, "MAX_INSTANCE_FILES", 3)
    monkeypatch.setattr(collab, "MAX_INSTANCE_BYTES", 10)
    deploy.deploy(session, minimal(), actor=SYSTEM)
    row = instances.start(session, process_key="minimal", actor=review_org["fg"])
    other = instances.start(session, process_key="minimal", actor=review_org["fg"])

    def attach(instance_id: int, content: bytes) -> None:
        collab.attach(session, instance_id=instance_id, actor=review_org["fg"], name="a.txt", content=content)

    attach(row.id, b"123456")
    with pytest.raises(InvalidInput) as too_big:  # 6 + 5 bytes > 10
        attach(row.id, b"12345")
    attach(row.id, b"1234")  # 10 bytes: the limit itself
    for _ in range(3):
        attach(other.id, b"1")
    with pytest.raises(InvalidInput) as too_many:
        attach(other.id, b"1")
    assert too_big.value.details.get("field") == "file" and "10" in str(too_big.value)
    assert too_many.value.details.get("field") == "file" and "3" in str(too_many.value)
    assert session.scalar(select(func.count()).select_from(Attachment).where(Attachment.instance_id == row.id)) == 2
    assert session.scalar(select(func.count()).select_from(Attachment).where(Attachment.instance_id == other.id)) == 3


# --------------------------------------------------------------------------- XML bombs and external entities

XML_BOMBS = {
    "billion laughs": '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
                      '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><d>&c;</d>',
    "external entity": '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>',
    "external dtd": '<?xml version="1.0"?><!DOCTYPE d SYSTEM "http://127.0.0.1:9/x.dtd"><d/>',
}


@pytest.mark.parametrize("name", sorted(XML_BOMBS))
def test_xml_bombs_and_entities_are_refused_unexpanded(session: Session, name: str) -> None:
    for file in ("a.bpmn", "a.dmn"):
        found = refusal(session, {file: XML_BOMBS[name], "ok.bpmn": minimal()["minimal.bpmn"]})
        assert "DOCTYPE" in found and "root:" not in found and "lollol" not in found


def test_every_lxml_parser_refuses_entities_and_the_network() -> None:
    """A guard over the source: each XML parser jzflow builds resolves no entity and fetches nothing."""
    sources = [p for d in ("engine", "plan", "web") for p in (REPO / d).rglob("*.py")]
    calls = 0
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"(XMLParser|iterparse)\(([^()]*(\([^()]*\))?[^()]*)\)", text):
            calls += 1
            assert "resolve_entities=False" in match.group(2) and "no_network=True" in match.group(2), (path, match[0])
        for match in re.finditer(r"etree\.(fromstring|parse|XML)\(([^\n]*)", text):
            assert "XMLParser(" in match.group(2) or "parser" in match.group(2), (path, match[0])
    assert calls >= 4


# --------------------------------------------------------------------------- hole 2: form $ref

@pytest.fixture
def listener() -> Iterator[HookSink]:
    """A local HTTP server that records any request the server makes to it."""
    with HookSink() as sink:
        yield sink


def _schema(ref: str) -> str:
    return json.dumps({"type": "object", "properties": {"a": {"$ref": ref}}})


def test_hole2_a_form_ref_is_never_fetched_at_completion(listener: HookSink) -> None:
    for ref in (listener.url("/schema.json"), "file:///etc/passwd", f"//127.0.0.1:{listener.port}/x.json"):
        with pytest.raises(FormInvalid) as caught:
            forms.validate(_schema(ref), {"a": 1})
        assert "unresolvable $ref" in caught.value.errors[0].message
    assert listener.gets == [] and listener.hooks == []


REFS = {"http": "http://127.0.0.1:8080/x.json", "file": "file:///etc/passwd", "path": "../secret.json",
        "absolute path": "/etc/passwd", "network path": "//169.254.169.254/latest", "missing": "nope.json#/a",
        "$id": None}


@pytest.mark.parametrize("name", sorted(REFS))
def test_hole2_deploy_refuses_a_ref_outside_the_deployment(session: Session, review_org: Any, name: str) -> None:
    files = minimal()
    schema = json.loads(files["approve.schema.json"])
    if REFS[name] is None:
        schema["$id"] = "http://127.0.0.1:8080/base/"
    else:
        schema["properties"]["evil"] = {"$ref": REFS[name]}
    files["approve.schema.json"] = json.dumps(schema)
    found = refusal(session, files)
    assert "approve.schema.json" in found and ("no URL, no path" in found or "is not in the deployment" in found)


def test_a_ref_to_another_form_of_the_deployment_works(session: Session, review_org: dict[str, Actor]) -> None:
    files = minimal()
    schema = json.loads(files["approve.schema.json"])
    schema["properties"]["amount"] = {"$ref": "common.json#/$defs/amount"}
    files["approve.schema.json"] = json.dumps(schema)
    files["common.json"] = json.dumps({"$defs": {"amount": {"type": "number", "minimum": 0}}})
    deploy.deploy(session, files, actor=SYSTEM)
    stored = deploy.file_text(session, session.scalar(select(ProcessVersion.id)) or 0, "common.json")
    assert stored is not None  # kept with the version: the form needs it
    with pytest.raises(FormInvalid) as caught:
        forms.validate(files["approve.schema.json"], {"approved": True, "amount": -1}, {"common.json": stored})
    assert [e.field for e in caught.value.errors] == ["amount"]


# --------------------------------------------------------------------------- hole 2: webhook targets

INTERNAL = ["http://127.0.0.1:9/x", "http://localhost/x", "http://[::1]/x", "http://169.254.169.254/latest",
            "http://10.0.0.1/x", "http://192.168.1.1/x", "http://172.16.0.1/x", "http://100.64.0.1/x",
            "http://0.0.0.0/x", "http://[::ffff:127.0.0.1]/x", "http://[fe80::1]/x", "http://224.0.0.1/x",
            "https://user:pw@example.com/x", "ftp://example.com/x", "file:///etc/passwd", "gopher://127.0.0.1/x"]


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_webhook_targets_are_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(outbound.ALLOW_ENV, raising=False)
    with pytest.raises(outbound.Refused):
        outbound.check(url)


@pytest.fixture
def zhang(session: Session, frozen: Any) -> int:
    org.add_unit(session, code="gxj", name="工业和信息化局")
    user = org.add_user(session, username="zhang", display_name="张伟", unit_codes=["gxj"])
    session.commit()
    return int(user.id)


def test_hole2_a_webhook_to_loopback_is_refused_by_default_and_allowed_when_listed(
        session: Session, factory: sessionmaker[Session], zhang: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(outbound.ALLOW_ENV, raising=False)
    with HookSink() as sink:
        with pytest.raises(outbound.Refused, match="not a public address"):
            notify.set_webhook(session, user_id=zhang, url=sink.url("/robot"))
        with pytest.raises(outbound.Refused):
            outbound.post_json(sink.url("/robot"), b"{}")
        assert sink.hooks == []
        monkeypatch.setenv(outbound.ALLOW_ENV, "example.org, 127.0.0.1")
        notify.set_preference(session, user_id=zhang, kind="*", channels=["webhook"])
        notify.set_webhook(session, user_id=zhang, url=sink.url("/robot"))
        notify.send(session, notify.Note(user_id=zhang, kind="urge", title="催办", body="请办理", key="k1"))
        session.commit()
        assert run_outbox(factory) == 1 and [h.path for h in sink.hooks] == ["/robot"]


def test_hole2_dns_rebinding_is_checked_again_at_send_time(session: Session, factory: sessionmaker[Session], zhang: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The name resolves to a public address when saved, to loopback when sent: nothing is sent."""
    monkeypatch.delenv(outbound.ALLOW_ENV, raising=False)
    with HookSink() as sink:
        answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1", "127.0.0.1"])
        real = socket.getaddrinfo

        def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "robot.example.com":
                return real(next(answers), port, *args, **kwargs)
            return real(host, port, *args, **kwargs)
        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        url = f"http://robot.example.com:{sink.port}/robot"
        notify.set_preference(session, user_id=zhang, kind="*", channels=["webhook"])
        notify.set_webhook(session, user_id=zhang, url=url)  # public now: accepted
        notify.send(session, notify.Note(user_id=zhang, kind="urge", title="催办", body="请办理", key="k2"))
        session.commit()
        assert run_outbox(factory) == 0
        msg = session.scalar(select(OutboxMessage).execution_options(populate_existing=True))
        assert msg is not None and msg.delivered_at is None and "not a public address" in (msg.last_error or "")
        assert sink.hooks == []


# --------------------------------------------------------------------------- hole 3: XLSX memory bomb

def xlsx(rows: list[list[Any]], dimension: str | None = None, extra: dict[str, bytes] | None = None,
         replace: dict[str, bytes] | None = None) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for r in rows:
        sheet.append(r)
    out = io.BytesIO()
    book.save(out)
    src = zipfile.ZipFile(io.BytesIO(out.getvalue()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if dimension and item.filename == "xl/worksheets/sheet1.xml":
                data = re.sub(rb'<dimension ref="[^"]+"/>', f'<dimension ref="{dimension}"/>'.encode(), data)
            data = (replace or {}).get(item.filename, data)
            dst.writestr(item, data)
        for name, data in (extra or {}).items():
            dst.writestr(name, data)
    return buffer.getvalue()


def test_hole3_an_xlsx_declaring_a_huge_sheet_is_refused_before_reading() -> None:
    bomb = xlsx([["指标代码", "数值"]] + [[f"x{i}", i] for i in range(1200)], dimension="A1:XFD6000")
    assert len(bomb) < 40 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(indicators.UploadInvalid, match="XFD6000"):
            indicators.read_table("bomb.xlsx", bomb)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, peak  # main padded every row to 16 384 columns: hundreds of MB


def test_sheet_limits_cells_rows_and_columns() -> None:
    many = xlsx([[i] * 40 for i in range(sheets.MAX_CELLS // 40 + 10)])
    with pytest.raises(indicators.UploadInvalid, match="cells"):
        indicators.read_table("many.xlsx", many)
    wide = xlsx([["指标代码", "数值"] + ["x"] * 200, ["gdp_growth", 5] + ["y"] * 200])
    table = indicators.read_table("wide.xlsx", wide)
    assert [len(r) for r in table] == [sheets.MAX_COLUMNS] * 2 and table[1][:2] == ["gdp_growth", "5"]
    tall = xlsx([["指标代码", "数值"]] + [[f"x{i}", i] for i in range(indicators.MAX_TABLE_ROWS + 500)])
    assert len(indicators.read_table("tall.xlsx", tall)) == indicators.MAX_TABLE_ROWS
    csv = "指标代码,数值\n" + "".join(f"x{i},{i}{',' * 300}\n" for i in range(indicators.MAX_TABLE_ROWS + 500))
    rows = indicators.read_table("tall.csv", csv.encode())
    assert len(rows) == indicators.MAX_TABLE_ROWS and max(len(r) for r in rows) == sheets.MAX_COLUMNS


XLSX_BOMBS = {
    "zip ratio": ({"xl/bomb.bin": b"\0" * (8 * 1024 * 1024)}, None),
    "too many entries": ({f"xl/junk/{i}.xml": b"" for i in range(600)}, None),
    "entity bomb in another sheet": ({"xl/worksheets/sheet9.xml": XML_BOMBS["billion laughs"].encode()}, None),
    "entity bomb in the sheet": (None, {"xl/worksheets/sheet1.xml": XML_BOMBS["billion laughs"].encode()}),
    "external entity in the styles": (None, {"xl/styles.xml": XML_BOMBS["external entity"].encode()}),
}


@pytest.mark.parametrize("name", sorted(XLSX_BOMBS))
def test_xlsx_zip_and_xml_bombs_are_refused(name: str) -> None:
    extra, replace = XLSX_BOMBS[name]
    with pytest.raises(indicators.UploadInvalid) as caught:
        indicators.read_table("a.xlsx", xlsx([["指标代码", "数值"], ["名称", 1]], extra=extra, replace=replace))
    assert "root:" not in caught.value.message and "lollol" not in caught.value.message


def test_declared_area() -> None:
    assert sheets.declared_area("A1:XFD6000") == 16384 * 6000
    assert sheets.declared_area("A1") == 1 and sheets.declared_area("$B$2:$C$3") == 4
    assert sheets.declared_area("nonsense") == 0


def test_a_good_upload_is_still_read() -> None:
    rows = indicators.read_table("ok.xlsx", xlsx([["指标代码", "数值"], ["gdp_growth", 5.7]]))
    assert rows == [["指标代码", "数值"], ["gdp_growth", "5.7"]]
