"""Chinese an English reader still met outside the crawl: a refusal for something that is not there (任务不存在: 5 had
no English half: the page showed it whole), names listed in a flash joined with “、”. Each reads in the reader's
language now; a Chinese reader reads them as before."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import render_template_string
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from tests.web.test_task_page import at_review, deployed, flashes, post  # noqa: F401

Login = Callable[[str], FlaskClient]


def test_a_missing_task_or_instance_is_said_in_the_readers_language(deployed: sessionmaker[Session],  # noqa: F811
                                                                     login: Login) -> None:
    fg = login("fg")
    fg.get("/lang/en")
    for path, said in (("/tasks/987654", "no such task: 987654"), ("/instances/987654", "no such instance: 987654")):
        response = fg.get(path)
        body = response.get_data(as_text=True)
        assert response.status_code == 404 and said in body, path
        assert "不存在" not in body, path
    fg.get("/lang/zh")
    body = fg.get("/tasks/987654").get_data(as_text=True)
    assert "任务不存在: 987654" in body and "no such task" not in body


def test_names_a_flash_lists_are_joined_in_the_readers_language(deployed: sessionmaker[Session],  # noqa: F811
                                                                 login: Login) -> None:
    _, review = at_review(deployed)
    fg = login("fg")
    post(fg, f"/tasks/{review}/claim")
    fg.get("/lang/en")
    response = post(fg, f"/tasks/{review}/cc", {"usernames": "boss, zr", "note": "知悉"}, follow_redirects=True)
    [said] = [f for f in flashes(response.get_data(as_text=True)) if "copied" in f.lower() or "cc" in f.lower()]
    assert "、" not in said and ", " in said, said
    fg.get("/lang/zh")
    response = post(fg, f"/tasks/{review}/cc", {"usernames": "boss, zr", "note": "再知悉"}, follow_redirects=True)
    [said] = [f for f in flashes(response.get_data(as_text=True)) if "抄送" in f]
    assert "、" in said, said


def test_a_history_lines_recipients_are_joined_in_the_readers_language(app: Any) -> None:
    """督办 history listed a step's recipients joined with “、” by the plan, for every reader: the plan hands the names
    over, the page joins them (the `listed` filter)."""
    from plan.supervision.core import HistoryLine
    line = HistoryLine(datetime(2026, 3, 7, tzinfo=UTC), "单位负责人", "系统", ("张伟", "王建国"))
    shown = "{% for line in lines %}{{ line.note|listed }}|{{ 'typed'|listed }}{% endfor %}"
    with app.test_request_context(headers={"Cookie": "lang=en"}):
        assert render_template_string(shown, lines=[line]) == "张伟, 王建国|typed"
    with app.test_request_context():
        assert render_template_string(shown, lines=[line]) == "张伟、王建国|typed"
