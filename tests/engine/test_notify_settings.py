"""通知设置: a person's own channels per kind and webhook; a stale page (two tabs) cannot overwrite a newer save; an
internal webhook is refused naming the field; 发送测试 goes through the outbox, once a minute; the trail never holds
the webhook's key. On SQLite and PostgreSQL."""
from __future__ import annotations

import ast
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, org
from engine.audit.models import AuditEvent
from engine.errors import Conflict, InvalidInput, RateLimited
from engine.notify import quota, settings
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor, actor_for
from tests.engine.conftest import waits_for_a_lock

HOOK = "https://hooks.example.com/cgi-bin/webhook/send?key=s3cret-robot-key"


@pytest.fixture
def zhang(session: Session, frozen: Any, monkeypatch: pytest.MonkeyPatch) -> Actor:
    monkeypatch.setenv("JZFLOW_WEBHOOK_ALLOW_HOSTS", "hooks.example.com")
    org.add_unit(session, code="gxj", name="工业和信息化局")
    org.add_user(session, username="zhang", display_name="张伟", unit_codes=["gxj"], email="zhang@gxj.jiaozhou.test")
    session.commit()
    return actor_for(session, "zhang")


def _save(session: Session, who: Actor, seen: str, **kw: Any) -> None:
    settings.save(session, actor=who, channels=kw.get("channels", {"*": ["in_app"], "urge": ["in_app", "webhook"]}),
                  webhook_url=kw.get("url", HOOK), flavor=kw.get("flavor", "robot"), seen=seen)


def test_a_person_saves_and_sees_their_settings_and_the_trail_has_no_key(session: Session, zhang: Actor) -> None:
    _save(session, zhang, settings.view(session, zhang).seen)
    session.commit()
    shown = settings.view(session, zhang)
    assert shown.channels["urge"] == ("in_app", "webhook") and shown.channels["escalation"] == ("in_app",)
    assert shown.webhook_url == HOOK and shown.flavor == "robot"
    trail = [repr(e.after) + repr(e.before) for e in session.scalars(select(AuditEvent).where(
        AuditEvent.action.like("notify.%")))]
    assert trail and not any("s3cret" in t for t in trail)


def test_a_stale_page_does_not_overwrite_a_newer_save(session: Session, zhang: Actor) -> None:
    tab = settings.view(session, zhang).seen  # two tabs open
    _save(session, zhang, tab)
    session.commit()
    with pytest.raises(Conflict) as refused:
        _save(session, zhang, tab, channels={"*": ["email"]}, url="")
    session.rollback()
    assert refused.value.details["field"] == "seen"
    shown = settings.view(session, zhang)
    assert shown.webhook_url == HOOK and shown.channels["*"] == ("in_app",)


@pytest.mark.parametrize("url", ["http://127.0.0.1/hook", "http://169.254.169.254/latest", "ftp://x.example.com/",
                                 "http://10.0.0.1/x"])
def test_an_internal_or_odd_webhook_is_refused_naming_the_field(session: Session, zhang: Actor, url: str) -> None:
    seen = settings.view(session, zhang).seen
    with pytest.raises(InvalidInput) as refused:
        _save(session, zhang, seen, url=url)
    session.rollback()
    assert "webhook_url" in refused.value.message and refused.value.details["field"] == "webhook_url"
    assert settings.view(session, zhang).webhook_url == ""


def test_unknown_channels_and_kinds_are_refused(session: Session, zhang: Actor) -> None:
    seen = settings.view(session, zhang).seen
    with pytest.raises(InvalidInput, match="未知的通知渠道"):
        _save(session, zhang, seen, channels={"urge": ["sms"]})
    with pytest.raises(InvalidInput, match="未知的通知类型"):
        _save(session, zhang, seen, channels={"x" * 5000: ["in_app"]})


def test_the_test_notice_goes_through_the_outbox_once_a_minute(session: Session, zhang: Actor) -> None:
    _save(session, zhang, settings.view(session, zhang).seen)
    session.commit()
    assert settings.send_test(session, actor=zhang) == 3  # in-app, e-mail, webhook: queued, not fetched
    session.commit()
    kinds = sorted(m.kind for m in session.scalars(select(OutboxMessage)))
    assert kinds == ["email", "in_app", "webhook"]
    with pytest.raises(RateLimited):
        settings.send_test(session, actor=zhang)
    session.rollback()
    clock.advance(timedelta(seconds=61))
    assert settings.send_test(session, actor=zhang) == 3
    assert {d.channel for d in settings.view(session, zhang).deliveries} == {"email", "webhook"}
    assert {d.status for d in settings.view(session, zhang).deliveries} == {"pending"}


def test_an_emptied_address_removes_the_webhook(session: Session, zhang: Actor) -> None:
    _save(session, zhang, settings.view(session, zhang).seen)
    session.commit()
    _save(session, zhang, settings.view(session, zhang).seen, url="")
    session.commit()
    assert settings.view(session, zhang).webhook_url == ""
    assert session.scalar(select(AuditEvent.action).where(AuditEvent.action == "notify.webhook_removed"))


def test_two_tabs_saving_at_once_the_second_waits_and_is_refused(db_url: str, factory: sessionmaker[Session],
                                                                  session: Session, zhang: Actor) -> None:
    """Both pages saw the same settings; the first save holds the person's row until it commits, so the second
    compares with what the first wrote (not with what both saw) and is refused instead of overwriting it."""
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer)")
    seen = settings.view(session, zhang).seen
    session.commit()
    outcome: list[object] = []
    pids: list[int] = []
    with factory() as first:
        _save(first, zhang, seen)  # holds the row, uncommitted

        def second() -> None:
            with factory() as other:
                pids.append(int(other.execute(text("SELECT pg_backend_pid()")).scalar() or 0))
                try:
                    _save(other, zhang, seen, channels={"*": ["email"]}, url="")
                    other.commit()
                    outcome.append("saved")
                except Exception as exc:  # the outcome is the assertion
                    other.rollback()
                    outcome.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 20
        while not (pids and waits_for_a_lock(factory, pids[0])) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pids and waits_for_a_lock(factory, pids[0])
        first.commit()
    thread.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], Conflict), outcome
    session.expire_all()
    shown = settings.view(session, zhang)
    assert shown.webhook_url == HOOK and shown.channels["*"] == ("in_app",)


def _kinds_sent_by(folder: Path) -> set[str]:
    """The notice kinds the modules of `folder` send: `notice(user, "<kind>", …)`, `notify(session, user, "<kind>", …)`,
    `worded(user, "<kind>", …)` and `Note(kind="<kind>", …)` with a literal kind."""
    found: set[str] = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            at = {"notice": 1, "notify": 2, "worded": 1}.get(name)
            if at is not None and len(node.args) > at and isinstance(node.args[at], ast.Constant):
                found.add(str(node.args[at].value))
            found |= {str(k.value.value) for k in node.keywords
                      if name == "Note" and k.arg == "kind" and isinstance(k.value, ast.Constant)}
    return found


def test_every_notice_an_inbox_operation_sends_has_its_own_line_on_the_settings_page() -> None:
    # 转办, 委派, 委派退回, 加签, 加签完成, 退回, 抄送, 催办 … and the summary past the cap: a person chooses each
    # one's channels, not only through 其他通知
    sent = _kinds_sent_by(Path(settings.__file__).parents[1] / "tasks") | {quota.SUMMARY_KIND}
    assert {"task_assigned", "task_delegated", "task_returned", "task_ready", "task_sent_back", "cc", "urge"} <= sent
    assert sent - set(settings.KINDS) == set()
    assert len(set(settings.KINDS.values())) == len(settings.KINDS)  # no two lines with the same name
