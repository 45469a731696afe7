"""审计 pages: a finished 并联审批's timeline (every step, actor, time, opinion), filters and keyset pages,
escaped before/after values, CSV/XLSX exports, and the verify page naming a row altered by hand."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from engine import clock, org, runtime
from engine.audit.models import AuditEvent
from engine.db import is_postgres
from engine.org.actors import Actor
from engine.org.models import User
from tests.processes.test_parallel_approval import (  # noqa: F401 (fixtures used by name)
    DEPARTMENTS,
    accept,
    at,
    certify,
    deployed,
    people,
    review,
    start_by_hand,
)
from tests.web.conftest import PASSWORD, PASSWORD_HASH, csrf_of
from web import create_app


@pytest.fixture
def finished(session: Session, deployed: None, people: dict[str, Actor]) -> int:  # noqa: F811
    """A 并联审批 run to its joint certificate: accepted, three departments approve, certified."""
    runtime._spec_cache.clear()
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"))
    clock.freeze(at("2025-09-29", "10:00"))
    for code in ("fgj", "zrzyj", "sthjj"):
        review(session, people, iid, code)
    certify(session, people, iid, at("2025-10-10", "10:00"))
    clock.unfreeze()
    return iid


@pytest.fixture
def audit_app(session: Session, finished: int, db_url: str) -> Iterator[Flask]:
    org.add_role(session, code="auditor", name="审计督查")
    org.add_user(session, username="auditor", display_name="审计员乙", role_codes=["auditor"])
    for user in session.query(User):
        user.password_hash = PASSWORD_HASH
    session.commit()
    session.close()
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "SECRET_KEY": "test-secret", "RATELIMIT_ENABLED": False})
    yield app
    app.extensions["jzflow.engine"].dispose()
    runtime._spec_cache.clear()


def client_of(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert response.status_code == 302
    return client


def test_the_timeline_of_a_finished_parallel_approval(audit_app: Flask, finished: int) -> None:
    page = client_of(audit_app, "auditor").get(f"/audit/instances/{finished}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    rows = html.split('<tr data-event="')[1:]
    completed = [r for r in rows if 'data-action="task.complete"' in r]
    steps = [r.split('data-bpmn-id="', 1)[1].split('"', 1)[0] for r in completed]
    assert steps == ["submit_application", "window_accept", "department_review", "department_review",
                     "department_review", "issue_certificate"]
    window = completed[1]
    assert "窗口 王芳" in window and "2025-09-26 09:30" in window and "材料齐全，予以受理" in window
    for code, row in zip(("fgj", "zrzyj", "sthjj"), completed[2:5], strict=True):
        assert f"{DEPARTMENTS[code]}审查员" in row and "2025-09-29 10:00" in row and f"{DEPARTMENTS[code]}：同意" in row
    assert "海湾家电 张伟" in rows[0] and 'data-action="instance.start"' in rows[0]
    assert any('data-action="approval.working_days"' in r for r in rows)
    assert "parallel_approval</code> v1 · 已完成" in html


def test_a_row_altered_by_hand_is_named_by_the_verify_page(audit_app: Flask, finished: int, db_url: str) -> None:
    auditor = client_of(audit_app, "auditor")
    assert "审计链完好" in auditor.get("/audit/verify").get_data(as_text=True)
    session = audit_app.extensions["jzflow.sessionmaker"]()
    target = session.scalar(select(AuditEvent).where(AuditEvent.stream == f"instance:{finished}",
                                                     AuditEvent.action == "task.complete").order_by(AuditEvent.seq))
    assert target is not None
    if is_postgres(session):  # the append-only trigger refuses this: an administrator would have to drop it first
        session.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
    session.execute(text("UPDATE audit_event SET actor_name = 'someone_else' WHERE id = :id"), {"id": target.id})
    if is_postgres(session):
        session.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only"))
    session.commit()
    session.close()
    html = auditor.get("/audit/verify").get_data(as_text=True)
    assert "审计链已被破坏" in html and f'<a href="/audit/events/{target.id}" class="first-bad">#{target.id}</a>' in html
    assert f"event #{target.id}" in html and "altered" in html
    assert auditor.get(f"/audit/events/{target.id}").status_code == 200


def test_filters_pages_and_escaped_values(audit_app: Flask, finished: int) -> None:
    auditor = client_of(audit_app, "auditor")

    def ids(query: str) -> list[int]:
        html = auditor.get(f"/audit?{query}").get_data(as_text=True)
        return [int(chunk.split('"', 1)[0]) for chunk in html.split('<tr data-event="')[1:]]

    everything = ids("limit=200")
    assert everything == sorted(everything, reverse=True)  # newest first
    on_instance = ids(f"instance={finished}&limit=200")
    assert on_instance and set(on_instance) < set(everything)
    completes = ids(f"instance={finished}&action=task.complete&limit=200")
    assert len(completes) == 6
    assert len(ids(f"instance={finished}&action=task.*&limit=200")) > 6  # claims too
    assert set(ids("process=parallel_approval&limit=200")) >= set(on_instance) | set(ids("action=process.deploy"))
    assert ids("actor=fgj_reviewer&action=task.complete") == ids("actor=发展和改革局审查员&action=task.complete") != []
    assert ids("object_type=human_task&limit=200") and all(i in everything for i in ids("object_type=human_task"))
    assert ids("since=2025-10-10&until=2025-10-10&action=task.complete") == [max(completes)]  # the certificate
    assert ids("until=2020-01-01") == []
    # keyset pages: two at a time, no gaps, no repeats
    seen: list[int] = []
    query = f"instance={finished}&limit=2"
    while True:
        html = auditor.get(f"/audit?{query}").get_data(as_text=True)
        seen += [int(c.split('"', 1)[0]) for c in html.split('<tr data-event="')[1:]]
        if 'rel="next"' not in html:
            break
        query = html.split('rel="next"')[0].rsplit('href="/audit?', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert seen == on_instance
    assert auditor.get("/audit?instance=abc").status_code == 422
    assert auditor.get("/audit?since=yesterday").status_code == 422


def test_a_bad_filter_comes_back_on_the_page_with_what_was_typed(audit_app: Flask, finished: int) -> None:
    """A slip in one filter (起始 after 截止, letters in 实例编号) answered a bare error page: the auditor lost the
    whole filter and had to type it again. The page comes back (still 422) with the filter as typed, the field named
    next to it, and no records, nor exports of a filter that means nothing."""
    auditor = client_of(audit_app, "auditor")
    response = auditor.get("/audit?since=2025-10-10T00:00&until=2025-10-01T00:00&actor=fgj_reviewer&instance=12")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'name="since" value="2025-10-10T00:00" aria-invalid="true"' in html
    assert 'name="actor" value="fgj_reviewer"' in html and 'name="instance" value="12"' in html
    assert 'role="alert"' in html and "起始时间须早于截止时间" in html
    assert '<tr data-event="' not in html and "/audit/export" not in html
    response = auditor.get("/audit?instance=abc&action=task.complete")
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "实例编号须为数字" in html
    assert 'name="instance" value="abc" maxlength="20" inputmode="numeric" aria-invalid="true"' in html
    assert 'name="action" value="task.complete"' in html


def test_before_and_after_values_are_escaped(audit_app: Flask, finished: int) -> None:
    session = audit_app.extensions["jzflow.sessionmaker"]()
    from engine import audit
    from engine.org.actors import SYSTEM
    event = audit.record(session, SYSTEM, "test.note", stream="test:1", object_type="note", object_id=1,
                         before={"html": "<script>alert(1)</script>"}, after={"formula": "=HYPERLINK(\"x\")"})
    session.commit()
    session.close()
    auditor = client_of(audit_app, "auditor")
    html = auditor.get(f"/audit/events/{event.id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    listing = auditor.get("/audit?action=test.note").get_data(as_text=True)
    assert "&lt;script&gt;" in listing and "<script>alert" not in listing


def test_csv_and_xlsx_exports_follow_the_filter(audit_app: Flask, finished: int) -> None:
    auditor = client_of(audit_app, "auditor")
    response = auditor.get(f"/audit/export.csv?instance={finished}&action=task.complete")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    body = response.get_data(as_text=True)
    assert body.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))
    assert len(rows) == 6 and [r["action"] for r in rows] == ["task.complete"] * 6
    assert rows[1]["actor"] == "window_wang" and rows[1]["actor_name"] == "窗口 王芳"  # the login, then the name
    assert "材料齐全，予以受理" in rows[1]["after"]
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)  # oldest first
    from openpyxl import load_workbook
    xlsx = auditor.get(f"/audit/export.xlsx?instance={finished}")
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.data), read_only=True).active
    assert sheet is not None
    values: list[Any] = list(sheet.iter_rows(values_only=True))
    assert values[0][:5] == ("id", "at", "actor", "actor_name", "action")
    assert len(values) - 1 == len([r for r in values[1:] if r[7] == f"instance:{finished}"]) > 6


def test_formulas_never_reach_a_spreadsheet(audit_app: Flask, finished: int) -> None:
    session = audit_app.extensions["jzflow.sessionmaker"]()
    from engine import audit
    from engine.org.actors import SYSTEM
    audit.record(session, SYSTEM, "=cmd|' /C calc'!A0", stream="test:2", object_type="note", object_id="@x",
                 after={"a": 1})
    session.commit()
    session.close()
    auditor = client_of(audit_app, "auditor")
    body = auditor.get("/audit/export.csv?object_type=note").get_data(as_text=True)
    [row] = list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))
    assert row["action"].startswith("'=") and row["object_id"] == "'@x"
    from openpyxl import load_workbook
    sheet = load_workbook(io.BytesIO(auditor.get("/audit/export.xlsx?object_type=note").data)).active
    assert sheet is not None
    cell = sheet.cell(row=2, column=5)
    assert cell.data_type == "s" and str(cell.value).startswith("'=")


def test_only_auditors_and_admins_read_the_audit_trail(audit_app: Flask, finished: int) -> None:
    reviewer = client_of(audit_app, "fgj_reviewer")
    for path in ("/audit", "/audit/verify", f"/audit/instances/{finished}", "/audit/export.csv"):
        assert reviewer.get(path).status_code == 403, path
    auditor = client_of(audit_app, "auditor")
    token = csrf_of(auditor, "/audit")
    assert auditor.post("/tasks/1/claim", data={"csrf_token": token}).status_code == 403


@pytest.mark.parametrize("query", ["until=9999-12-31", "since=0001-01-01T00:00", "until=0001-01-01T00:00"])
def test_a_date_at_the_calendar_s_edge_is_refused_naming_its_field(audit_app: Flask, finished: int,
                                                                   query: str) -> None:
    """The day after 9999-12-31 (or UTC before year 1) is no date: it was a 500 on the page and both exports."""
    auditor = client_of(audit_app, "auditor")
    field = query.partition("=")[0]
    for path in ("/audit", "/audit/export.csv", "/audit/export.xlsx"):
        response = auditor.get(f"{path}?{query}", headers={"Accept": "application/json"})
        assert response.status_code == 422, (path, response.status_code)
        assert field in response.get_data(as_text=True)


def test_a_reversed_range_is_refused_not_answered_empty(audit_app: Flask, finished: int) -> None:
    auditor = client_of(audit_app, "auditor")
    for path in ("/audit", "/audit/export.csv"):
        response = auditor.get(f"{path}?since=2025-10-10&until=2025-09-01", headers={"Accept": "application/json"})
        assert response.status_code == 422 and "since" in response.get_data(as_text=True), path
    assert auditor.get("/audit?since=2025-09-01&until=2025-09-01").status_code == 200  # one day is a range


def test_an_export_past_its_cap_is_refused_with_a_message_not_cut_silently(audit_app: Flask, finished: int,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An export used to end at MAX_EXPORT rows without a word: the auditor took a cut file for the whole trail."""
    from engine.audit import audit_views
    monkeypatch.setattr(audit_views, "MAX_EXPORT", 5)
    auditor = client_of(audit_app, "auditor")
    for fmt in ("csv", "xlsx"):
        response = auditor.get(f"/audit/export.{fmt}?instance={finished}")
        body = response.get_data(as_text=True)
        assert response.status_code == 422 and "5" in body and "缩小" in body, fmt
    small = auditor.get(f"/audit/export.csv?instance={finished}&action=instance.start")
    assert small.status_code == 200 and len(list(csv.reader(io.StringIO(small.get_data(as_text=True))))) >= 2
