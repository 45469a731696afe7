"""Actions on many objects at once, on PostgreSQL: the same form posted twice at the same moment (a double click,
the same browser: one session) handles each object once, and an action over too many objects is refused up front.

Each race lets both requests pass their checks before either writes (a barrier with a short timeout: once the
first one holds a lock the second waits for, the barrier times out and the first goes on alone).
"""
from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import tasks
from engine.audit.models import AuditEvent
from engine.deploy import versions
from engine.notify.models import OutboxMessage
from engine.org.models import User
from engine.runtime.models import ProcessInstance
from engine.tasks import collab, operations
from engine.tasks.collab_models import CarbonCopy
from tests.web.conftest import csrf_of
from tests.web.flows import db, two_at_once
from tests.web.test_inbox import minimal_task
from tests.web.test_modeller import clients, staff, two_versions  # noqa: F401
from tests.web.test_task_page import deployed, row  # noqa: F401

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)

MEET = 2.0



def meet_before(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
    original, barrier = getattr(module, name), threading.Barrier(2)

    def wrapper(*a: Any, **k: Any) -> Any:
        try:
            barrier.wait(timeout=MEET)
        except threading.BrokenBarrierError:
            pass
        return original(*a, **k)
    monkeypatch.setattr(module, name, wrapper)


def twin(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another client on the same session: the same browser posting the same form again."""
    other = app.test_client()
    for cookie in client._cookies.values():
        other.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    return other


def audited(app: Flask, action: str) -> dict[str, int]:
    with db(app) as s:
        return dict(s.execute(select(AuditEvent.object_id, func.count()).where(AuditEvent.action == action)
                              .group_by(AuditEvent.object_id)).all())


def test_a_migration_posted_twice_at_once_moves_each_instance_once_and_both_answers_say_so(
        app: Flask, clients: dict[str, FlaskClient], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    owner = clients["owner"]
    v1, v2 = two_versions(app, owner, running_on_v1=4)
    with db(app) as s:
        ids = list(s.scalars(select(ProcessInstance.id).order_by(ProcessInstance.id)))
    form = {"csrf_token": csrf_of(owner, f"/modeller/versions/{v1}/migrate?to={v2}"), "to": str(v2),
            "instance": [str(i) for i in ids]}
    again = twin(app, owner)
    meet_before(monkeypatch, versions, "_move")  # both found the first instance movable
    answers = two_at_once(lambda: owner.post(f"/modeller/versions/{v1}/migrate", data=form),
                          lambda: again.post(f"/modeller/versions/{v1}/migrate", data=form))
    assert [a.status_code for a in answers] == [200, 200], [a.get_data(as_text=True)[-800:] for a in answers]
    with db(app) as s:
        assert {s.get(ProcessInstance, i).version_id for i in ids} == {v2}  # type: ignore[union-attr]
    assert audited(app, "instance.migrate") == {str(i): 1 for i in ids}
    for answer in answers:  # each says, for every instance, whether it moved it or why not
        html = answer.get_data(as_text=True)
        report = html[html.index("migrate-report"):]
        for i in ids:
            assert f'href="/instances/{i}"' in report or f'data-instance="{i}"' in report, i
    refused = answers[1].get_data(as_text=True) if "already runs" in answers[1].get_data(as_text=True) \
        else answers[0].get_data(as_text=True)
    assert "the instance already runs on version 2" in refused  # the later one names what the first did


def test_a_migration_of_too_many_instances_is_refused_before_any_moves(
        app: Flask, clients: dict[str, FlaskClient]) -> None:  # noqa: F811
    owner = clients["owner"]
    v1, v2 = two_versions(app, owner, running_on_v1=2)
    with db(app) as s:
        ids = list(s.scalars(select(ProcessInstance.id).order_by(ProcessInstance.id)))
    chosen = ids + list(range(10**6, 10**6 + 10_000))  # 10,002 instances: one transaction would lock them for minutes
    response = owner.post(f"/modeller/versions/{v1}/migrate", data={
        "csrf_token": csrf_of(owner, f"/modeller/versions/{v1}/migrate?to={v2}"), "to": str(v2),
        "instance": [str(i) for i in chosen]})
    html = response.get_data(as_text=True)
    assert response.status_code == 422, html[-800:]
    assert f"一次最多迁移 {versions.MAX_MIGRATE} 个实例" in html and "10002" in html
    with db(app) as s:
        assert {s.get(ProcessInstance, i).version_id for i in ids} == {v1}  # type: ignore[union-attr]
    assert audited(app, "instance.migrate") == {}


def task_events(app: Flask, action: str) -> dict[int, int]:
    """How many `action` events each task has (the task id is in the event's object or its `after`)."""
    out: dict[int, int] = {}
    with db(app) as s:
        for object_type, object_id, after in s.execute(select(AuditEvent.object_type, AuditEvent.object_id,
                                                              AuditEvent.after).where(AuditEvent.action == action)):
            task_id = int(object_id) if object_type == "human_task" else int((after or {})["task_id"])
            out[task_id] = out.get(task_id, 0) + 1
    return out


def notes_to(app: Flask, username: str) -> list[str]:
    with db(app) as s:
        user_id = s.scalar(select(User.id).where(User.username == username))
        return [m.payload["link"] for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
                if m.payload.get("user_id") == user_id]


def bulk_form(client: FlaskClient, ids: list[int], **fields: Any) -> dict[str, Any]:
    return {"csrf_token": csrf_of(client, "/inbox"), "ids": [str(i) for i in ids], **fields}


def test_a_bulk_transfer_posted_twice_at_once_hands_each_task_over_once(
        app: Flask, deployed: sessionmaker[Session], login: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    ids = [minimal_task(deployed, f"转办项目{i}") for i in range(5)]
    fg = login("fg")
    assert fg.post("/inbox/bulk", data=bulk_form(fg, ids, action="claim")).status_code == 200
    form = bulk_form(fg, ids, action="transfer", to_username="st", note="请办理")
    again = twin(app, fg)
    meet_before(monkeypatch, operations, "transfer")
    answers = two_at_once(lambda: fg.post("/inbox/bulk", data=form), lambda: again.post("/inbox/bulk", data=form))
    assert [a.status_code for a in answers] == [200, 200]
    with db(app) as s:
        st = s.scalar(select(User.id).where(User.username == "st"))
    assert {row(deployed, t).assignee_id for t in ids} == {st}
    assert task_events(app, "task.transfer") == {t: 1 for t in ids}
    assert sorted(notes_to(app, "st")) == sorted(f"/tasks/{t}" for t in ids)  # one notification per task
    done = [a.get_data(as_text=True).count('class="ok"') for a in answers]
    assert sorted(done) == [0, 5], done  # the later request says each was no longer fg's to hand over


def test_a_bulk_completion_posted_twice_at_once_completes_each_task_once(
        app: Flask, deployed: sessionmaker[Session], login: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    ids = [minimal_task(deployed, f"办理项目{i}") for i in range(4)]
    fg = login("fg")
    form = bulk_form(fg, ids, action="complete", confirm="1", opinion="同意", **{"f/approved": "true",
                                                                               "f/comment": "批量同意"})
    again = twin(app, fg)
    meet_before(monkeypatch, tasks, "complete")
    answers = two_at_once(lambda: fg.post("/inbox/bulk", data=form), lambda: again.post("/inbox/bulk", data=form))
    assert [a.status_code for a in answers] == [200, 200], [a.get_data(as_text=True)[-600:] for a in answers]
    assert {row(deployed, t).state for t in ids} == {"completed"}
    assert task_events(app, "task.complete") == {t: 1 for t in ids}
    done = [a.get_data(as_text=True).count('class="ok"') for a in answers]
    assert sum(done) == 4, done


def test_a_bulk_action_dying_midway_leaves_nothing_done_and_running_it_again_does_each_once(
        app: Flask, deployed: sessionmaker[Session], login: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    ids = [minimal_task(deployed, f"中断项目{i}") for i in range(4)]
    fg = login("fg")
    assert fg.post("/inbox/bulk", data=bulk_form(fg, ids, action="claim")).status_code == 200
    form = bulk_form(fg, ids, action="transfer", to_username="st", note="请办理")
    original, calls = operations.transfer, []

    def dies_at_the_third(*a: Any, **k: Any) -> Any:  # the process dies between the second and the third task
        calls.append(k["task_id"])
        if len(calls) == 3:
            raise SystemExit("killed")
        return original(*a, **k)
    monkeypatch.setattr(operations, "transfer", dies_at_the_third)
    with pytest.raises(SystemExit):
        fg.post("/inbox/bulk", data=form)
    with db(app) as s:
        fg_id = s.scalar(select(User.id).where(User.username == "fg"))
    assert {row(deployed, t).assignee_id for t in ids} == {fg_id}  # none handed over, none half
    assert task_events(app, "task.transfer") == {} and notes_to(app, "st") == []
    monkeypatch.setattr(operations, "transfer", original)
    response = fg.post("/inbox/bulk", data=form)
    assert response.status_code == 200 and response.get_data(as_text=True).count('class="ok"') == 4
    assert task_events(app, "task.transfer") == {t: 1 for t in ids}
    assert sorted(notes_to(app, "st")) == sorted(f"/tasks/{t}" for t in ids)


def test_a_bulk_action_over_more_tasks_than_it_takes_is_refused_not_cut_short(
        app: Flask, deployed: sessionmaker[Session], login: Any) -> None:  # noqa: F811
    from web.inbox.actions import MAX_BULK
    ids = [minimal_task(deployed, f"超量项目{i}") for i in range(2)]
    fg = login("fg")
    chosen = list(range(10**6, 10**6 + MAX_BULK)) + ids  # the real ones last: a cut would drop them unsaid
    response = fg.post("/inbox/bulk", data=bulk_form(fg, chosen, action="claim"))
    html = response.get_data(as_text=True)
    assert response.status_code == 422, html[-600:]
    assert f"一次最多处理 {MAX_BULK} 项" in html and str(MAX_BULK + 2) in html
    assert {row(deployed, t).assignee_id for t in ids} == {None}
    query = "&".join(f"ids={i}" for i in chosen)
    page = fg.get(f"/inbox/bulk/complete?{query}")
    assert page.status_code == 422 and f"一次最多处理 {MAX_BULK} 项" in page.get_data(as_text=True)


def test_a_carbon_copy_posted_twice_at_once_reaches_each_person_once(
        app: Flask, deployed: sessionmaker[Session], login: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    task = minimal_task(deployed, "抄送项目")
    fg = login("fg")
    form = {"csrf_token": csrf_of(fg, f"/tasks/{task}"), "usernames": ["st", "zr"], "note": "请阅"}
    again = twin(app, fg)
    meet_before(monkeypatch, collab, "carbon_copy")
    answers = two_at_once(lambda: fg.post(f"/tasks/{task}/cc", data=form),
                          lambda: again.post(f"/tasks/{task}/cc", data=form))
    assert [a.status_code for a in answers] == [302, 302]
    assert fg.post(f"/tasks/{task}/cc", data=form).status_code == 302  # and once more: the back button, a retry
    with db(app) as s:
        copies = s.execute(select(CarbonCopy.user_id, func.count()).group_by(CarbonCopy.user_id)).all()
        notes = [m.payload["user_id"] for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
                 if m.payload.get("kind") == "cc"]
    assert sorted(n for _, n in copies) == [1, 1], copies  # one 抄送 each, not one per post
    assert sorted(notes) == sorted(u for u, _ in copies)  # and one notification each
    assert list(audited(app, "instance.cc").values()) == [1]


def test_a_carbon_copy_to_more_people_than_it_takes_is_refused_before_anyone_is_told(
        app: Flask, deployed: sessionmaker[Session], login: Any) -> None:  # noqa: F811
    from engine import org
    from engine.tasks import people
    task = minimal_task(deployed, "抄送全员")
    names = [f"colleague{i:03d}" for i in range(people.MAX_CHOSEN + 1)]
    with db(app) as s:
        for name in names:  # fg's own unit: each one fg may copy
            org.add_user(s, username=name, display_name=f"同事{name[-3:]}", unit_codes=["fgj"])
    fg = login("fg")
    response = fg.post(f"/tasks/{task}/cc", data={"csrf_token": csrf_of(fg, f"/tasks/{task}"), "usernames": names,
                                                  "note": "请阅"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422, html[-600:]
    assert f"抄送一次最多 {people.MAX_CHOSEN} 人，本次选择了 {people.MAX_CHOSEN + 1} 人" in html
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(CarbonCopy)) == 0
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    # as many as it takes: all reached
    response = fg.post(f"/tasks/{task}/cc", data={"csrf_token": csrf_of(fg, f"/tasks/{task}"),
                                                  "usernames": names[:people.MAX_CHOSEN], "note": "请阅"})
    assert response.status_code == 302
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(CarbonCopy)) == people.MAX_CHOSEN
