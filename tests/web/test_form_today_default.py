"""A date field that opens on today: `"ui:default": "today"` (engine/form_defaults.py), used by 联合出证's 出证日期.

The window typed the 出证日期 by hand on every certificate (a JSON Schema `default` is a literal fixed at deploy).
The UI schema now names a keyword, worked out in the city's time zone each time the form is drawn and never
stored; the server still checks what is submitted (the date between the application day and today). A keyword
deploy does not know — a typo, an expression, markup, a value of another type — is refused at deploy naming the
file and path, and ignored when a form stored before that check is drawn (nothing evaluated, nothing shown).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from engine import clock, runtime
from engine.org.actors import Actor
from engine.runtime import instances
from engine.spiff import form_files
from tests.processes.test_parallel_approval import (  # noqa: F401 (fixtures used by name)
    APPLICATION,
    BPMN,
    accept,
    at,
    data_of,
    deployed,
    do,
    people,
    review,
)
from tests.steps import only_task
from tests.web.conftest import app_on
from tests.web.test_documents_pages import client_of
from web.formrender import Form, initial

# 17:30 UTC on 9 October is 01:30 on 10 October in Jiaozhou: the server's UTC date is the wrong day
LATE_UTC = datetime(2025, 10, 9, 17, 30, tzinfo=UTC)
SCHEMA = {"type": "object", "properties": {
    "issued_on": {"type": "string", "format": "date"},
    "fixed": {"type": "string", "format": "date", "default": "2025-01-02"},
    "note": {"type": "string"},
    "rows": {"type": "array", "items": {"type": "object", "properties": {"day": {"type": "string", "format": "date"}}}},
}}
HOSTILE = ["tomorrow", "TODAY", "today ", "{{ 7*7 }}", "__import__('os').system('id')", "<script>alert(1)</script>",
           "now", "", 0, 1.5, True, None, ["today"], {"today": True}]


@pytest.fixture
def late() -> Iterator[None]:
    clock.freeze(LATE_UTC)
    yield
    clock.unfreeze()


def _raw(ui: dict[str, Any], data: dict[str, Any] | None = None) -> dict[str, list[str]]:
    return initial(Form(SCHEMA, ui), data).to_dict(flat=False)


def test_today_is_the_city_s_date_when_the_form_is_drawn(late: None) -> None:
    raw = _raw({"issued_on": {"ui:widget": "date", "ui:default": "today"}})
    assert raw["f/issued_on"] == ["2025-10-10"]
    assert raw["f/fixed"] == ["2025-01-02"]  # a literal default as before
    clock.freeze(LATE_UTC.replace(day=20))  # drawn another day: that day, nothing remembered
    assert _raw({"issued_on": {"ui:default": "today"}})["f/issued_on"] == ["2025-10-21"]


def test_what_the_data_holds_wins_and_a_literal_default_too(late: None) -> None:
    ui = {"issued_on": {"ui:default": "today"}, "fixed": {"ui:default": "today"}}
    raw = _raw(ui, {"issued_on": "2025-09-30"})
    assert raw["f/issued_on"] == ["2025-09-30"] and raw["f/fixed"] == ["2025-01-02"]


@pytest.mark.parametrize("keyword", HOSTILE)
def test_an_unknown_keyword_is_ignored_when_drawn(late: None, keyword: Any) -> None:
    raw = _raw({"issued_on": {"ui:default": keyword}, "note": {"ui:default": keyword}})
    assert "f/issued_on" not in raw and "f/note" not in raw


def test_today_fills_date_fields_only(late: None) -> None:
    raw = _raw({"note": {"ui:default": "today"}, "rows": {"items": {"day": {"ui:default": "today"}}}},
               {"rows": [{"day": "2025-10-01"}, {}]})
    assert "f/note" not in raw  # a text field: not a date, nothing filled
    assert raw["f/rows/0/day"] == ["2025-10-01"] and raw["f/rows/1/day"] == ["2025-10-10"]


@pytest.mark.parametrize("keyword", HOSTILE)
def test_deploy_refuses_an_unknown_keyword_naming_the_file_and_path(keyword: Any) -> None:
    ui = {"ui:order": ["issued_on"], "rows": {"items": {"day": {"ui:widget": "date", "ui:default": keyword}}}}
    text = json.dumps(ui, ensure_ascii=False, indent=2)
    problems = form_files.check("x.uischema.json", text, ["x.uischema.json"], {"x.uischema.json": ui})
    assert [p.message for p in problems] and all("ui:default" in p.message for p in problems), problems
    assert "rows/items/day/ui:default" in problems[0].message and problems[0].line == 9, problems


def test_deploy_takes_today() -> None:
    text = (BPMN / "forms" / "approval_issue_certificate.uischema.json").read_text()
    assert json.loads(text)["issued_on"]["ui:default"] == "today"  # 出证日期
    assert form_files.check("approval_issue_certificate.uischema.json", text, [], {}) == []


@pytest.fixture
def waiting(session: Session, deployed: None, people: dict[str, Actor]) -> int:  # noqa: F811
    """A 并联审批 applied for on 25 September, every department agreed: 联合出证 is open."""
    runtime._spec_cache.clear()
    clock.freeze(at("2025-09-25"))
    row = instances.start(session, process_key="parallel_approval", actor=people["qiye_zhang"],
                          business_key=APPLICATION["project_code"], title="胶州湾智能家电产业园（一期）并联审批")
    session.commit()
    do(session, only_task(session, row.id, "submit_application"), people["qiye_zhang"], APPLICATION)
    accept(session, people, row.id, at("2025-09-26"))
    clock.freeze(at("2025-09-29", "10:00"))
    for code in ("fgj", "zrzyj", "sthjj"):
        review(session, people, row.id, code)
    clock.unfreeze()
    return row.id


@pytest.fixture
def app(db_url: str, session: Session, waiting: int) -> Iterator[Flask]:
    yield from app_on(db_url, session, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
    runtime._spec_cache.clear()


def test_the_certificate_form_opens_on_today_and_the_server_still_checks_the_date(
        app: Flask, waiting: int, session: Session) -> None:
    task_id = only_task(session, waiting, "issue_certificate").id
    session.rollback()
    window = client_of(app, "window_wang")
    clock.freeze(LATE_UTC)
    try:
        html = window.get(f"/tasks/{task_id}").get_data(as_text=True)
        field = re.search(r'<input[^>]*name="f/issued_on"[^>]*>', html)
        assert field is not None and 'value="2025-10-10"' in field.group(0), field
        # drawn, not stored: the instance's data holds no 出证日期 until the window submits one
        assert "issued_on" not in data_of(session, waiting)
        session.rollback()
        refused = window.post(f"/tasks/{task_id}/complete", data={"f/issued_on": "2025-09-24"})
        assert refused.status_code == 422 and "早于申请日期" in refused.get_data(as_text=True)
        done = window.post(f"/tasks/{task_id}/complete", data={"f/issued_on": "2025-10-10"})
        assert done.status_code in (302, 303), done.status_code
    finally:
        clock.unfreeze()
