"""Moving running instances to a newer version: compatible changes migrate mid-flow and complete; others are refused.

Each scenario starts an instance on version 1, deploys a version 2 with one change, previews and
migrates (or is refused with the reason naming the task), then finishes the instance after reloading
it in a fresh session. The real 并联审批 is migrated in the middle of its parallel department review.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, deploy, runtime, tasks
from engine.audit.models import AuditEvent
from engine.deploy import versions
from engine.errors import Forbidden
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances, timers
from engine.runtime.models import ProcessInstance
from engine.spiff import serializer
from engine.tasks.models import HumanTask
from tests.processes.test_parallel_approval import (  # noqa: F401 (fixtures used by name)
    accept,
    approval_files,
    at,
    certify,
    data_of,
    deployed,
    people,
    review,
    reviews_by_unit,
    start_by_hand,
)

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="defs" targetNamespace="http://jz">
  <bpmn:process id="{key}" name="迁移测试" isExecutable="true">
"""
TAIL = "  </bpmn:process>\n</bpmn:definitions>\n"


def user_task(task_id: str, name: str, incoming: str, outgoing: str, sla: str = "2wd", tag: str = "userTask") -> str:
    return f"""    <bpmn:{tag} id="{task_id}" name="{name}">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="sla" value="{sla}" />
        <spiffworkflow:property name="candidates" value="&quot;审批部门&quot;" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>{incoming}</bpmn:incoming><bpmn:outgoing>{outgoing}</bpmn:outgoing>
    </bpmn:{tag}>
"""


def flow(flow_id: str, source: str, target: str, condition: str | None = None) -> str:
    body = f"<bpmn:conditionExpression>{condition}</bpmn:conditionExpression>" if condition else ""
    return f'    <bpmn:sequenceFlow id="{flow_id}" sourceRef="{source}" targetRef="{target}">{body}</bpmn:sequenceFlow>\n'


def approval(*, fill: str = "fill", fill_sla: str = "2wd", fill_tag: str = "userTask", threshold: str = "100",
             check_step: bool = False, keep_fill: bool = True) -> dict[str, str]:
    """start → fill → [check] → gw: amount > threshold → review → end; else → end."""
    parts = ['    <bpmn:startEvent id="start"><bpmn:outgoing>f_start</bpmn:outgoing></bpmn:startEvent>\n']
    after_fill = "check" if check_step else "gw"
    if keep_fill:
        parts += [flow("f_start", "start", fill), user_task(fill, "填报", "f_start", "f_fill", fill_sla, fill_tag),
                  flow("f_fill", fill, after_fill)]
    else:
        parts.append(flow("f_start", "start", after_fill))
    if check_step:
        parts += [user_task("check", "核对", "f_fill" if keep_fill else "f_start", "f_check"),
                  flow("f_check", "check", "gw")]
    gw_in = "f_check" if check_step else ("f_fill" if keep_fill else "f_start")
    parts += [f'    <bpmn:exclusiveGateway id="gw" default="f_small"><bpmn:incoming>{gw_in}</bpmn:incoming>'
              '<bpmn:outgoing>f_big</bpmn:outgoing><bpmn:outgoing>f_small</bpmn:outgoing></bpmn:exclusiveGateway>\n',
              flow("f_big", "gw", "review", f"amount &gt; {threshold}"), flow("f_small", "gw", "end"),
              user_task("review", "审核", "f_big", "f_review"), flow("f_review", "review", "end"),
              '    <bpmn:endEvent id="end"><bpmn:incoming>f_small</bpmn:incoming><bpmn:incoming>f_review'
              '</bpmn:incoming></bpmn:endEvent>\n']
    return {"migrate_me.bpmn": HEAD.format(key="migrate_me") + "".join(parts) + TAIL}


def timer_process(duration: str = '"PT1H"', after: bool = False) -> dict[str, str]:
    """start → (fill ‖ wait timer → [noted]) → join → end."""
    body = ['    <bpmn:startEvent id="start"><bpmn:outgoing>f0</bpmn:outgoing></bpmn:startEvent>\n',
            flow("f0", "start", "split"),
            '    <bpmn:parallelGateway id="split"><bpmn:incoming>f0</bpmn:incoming><bpmn:outgoing>f1</bpmn:outgoing>'
            '<bpmn:outgoing>f2</bpmn:outgoing></bpmn:parallelGateway>\n',
            flow("f1", "split", "fill"), user_task("fill", "填报", "f1", "f3"), flow("f3", "fill", "join"),
            flow("f2", "split", "wait"),
            f'    <bpmn:intermediateCatchEvent id="wait" name="等一小时"><bpmn:incoming>f2</bpmn:incoming>'
            f'<bpmn:outgoing>f4</bpmn:outgoing><bpmn:timerEventDefinition><bpmn:timeDuration>{duration}'
            '</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>\n']
    if after:
        body += [flow("f4", "wait", "noted"),
                 '    <bpmn:scriptTask id="noted" name="记录"><bpmn:incoming>f4</bpmn:incoming><bpmn:outgoing>f5'
                 '</bpmn:outgoing><bpmn:script>timer_noted = True</bpmn:script></bpmn:scriptTask>\n',
                 flow("f5", "noted", "join")]
    else:
        body.append(flow("f4", "wait", "join"))
    last = "f5" if after else "f4"
    body += [f'    <bpmn:parallelGateway id="join"><bpmn:incoming>f3</bpmn:incoming><bpmn:incoming>{last}</bpmn:incoming>'
             '<bpmn:outgoing>f6</bpmn:outgoing></bpmn:parallelGateway>\n', flow("f6", "join", "end"),
             '    <bpmn:endEvent id="end"><bpmn:incoming>f6</bpmn:incoming></bpmn:endEvent>\n']
    return {"timer_me.bpmn": HEAD.format(key="timer_me") + "".join(body) + TAIL}


@pytest.fixture(autouse=True)
def _fresh_spec_cache() -> Iterator[None]:
    runtime._spec_cache.clear()  # version ids repeat across the throwaway databases
    yield
    runtime._spec_cache.clear()


@pytest.fixture
def owner(session: Session) -> Actor:
    from engine import org
    from engine.org.actors import actor_for
    org.add_role(session, code="process_owner", name="流程管理员")
    org.add_user(session, username="owner", display_name="流程管理员甲", role_codes=["process_owner"])
    session.commit()
    return actor_for(session, "owner")


def deploy_version(session: Session, files: dict[str, str]) -> int:
    [result] = deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    session.commit()
    version = deploy.latest_version(session, result.key)
    assert version is not None and version.version == result.version
    return version.id


def open_task(session: Session, instance_id: int, bpmn_id: str) -> HumanTask:
    task = session.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.state == "ready",
                                                  HumanTask.bpmn_id == bpmn_id))
    assert task is not None, [t.bpmn_id for t in session.scalars(select(HumanTask).where(
        HumanTask.instance_id == instance_id, HumanTask.state == "ready"))]
    return task


def do(session: Session, instance_id: int, bpmn_id: str, actor: Actor, data: dict[str, Any]) -> None:
    task = open_task(session, instance_id, bpmn_id)
    tasks.claim(session, task_id=task.id, actor=actor)
    assert tasks.complete(session, task_id=task.id, actor=actor, data=data).incident is None
    session.commit()


def status(session: Session, instance_id: int) -> str:
    row = session.get(ProcessInstance, instance_id)
    assert row is not None
    session.refresh(row)
    return row.status


def start(session: Session, key: str, actor: Actor) -> int:
    row = instances.start(session, process_key=key, actor=actor)
    session.commit()
    return row.id


def reload_in_fresh_session(factory: sessionmaker[Session], session: Session, instance_id: int) -> None:
    """Save/restore mid-flow: the migrated state loads against the new version's specs and dumps the same."""
    session.commit()  # SQLite: hand the write lock over
    runtime._spec_cache.clear()
    with factory() as other:
        running = runtime.load(other, instance_id)
        stored = other.scalar(select(ProcessInstance.state).where(ProcessInstance.id == instance_id))
        assert serializer.dump_state(running.workflow) == stored
        other.rollback()


# --------------------------------------------------------------------------- compatible changes


def test_a_task_added_after_the_waiting_one_migrates_mid_flow_and_completes(
        session: Session, owner: Actor, review_org: dict[str, Actor], factory: sessionmaker[Session]) -> None:
    v1 = deploy_version(session, approval())
    iid = start(session, "migrate_me", review_org["fg"])
    waiting = open_task(session, iid, "fill")
    v2 = deploy_version(session, approval(check_step=True))

    found = versions.preview(session, iid, v2)
    assert found.ok and (found.from_version, found.to_version) == (1, 2)
    assert [(t.bpmn_id, t.state, t.maps) for t in found.tasks] == [("fill", "READY", True)]
    report = versions.migrate(session, [iid], v2, owner)
    session.commit()
    assert report.migrated == [iid] and report.refused == {}

    row = session.get(ProcessInstance, iid)
    assert row is not None and row.version_id == v2 != v1
    assert open_task(session, iid, "fill").id == waiting.id  # the same task: holder, deadline, history kept
    reload_in_fresh_session(factory, session, iid)
    do(session, iid, "fill", review_org["fg"], {"amount": 500})
    do(session, iid, "check", review_org["fg"], {})  # the step version 2 added
    do(session, iid, "review", review_org["fg"], {})
    assert status(session, iid) == "completed"
    event = session.scalar(select(AuditEvent).where(AuditEvent.stream == f"instance:{iid}",
                                                    AuditEvent.action == "instance.migrate"))
    assert event is not None and event.actor_name == "owner"
    assert event.before["version"] == 1 and event.after["version"] == 2
    assert event.after["tasks"] == [{"bpmn_id": "fill", "state": "READY"}]
    assert audit.verify(session).ok


def test_a_changed_condition_and_sla_take_effect_after_migration(
        session: Session, owner: Actor, review_org: dict[str, Actor], factory: sessionmaker[Session]) -> None:
    deploy_version(session, approval())
    iid = start(session, "migrate_me", review_org["fg"])
    assert open_task(session, iid, "fill").sla == "2wd"
    v2 = deploy_version(session, approval(threshold="1000", fill_sla="5wd"))
    versions.migrate_one(session, iid, v2, owner)
    session.commit()
    assert open_task(session, iid, "fill").sla == "5wd"  # the waiting task shows the new version's SLA
    reload_in_fresh_session(factory, session, iid)
    do(session, iid, "fill", review_org["fg"], {"amount": 500})  # v1 would route 500 > 100 to review
    assert status(session, iid) == "completed"


def test_a_waiting_timer_keeps_its_due_time_when_the_flow_after_it_changes(
        session: Session, owner: Actor, review_org: dict[str, Actor], factory: sessionmaker[Session],
        frozen: Any) -> None:
    deploy_version(session, timer_process())
    iid = start(session, "timer_me", review_org["fg"])
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.next_timer_at is not None
    due = row.next_timer_at
    clock.advance(timedelta(minutes=30))
    v2 = deploy_version(session, timer_process(after=True))
    versions.migrate_one(session, iid, v2, owner)
    session.commit()
    session.refresh(row)
    assert row.next_timer_at == due  # not restarted
    reload_in_fresh_session(factory, session, iid)
    clock.advance(timedelta(minutes=31))
    assert timers.fire_instance(session, iid, now=clock.now())
    session.commit()
    do(session, iid, "fill", review_org["fg"], {})
    assert status(session, iid) == "completed"
    assert data_of(session, iid)["timer_noted"] is True  # the step version 2 added after the timer ran


def test_parallel_approval_migrates_in_the_middle_of_the_department_review(
        session: Session, deployed: None, people: dict[str, Actor], owner: Actor,  # noqa: F811
        factory: sessionmaker[Session]) -> None:
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"))
    clock.freeze(at("2025-09-28", "10:00"))
    review(session, people, iid, "fgj")  # one of three departments has approved: two review tasks open
    open_before = {t.id for t in reviews_by_unit(session, iid).values()}
    files = approval_files()
    text = files["parallel_approval.bpmn"].decode()
    # Version 2: a changed SLA on the window and a step recorded after the working days are computed.
    text = text.replace('<spiffworkflow:property name="sla" value="1wd" />',
                        '<spiffworkflow:property name="sla" value="2wd" />', 1)
    text = text.replace('targetRef="end_certified"', 'targetRef="note_v2"', 1)
    text = text.replace('<bpmn:endEvent id="end_certified"',
                        '<bpmn:scriptTask id="note_v2" name="记录版本"><bpmn:incoming>flow_note_v2_in</bpmn:incoming>'
                        '<bpmn:outgoing>flow_note_v2</bpmn:outgoing><bpmn:script>finished_on_v2 = True</bpmn:script>'
                        '</bpmn:scriptTask><bpmn:sequenceFlow id="flow_note_v2" sourceRef="note_v2" '
                        'targetRef="end_certified" /><bpmn:endEvent id="end_certified"', 1)
    assert "note_v2" in text
    text = _rewire_certified_end(text)
    files["parallel_approval.bpmn"] = text.encode()
    [result] = deploy.deploy(session, files, actor=SYSTEM)
    session.commit()
    v2 = deploy.latest_version(session, "parallel_approval")
    assert v2 is not None and result.version == 2

    found = versions.preview(session, iid, v2.id)
    assert found.ok, found.problems
    assert sorted(t.bpmn_id for t in found.tasks if t.manual) == ["department_review", "department_review"]
    versions.migrate_one(session, iid, v2.id, owner)
    session.commit()
    assert {t.id for t in reviews_by_unit(session, iid).values()} == open_before
    reload_in_fresh_session(factory, session, iid)
    clock.freeze(at("2025-09-30", "16:00"))
    review(session, people, iid, "zrzyj")
    review(session, people, iid, "sthjj")
    certify(session, people, iid, at("2025-10-10", "10:00"))
    assert status(session, iid) == "completed"
    final = data_of(session, iid)
    assert final["outcome"] == "certified" and final["finished_on_v2"] is True
    assert sorted(final["approved_departments"]) == ["fgj", "sthjj", "zrzyj"]  # the review before the move counts


def _rewire_certified_end(text: str) -> str:
    """Point the flow that reached end_certified at note_v2 (its id is the incoming of note_v2)."""
    import re
    match = re.search(r'<bpmn:sequenceFlow id="([^"]+)" sourceRef="[^"]+" targetRef="note_v2"', text)
    assert match is not None
    flow_id = match.group(1)
    text = text.replace("flow_note_v2_in", flow_id)
    end = text.index('<bpmn:endEvent id="end_certified"')
    close = text.index("</bpmn:endEvent>", end)
    block = text[end:close].replace(f"<bpmn:incoming>{flow_id}</bpmn:incoming>",
                                    "<bpmn:incoming>flow_note_v2</bpmn:incoming>")
    return text[:end] + block + text[close:]


# --------------------------------------------------------------------------- refused, naming the reason


@pytest.mark.parametrize(("files", "words"), [
    (approval(keep_fill=False), "ready task '填报' (fill) does not exist in version 2"),
    (approval(fill="fill_form"), "ready task '填报' (fill) does not exist in version 2"),
    (approval(fill_tag="manualTask"), "task '填报' (fill) changed type in version 2 (UserTask → ManualTask)"),
])
def test_an_incompatible_change_is_refused_with_the_reason(
        session: Session, owner: Actor, review_org: dict[str, Actor], files: dict[str, str], words: str) -> None:
    v1 = deploy_version(session, approval())
    iid = start(session, "migrate_me", review_org["fg"])
    state_before = session.scalar(select(ProcessInstance.state).where(ProcessInstance.id == iid))
    v2 = deploy_version(session, files)
    found = versions.preview(session, iid, v2)
    assert not found.ok and words in found.problems
    assert [(t.bpmn_id, t.maps) for t in found.tasks] == [("fill", False)]
    report = versions.migrate(session, [iid], v2, owner)
    session.commit()
    assert report.migrated == [] and words in report.refused[iid]
    with pytest.raises(versions.MigrationRefused) as err:
        versions.migrate_one(session, iid, v2, owner)
    assert words in err.value.message and err.value.http_status == 409
    session.rollback()
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.version_id == v1
    assert session.scalar(select(ProcessInstance.state).where(ProcessInstance.id == iid)) == state_before
    assert session.scalar(select(AuditEvent.id).where(AuditEvent.action == "instance.migrate")) is None
    do(session, iid, "fill", review_org["fg"], {"amount": 1})  # still runs on version 1
    assert status(session, iid) == "completed"


def test_a_removed_completed_step_is_refused(session: Session, owner: Actor, review_org: dict[str, Actor]) -> None:
    deploy_version(session, approval())
    iid = start(session, "migrate_me", review_org["fg"])
    do(session, iid, "fill", review_org["fg"], {"amount": 500})
    v2 = deploy_version(session, approval(keep_fill=False))
    found = versions.preview(session, iid, v2)
    assert [(t.bpmn_id, t.maps) for t in found.tasks] == [("review", True)]
    assert "completed step '填报' (fill) does not exist in version 2: the instance's history refers to it" \
        in found.problems


def test_a_changed_timer_is_refused_while_it_waits(session: Session, owner: Actor, review_org: dict[str, Actor]) -> None:
    deploy_version(session, timer_process())
    iid = start(session, "timer_me", review_org["fg"])
    v2 = deploy_version(session, timer_process('"PT2H"'))
    report = versions.migrate(session, [iid], v2, owner)
    assert report.refused[iid] == [
        "'等一小时' (wait) is waiting for its event, whose definition (timer, message …) changed in version 2"]


def test_a_changed_multi_instance_is_refused_while_it_runs(
        session: Session, deployed: None, people: dict[str, Actor], owner: Actor) -> None:  # noqa: F811
    iid = start_by_hand(session, people, at("2025-09-25"))
    accept(session, people, iid, at("2025-09-26"))
    files = approval_files()
    files["parallel_approval.bpmn"] = files["parallel_approval.bpmn"].replace(
        b"<bpmn:inputDataItem id=\"department\"", b"<bpmn:inputDataItem id=\"dept\"", 1)
    assert files["parallel_approval.bpmn"] != approval_files()["parallel_approval.bpmn"]
    deploy.deploy(session, files, actor=SYSTEM)
    session.commit()
    v2 = deploy.latest_version(session, "parallel_approval")
    assert v2 is not None
    found = versions.preview(session, iid, v2.id)
    assert any("multi-instance task" in p and "department_review" in p and "input_item" in p for p in found.problems)


def test_only_running_instances_of_the_same_process_move_forward(
        session: Session, owner: Actor, review_org: dict[str, Actor]) -> None:
    v1 = deploy_version(session, approval())
    done = start(session, "migrate_me", review_org["fg"])
    do(session, done, "fill", review_org["fg"], {"amount": 1})
    waiting = start(session, "migrate_me", review_org["fg"])
    v2 = deploy_version(session, approval(check_step=True))
    other = deploy_version(session, timer_process())
    report = versions.migrate(session, [done, waiting, 999_999], v2, owner)
    assert report.migrated == [waiting]
    assert report.refused[done] == ["the instance is completed: only running or suspended instances are migrated"]
    assert report.refused[999_999] == ["instance 999999 does not exist"]
    assert "the instance already runs on version 2" in versions.preview(session, waiting, v2).problems
    assert "version 1 is older than the instance's version 2" in versions.preview(session, waiting, v1).problems
    assert versions.preview(session, waiting, other).problems[0].startswith("version 1 belongs to another process")


def test_only_process_owners_and_admins_migrate(session: Session, owner: Actor, review_org: dict[str, Actor]) -> None:
    deploy_version(session, approval())
    iid = start(session, "migrate_me", review_org["fg"])
    v2 = deploy_version(session, approval(check_step=True))
    with pytest.raises(Forbidden):
        versions.migrate(session, [iid], v2, review_org["fg"])
    assert versions.migrate(session, [iid], v2, review_org["admin"]).migrated == [iid]


def test_a_waiting_join_whose_incoming_flows_changed_is_refused(session: Session, owner: Actor,
                                                                 review_org: dict[str, Actor]) -> None:
    deploy_version(session, timer_process())
    iid = start(session, "timer_me", review_org["fg"])
    do(session, iid, "fill", review_org["fg"], {})  # the join now waits for the timer's branch
    files = timer_process()
    text = files["timer_me.bpmn"]
    text = text.replace('<bpmn:outgoing>f2</bpmn:outgoing></bpmn:parallelGateway>',
                        '<bpmn:outgoing>f2</bpmn:outgoing><bpmn:outgoing>f8</bpmn:outgoing></bpmn:parallelGateway>')
    text = text.replace('<bpmn:incoming>f4</bpmn:incoming><bpmn:outgoing>f6</bpmn:outgoing>',
                        '<bpmn:incoming>f4</bpmn:incoming><bpmn:incoming>f9</bpmn:incoming><bpmn:outgoing>f6'
                        '</bpmn:outgoing>')
    text = text.replace("  </bpmn:process>", flow("f8", "split", "extra") + flow("f9", "extra", "join")
                        + '    <bpmn:scriptTask id="extra"><bpmn:incoming>f8</bpmn:incoming><bpmn:outgoing>f9'
                        '</bpmn:outgoing><bpmn:script>extra = 1</bpmn:script></bpmn:scriptTask>\n  </bpmn:process>')
    v2 = deploy_version(session, {"timer_me.bpmn": text})
    found = versions.preview(session, iid, v2)
    assert "join 'join' is waiting for its incoming flows, which changed in version 2" in found.problems
