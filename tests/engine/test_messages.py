"""Messages between instances and from outside (issue "Engine II"): start, correlation, buffer, exactly once.

Runs on SQLite and PostgreSQL (the `session` fixture); the race with 16 deliveries is in
test_messages_concurrency.py (PostgreSQL).
"""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy, jobs
from engine.audit.models import AuditEvent
from engine.errors import Forbidden, FormInvalid, InvalidInput
from engine.org.actors import SYSTEM, Actor
from engine.runtime import core as runtime
from engine.runtime import instances, message_worker, messages
from engine.runtime.message_models import BpmnMessage, MessageSubscription
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from tests.conftest import FIXTURES

MESSAGES = FIXTURES / "messages"


@pytest.fixture
def deployed(session: Session) -> Session:
    deploy.deploy(session, deploy.read_directory(MESSAGES), actor=SYSTEM, check_lanes=False)
    session.commit()
    return session


def waiting_case(session: Session, application_id: object, business_key: str | None = None) -> int:
    row = instances.start(session, process_key="msg_case", actor=SYSTEM, business_key=business_key,
                          data={"application_id": application_id, "resumed": 0})
    session.commit()
    return row.id


def data_of(session: Session, instance_id: int) -> dict[str, object]:
    running = runtime.load(session, instance_id)
    return dict(running.workflow.last_task.data) if running.workflow.last_task else {}


def ready_tasks(session: Session, instance_id: int) -> list[str]:
    return list(session.scalars(select(HumanTask.bpmn_id).where(HumanTask.instance_id == instance_id,
                                                                HumanTask.state == "ready")))


def resumed_count(session: Session, instance_id: int) -> int:
    from engine.spiff.workflow import all_tasks
    running = runtime.load(session, instance_id)
    counts = [t.data.get("resumed", 0) for t in all_tasks(running.workflow)]
    return max(int(c) for c in counts)


def test_a_waiting_catch_is_a_subscription_row(deployed: Session) -> None:
    iid = waiting_case(deployed, 7, business_key="APP-7")
    sub = deployed.scalar(select(MessageSubscription).where(MessageSubscription.instance_id == iid))
    assert sub is not None
    assert (sub.kind, sub.name, sub.bpmn_id, sub.business_key) == ("message", "supplement", "wait_supplement", "APP-7")
    assert json.loads(sub.correlation or "") == {"application_id": "7"}


def test_correlation_by_property_resumes_only_the_matching_instance(deployed: Session) -> None:
    a, b = waiting_case(deployed, 1), waiting_case(deployed, 2)
    out = messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": 2},
                           payload={"pages": 3})
    deployed.commit()
    assert (out.status, out.instance_id) == ("delivered", b)
    assert ready_tasks(deployed, b) == ["review"] and ready_tasks(deployed, a) == []
    assert resumed_count(deployed, b) == 1
    assert data_of(deployed, b).get("supplement") == {"pages": 3}
    # the subscription of b is gone; a's stays
    subs = deployed.scalars(select(MessageSubscription.instance_id).where(MessageSubscription.name == "supplement"))
    assert list(subs) == [a]
    # the delivery is audited on the instance's stream
    assert deployed.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.stream == f"instance:{b}", AuditEvent.action == "message.deliver")) == 1


def test_a_delivery_reads_the_instance_with_its_open_rows_in_one_statement(deployed: Session) -> None:
    """The delivery's load brings the instance's open rows (the save's projection starts from them) and its audit
    head along: no statement of its own for either."""
    from sqlalchemy import event

    case = waiting_case(deployed, 7)
    seen: list[str] = []

    def before(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split()))

    bind = deployed.get_bind()
    event.listen(bind, "before_cursor_execute", before)
    try:
        out = messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": 7},
                               payload={"pages": 1})
    finally:
        event.remove(bind, "before_cursor_execute", before)
    deployed.commit()
    assert (out.status, out.instance_id) == ("delivered", case) and ready_tasks(deployed, case) == ["review"]
    reads = [s for s in seen if s.startswith("SELECT") and "FROM process_instance" in s]
    assert len(reads) == 1 and "human_task" in reads[0] and "audit_head" in reads[0], reads
    assert not [s for s in seen if s.startswith("SELECT human_task.")], seen


def test_correlation_values_compare_as_text(deployed: Session) -> None:
    b = waiting_case(deployed, 42)
    out = messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": "42"},
                           payload={"pages": 1})
    assert out.instance_id == b


def test_correlation_by_business_key(deployed: Session) -> None:
    waiting_case(deployed, 1, business_key="APP-1")
    b = waiting_case(deployed, 2, business_key="APP-2")
    out = messages.publish(deployed, name="supplement", actor=SYSTEM, business_key="APP-2", payload={"pages": 2})
    deployed.commit()
    assert (out.status, out.instance_id) == ("delivered", b)
    # the boundary message on the review task also correlates by business key: it cancels the review
    out = messages.publish(deployed, name="withdraw", actor=SYSTEM, business_key="APP-2", payload={"why": "重复申报"})
    deployed.commit()
    assert out.instance_id == b
    assert ready_tasks(deployed, b) == []
    assert deployed.get(ProcessInstance, b).status == "completed"  # type: ignore[union-attr]
    assert data_of(deployed, b).get("withdrawal") == {"why": "重复申报"}


def test_a_message_before_the_wait_is_buffered_then_consumed_once(deployed: Session) -> None:
    out = messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": 9},
                           payload={"pages": 5}, ttl=600)
    deployed.commit()
    assert out.status == "buffered" and out.expires_at is not None
    iid = waiting_case(deployed, 9)  # starts waiting: the buffered message is consumed in the same save
    assert ready_tasks(deployed, iid) == ["review"]
    assert resumed_count(deployed, iid) == 1
    row = deployed.get(BpmnMessage, out.id)
    assert row is not None and (row.status, row.instance_id) == ("delivered", iid)
    other = waiting_case(deployed, 9)  # a second waiter with the same value does not get it again
    assert ready_tasks(deployed, other) == []
    assert messages.describe(deployed, out.id).status == "delivered"


def test_a_buffered_message_expires_and_is_then_answered_as_expired(deployed: Session, frozen: object) -> None:
    out = messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": 5},
                           payload={"pages": 5}, ttl=60)
    deployed.commit()
    clock.advance(timedelta(seconds=61))
    assert messages.describe(deployed, out.id).status == "expired"
    iid = waiting_case(deployed, 5)
    assert ready_tasks(deployed, iid) == []  # too late: not consumed
    assert message_worker.expire(deployed, now=clock.now()) == 1
    assert deployed.get(BpmnMessage, out.id).status == "expired"  # type: ignore[union-attr]


def test_ttl_zero_and_nobody_waits_is_refused_and_changes_nothing(deployed: Session) -> None:
    before = deployed.scalar(select(func.count()).select_from(BpmnMessage))
    with pytest.raises(messages.MessageUnmatched):
        messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": 1},
                         payload={"pages": 1}, ttl=0)
    assert deployed.scalar(select(func.count()).select_from(BpmnMessage)) == before


def test_unknown_message_and_malformed_input_are_refused(deployed: Session) -> None:
    with pytest.raises(messages.MessageUnknown):
        messages.publish(deployed, name="nobody_declares_this", actor=SYSTEM)
    with pytest.raises(InvalidInput) as bad:
        messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": [1, 2]})
    assert bad.value.details["field"] == "correlations"
    with pytest.raises(InvalidInput):
        messages.publish(deployed, name="x" * 201, actor=SYSTEM)
    with pytest.raises(InvalidInput):
        messages.publish(deployed, name="supplement", actor=SYSTEM, payload={"note": "长" * 70000})
    with pytest.raises(InvalidInput):
        messages.publish(deployed, name="supplement", actor=SYSTEM, ttl=-1)


def test_the_declared_schema_checks_the_payload(deployed: Session) -> None:
    iid = waiting_case(deployed, 3)
    with pytest.raises(FormInvalid) as bad:
        messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": 3},
                         payload={"pages": "many", "evil": "<script>"})
    assert {e.field for e in bad.value.errors} >= {"pages"}
    deployed.rollback()
    assert ready_tasks(deployed, iid) == []


def test_message_start_event_starts_the_latest_version(deployed: Session) -> None:
    out = messages.publish(deployed, name="application_filed", actor=SYSTEM, business_key="P-1",
                           payload={"project": "胶州湾新材料项目"})
    deployed.commit()
    assert out.status == "started" and out.instance_id is not None
    row = deployed.get(ProcessInstance, out.instance_id)
    assert row is not None and row.business_key == "P-1"
    assert ready_tasks(deployed, out.instance_id) == ["handle"]
    assert data_of(deployed, out.instance_id).get("filing") == {"project": "胶州湾新材料项目"}
    with pytest.raises(FormInvalid):
        messages.publish(deployed, name="application_filed", actor=SYSTEM, payload={})
    # it cannot be started by hand: it would wait for its own start message forever
    with pytest.raises(InvalidInput):
        instances.start(deployed, process_key="msg_started", actor=SYSTEM)


def test_a_message_id_is_delivered_once(deployed: Session) -> None:
    iid = waiting_case(deployed, 11)
    first = messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": 11},
                             payload={"pages": 1}, message_id="portal-0001")
    deployed.commit()
    again = messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": 11},
                             payload={"pages": 1}, message_id="portal-0001")
    deployed.commit()
    assert (first.status, again.status, again.id, again.instance_id) == ("delivered", "duplicate", first.id, iid)
    assert resumed_count(deployed, iid) == 1


def test_a_message_id_is_its_senders_own(deployed: Session, review_org: dict[str, Actor]) -> None:
    """The system's `portal-0002` and an administrator's are two messages; a retry is its own sender's duplicate."""
    admin = review_org["admin"]
    ours, theirs = waiting_case(deployed, 21), waiting_case(deployed, 22)
    by_system = messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": 21},
                                 payload={"pages": 1}, message_id="portal-0002")
    deployed.commit()
    by_admin = messages.publish(deployed, name="supplement", actor=admin, correlations={"application_id": 22},
                                payload={"pages": 1}, message_id="portal-0002")
    deployed.commit()
    assert (by_system.status, by_system.instance_id, by_admin.status, by_admin.instance_id) == (
        "delivered", ours, "delivered", theirs)
    for actor, first in ((SYSTEM, by_system), (admin, by_admin)):
        again = messages.publish(deployed, name="supplement", actor=actor, correlations={"application_id": 0},
                                 payload={"pages": 1}, message_id="portal-0002")
        deployed.commit()
        assert (again.status, again.id, again.instance_id) == ("duplicate", first.id, first.instance_id)
    assert deployed.scalar(select(func.count()).select_from(BpmnMessage)) == 2


def test_a_sender_is_refused_before_its_message_id_is_looked_at(deployed: Session,
                                                                review_org: dict[str, Actor]) -> None:
    iid = waiting_case(deployed, 23)
    first = messages.publish(deployed, name="supplement", actor=review_org["admin"],
                             correlations={"application_id": 23}, payload={"pages": 1}, message_id="portal-0003")
    deployed.commit()
    assert first.instance_id == iid
    for message_id in ("portal-0003", "portal-0004"):  # taken by the admin, or free: the same refusal
        with pytest.raises(Forbidden):
            messages.publish(deployed, name="supplement", actor=review_org["window"],
                             correlations={"application_id": 23}, payload={"pages": 1}, message_id=message_id)
        deployed.rollback()
    assert deployed.scalar(select(func.count()).select_from(BpmnMessage)) == 1


def test_a_sender_an_older_versions_catch_names_may_send_with_a_message_id(deployed: Session,
                                                                           review_org: dict[str, Actor]) -> None:
    """Version 2 names no sender of 补正 (administrators only); an instance of version 1 still waits at a catch
    naming the window: the window's message reaches it, with a message_id as without one."""
    files = deploy.read_directory(MESSAGES)
    v1 = files["messages.bpmn"].replace(
        b'<spiffworkflow:property name="messageSchema" value="supplement.json" />',
        b'<spiffworkflow:property name="messageSchema" value="supplement.json" />'
        b'<spiffworkflow:property name="messageSenders" value="window" />')
    deploy.deploy(deployed, {**files, "messages.bpmn": v1}, actor=SYSTEM, check_lanes=False)
    deployed.commit()
    old = waiting_case(deployed, 24)
    deploy.deploy(deployed, files, actor=SYSTEM, check_lanes=False)
    deployed.commit()
    out = messages.publish(deployed, name="supplement", actor=review_org["window"],
                           correlations={"application_id": 24}, payload={"pages": 1}, message_id="window-24")
    deployed.commit()
    assert (out.status, out.instance_id) == ("delivered", old)
    with pytest.raises(Forbidden):  # a new instance's catch (version 2) does not name the window
        waiting_case(deployed, 25)
        messages.publish(deployed, name="supplement", actor=review_org["window"],
                         correlations={"application_id": 25}, payload={"pages": 1}, message_id="window-25")
    deployed.rollback()


def test_a_message_thrown_by_one_instance_resumes_another(deployed: Session, factory: sessionmaker[Session]) -> None:
    target = waiting_case(deployed, 77)
    sender = instances.start(deployed, process_key="msg_sender", actor=SYSTEM,
                             data={"application_id": 77, "pages": 4})
    deployed.commit()
    assert sender.status == "completed"
    assert ready_tasks(deployed, target) == []  # routed after the commit, by the outbox job
    deployed.rollback()
    assert jobs.run_outbox(factory) >= 1
    deployed.expire_all()
    assert ready_tasks(deployed, target) == ["review"]
    assert data_of(deployed, target).get("supplement") == {"application_id": 77, "pages": 4}
    deployed.rollback()
    assert jobs.run_outbox(factory) == 0  # nothing left, nothing twice
    assert resumed_count(deployed, target) == 1


def test_an_instance_that_stops_waiting_drops_its_subscription(deployed: Session) -> None:
    iid = waiting_case(deployed, 8)
    instances.terminate(deployed, instance_id=iid, actor=SYSTEM)
    deployed.commit()
    assert deployed.scalar(select(func.count()).select_from(MessageSubscription).where(
        MessageSubscription.instance_id == iid)) == 0


def test_the_command_line_sends_messages_and_signals(deployed: Session, db_url: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from engine import cli

    iid = waiting_case(deployed, 21)
    waiters = [instances.start(deployed, process_key="sig_wait", actor=SYSTEM, data={"resumed": 0}).id
               for _ in range(2)]
    deployed.commit()
    env = {"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(tmp_path)}
    run = CliRunner().invoke
    done = run(cli.main, ["message", "supplement", "--correlate", "application_id=21", "--data", '{"pages": 2}'],
               env=env)
    assert done.exit_code == 0 and f"instance) {iid}" in done.output, done.output
    kept = run(cli.main, ["message", "supplement", "--correlate", "application_id=99", "--data", '{"pages": 2}',
                          "--ttl", "60", "--id", "cli-1"], env=env)
    assert kept.exit_code == 0 and "暂存" in kept.output, kept.output
    again = run(cli.main, ["message", "supplement", "--correlate", "application_id=99", "--data", '{"pages": 2}',
                           "--id", "cli-1"], env=env)
    assert again.exit_code == 0 and "duplicate" in again.output, again.output
    for args, words in ((["message", "supplement", "--correlate", "nokey"], "--correlate"),
                        (["message", "supplement", "--data", "[1]"], "--data"),
                        (["message", "no_such_message"], "message_unknown"),
                        (["message", "supplement", "--as", "nobody"], "user_not_found")):
        bad = run(cli.main, args, env=env)
        assert bad.exit_code == 2 and words in bad.output, (args, bad.output)
    sent = run(cli.main, ["signal", "plan_revised", "--deliver"], env=env)
    assert sent.exit_code == 0 and "(waiting) 2" in sent.output and "(resumed) 2" in sent.output, sent.output
    deployed.expire_all()
    assert [resumed_count(deployed, i) for i in waiters] == [1, 1]
    deployed.rollback()
    status = run(cli.main, ["message-status", "999999"], env=env)
    assert status.exit_code == 2 and "not_found" in status.output, status.output


def test_a_process_only_a_message_starts_is_not_offered_to_start(deployed: Session) -> None:
    from engine.runtime import starts

    keys = {i.key for i in starts.startable(deployed, SYSTEM)}
    assert "msg_case" in keys and "msg_started" not in keys and "sig_started" not in keys
