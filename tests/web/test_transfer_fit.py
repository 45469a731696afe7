"""A 转办 (the task page's form, the API, 批量转办) to someone who cannot complete the step is refused naming the field
and the reason, and changes nothing (engine.tasks.fit: the rule the investment loop's 跟进签约 registers).

The check here stands in for the application's (a process whose step `st` cannot complete): the web and the API only
carry the engine's refusal, so any registered check is refused the same way.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import tasks
from engine.org.actors import Actor, actor_for
from engine.runtime.models import Incident
from engine.tasks import fit
from engine.tasks.models import HumanTask
from tests.web.conftest import csrf_of
from tests.web.test_inbox import minimal_task, user_id
from tests.web.test_task_page import deployed, post, row  # noqa: F401

Login = Callable[[str], FlaskClient]
REASON = "此任务办理的项目“XM-1”不在st的项目范围内 (project XM-1 is out of st's reach)"


@pytest.fixture
def st_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    def check(_session: Session, _task: HumanTask, actor: Actor) -> str | None:
        return REASON if actor.username == "st" else None
    monkeypatch.setattr(fit, "_CHECKS", {"minimal": check})


def claimed(factory: sessionmaker[Session], title: str) -> int:
    task_id = minimal_task(factory, title)
    with factory() as s:
        tasks.claim(s, task_id=task_id, actor=actor_for(s, "fg"))
        s.commit()
    return task_id


def test_transfer_to_one_who_cannot_complete_is_refused_on_the_page_the_api_and_in_bulk(
        deployed: sessionmaker[Session], login: Login, st_cannot: None) -> None:  # noqa: F811
    a, b = claimed(deployed, "项目甲"), claimed(deployed, "项目乙")
    fg_id = user_id(deployed, "fg")
    fg = login("fg")
    page = post(fg, f"/tasks/{a}/transfer", {"to_username": "st", "note": "请办"})
    said = page.get_data(as_text=True)  # the refusal's page, as for a 转办 to someone out of one's scope
    assert page.status_code == 403
    assert "转办给（to_username）：此任务办理的项目“XM-1”不在st的项目范围内，此人不能办理" in said
    assert "请另选他人" in said and "reach" not in said  # one language on the page
    fg.set_cookie("lang", "en")
    english = post(fg, f"/tasks/{a}/transfer", {"to_username": "st"}).get_data(as_text=True)
    assert "to_username: project XM-1 is out of st&#39;s reach; they cannot complete this task, choose someone else" \
        in english and "转办给" not in english
    fg.set_cookie("lang", "zh")
    assert row(deployed, a).assignee_id == fg_id
    api = fg.post(f"/api/tasks/{a}/transfer", json={"to_username": "st"},
                  headers={"X-CSRFToken": csrf_of(fg, "/inbox")})
    assert api.status_code == 403 and api.json is not None, api.get_data(as_text=True)
    assert (api.json["error"], api.json["field"], api.json["reason"]) == ("step_out_of_reach", "to_username", REASON)
    assert row(deployed, a).assignee_id == fg_id
    bulk = post(fg, "/inbox/bulk", {"ids": [a, b], "action": "transfer", "to_username": "st"})
    html = bulk.get_data(as_text=True)
    results = html[html.index("bulk-results"):html.index("</section>", html.index("bulk-results"))]
    assert results.count('class="failed"') == 2 and "请另选他人" in results
    assert [row(deployed, t).assignee_id for t in (a, b)] == [fg_id, fg_id]
    # someone who can complete it takes it over, by each way
    assert post(fg, "/inbox/bulk", {"ids": [a, b], "action": "transfer", "to_username": "zr"}).status_code == 200
    assert [row(deployed, t).assignee_id for t in (a, b)] == [user_id(deployed, "zr")] * 2


def test_one_who_can_no_longer_complete_the_task_is_refused_on_the_page_and_the_api_and_keeps_it(
        deployed: sessionmaker[Session], login: Login, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Handed to st while st could complete it; st then cannot (moved unit): the completion says why, changes
    nothing and opens no incident, and the task waits with st for a leader's 改派."""
    task_id = claimed(deployed, "项目丙")
    with deployed() as s:
        operations_transfer(s, task_id)
    monkeypatch.setattr(fit, "_CHECKS", {"minimal": lambda _s, _t, a: REASON if a.username == "st" else None})
    st = login("st")
    page = post(st, f"/tasks/{task_id}/complete", {"f/approved": "true", "f/comment": "同意"})
    said = page.get_data(as_text=True)
    assert page.status_code == 403 and "您不能办理此任务：此任务办理的项目“XM-1”不在st的项目范围内。未作任何更改" in said
    api = st.post(f"/api/tasks/{task_id}/complete", json={"data": {"approved": True, "comment": "同意"}},
                  headers={"X-CSRFToken": csrf_of(st, "/inbox")})
    assert api.status_code == 403 and api.json is not None and api.json["error"] == "step_out_of_reach"
    done = row(deployed, task_id)
    assert (done.state, done.assignee_id) == ("ready", user_id(deployed, "st"))
    with deployed() as s:
        assert s.scalar(select(func.count(Incident.id))) == 0
        s.rollback()


def operations_transfer(session: Session, task_id: int) -> None:
    from engine.tasks import operations
    operations.transfer(session, task_id=task_id, actor=actor_for(session, "fg"), to_username="st")
    session.commit()
