"""Messages kept from outside for a catch that is not waiting yet are bounded: per sender and per message name.

Only the API's rate limit applied: 600 a minute of up to 64 KB each, kept up to 30 days — about 25 GB a month from
one token, for a name any applicant may send (a withdrawal names the instance's initiator: a message that reaches
none of that sender's instances is kept all the same).
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import clock, deploy, org
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances, message_rules, messages
from engine.runtime.message_models import BpmnMessage
from tests.conftest import FIXTURES


@pytest.fixture
def deployed(session: Session, review_org: dict[str, Actor]) -> Session:
    deploy.deploy(session, deploy.read_directory(FIXTURES / "messages"), actor=SYSTEM, check_lanes=False)
    org.add_user(session, username="applicant2", display_name="项目单位李四", role_codes=["applicant"])
    session.commit()
    return session


def _withdraw(session: Session, actor: Actor, key: str, **more: object) -> messages.Outcome:
    return messages.publish(session, name="withdraw", actor=actor, business_key=key, payload={"why": "x"},
                            ttl=600, **more)  # type: ignore[arg-type]


def _rows(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(BpmnMessage)) or 0)


def test_a_sender_keeps_at_most_its_quota_and_a_refusal_writes_nothing(
        deployed: Session, review_org: dict[str, Actor], monkeypatch: pytest.MonkeyPatch, frozen: object) -> None:
    monkeypatch.setenv("JZFLOW_MESSAGE_BUFFER_PER_SENDER", "3")
    applicant = review_org["applicant"]
    assert [_withdraw(deployed, applicant, f"A-{n}").status for n in range(3)] == ["buffered"] * 3
    deployed.commit()
    for more in ({}, {"message_id": "w-9"}):
        with pytest.raises(message_rules.MessageQuotaExceeded) as refused:
            _withdraw(deployed, applicant, "A-9", **more)
        assert refused.value.http_status == 429 and refused.value.code == "message_quota"
        assert "JZFLOW_MESSAGE_BUFFER_PER_SENDER" in refused.value.message and "3" in refused.value.message
        assert refused.value.details == {"name": "withdraw", "quota": "sender", "limit": 3}
        deployed.rollback()
        assert _rows(deployed) == 3
    # Another sender's quota is its own.
    assert _withdraw(deployed, actor_for(deployed, "applicant2"), "B-1").status == "buffered"
    # A message that reaches a waiting instance is not kept: the quota does not stop it.
    iid = instances.start(deployed, process_key="msg_case", actor=applicant, business_key="A-5",
                          data={"application_id": 5, "resumed": 0}).id
    messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": 5},
                     payload={"pages": 1})
    done = _withdraw(deployed, applicant, "A-5")
    assert (done.status, done.instance_id) == ("delivered", iid)
    deployed.commit()
    # Kept ones count until they are consumed or expire (before the sweep marks them).
    clock.advance(timedelta(seconds=601))
    assert _withdraw(deployed, applicant, "A-10").status == "buffered"


def test_all_senders_together_keep_at_most_the_names_quota(
        deployed: Session, review_org: dict[str, Actor], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_MESSAGE_BUFFER_PER_SENDER", "3")
    monkeypatch.setenv("JZFLOW_MESSAGE_BUFFER_PER_NAME", "4")
    other = actor_for(deployed, "applicant2")
    for n in range(3):
        _withdraw(deployed, review_org["applicant"], f"A-{n}")
    assert _withdraw(deployed, other, "B-0").status == "buffered"
    deployed.commit()
    with pytest.raises(message_rules.MessageQuotaExceeded) as refused:
        _withdraw(deployed, other, "B-1")
    assert "JZFLOW_MESSAGE_BUFFER_PER_NAME" in refused.value.message and "withdraw" in refused.value.message
    assert refused.value.details == {"name": "withdraw", "quota": "name", "limit": 4}
    deployed.rollback()
    # Another name has a quota of its own.
    assert messages.publish(deployed, name="supplement", actor=SYSTEM, correlations={"application_id": 77},
                            payload={"pages": 1}).status == "buffered"


def test_the_command_line_is_told_the_quota(deployed: Session, db_url: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from engine import cli

    env = {"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(tmp_path),
           "JZFLOW_MESSAGE_BUFFER_PER_SENDER": "1"}
    args = ["message", "supplement", "--data", '{"pages": 2}', "--ttl", "60", "--correlate"]
    kept = CliRunner().invoke(cli.main, [*args, "application_id=98"], env=env)
    assert kept.exit_code == 0 and "暂存" in kept.output, kept.output
    refused = CliRunner().invoke(cli.main, [*args, "application_id=99"], env=env)
    assert refused.exit_code == 2, refused.output
    assert "message_quota" in refused.output and "JZFLOW_MESSAGE_BUFFER_PER_SENDER=1" in refused.output, refused.output
    assert _rows(deployed) == 1


def test_the_quota_settings_are_checked_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import config
    for name in ("JZFLOW_MESSAGE_BUFFER_PER_SENDER", "JZFLOW_MESSAGE_BUFFER_PER_NAME"):
        monkeypatch.setenv(name, "0")
        with pytest.raises(config.SettingInvalid, match=name):
            message_rules.buffer_quota()
        monkeypatch.delenv(name)
    assert message_rules.buffer_quota() == (1000, 10000)
