"""编辑人员's forms (调岗与角色, 负责人/责任领导, 重置密码, 启用), 停用 and one's own 通知设置 carry `seen`, the version the
page showed: sent twice — a double click, a resend after a slow answer — the second copy was refused 409 "changed by
someone else", the change being the user's own first click. Each carries `once` now: the second copy is the first's
answer (its redirect, its flash), nothing done twice; the same page used with other fields is refused 409."""
from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from engine.audit.models import AuditEvent
from engine.org import idempotency
from engine.org.token_models import IdempotencyRecord
from tests.web.conftest import form_at
from tests.web.flows import db, post, user_id
from tests.web.test_forms_once import sent_twice

Login = Callable[[str], FlaskClient]
HOOK = "https://hooks.example.com/robot/send?key=s3cret"


def _audited(app: Flask, action: str) -> int:
    with db(app) as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)) or 0


def test_a_persons_units_and_roles_saved_twice_are_saved_once(app: Flask, login: Login) -> None:
    admin, fg = login("admin"), user_id(app, "fg")
    action = f"/admin/users/{fg}/memberships"
    fields = {**form_at(admin, f"/admin/users/{fg}", action), "units": ["zrzy"], "roles": ["reviewer"]}
    sent_twice(admin, action, fields, said="已保存", other={"units": ["sthj"]})
    assert _audited(app, "org.user.edit") == 1


def test_a_mark_set_twice_is_set_once(app: Flask, login: Login) -> None:
    admin, fg = login("admin"), user_id(app, "fg")
    action = f"/admin/users/{fg}/marks"
    fields = form_at(admin, f"/admin/users/{fg}", action)  # the first: 设为负责人 of their unit
    sent_twice(admin, action, fields, said="负责人和责任领导", other={"on": "0" if fields["on"] == "1" else "1"})
    assert _audited(app, "org.unit.head") == 1


def test_a_password_reset_twice_is_reset_once_and_its_print_holds_no_plain_hash(app: Flask, login: Login) -> None:
    admin, fg = login("admin"), user_id(app, "fg")
    action = f"/admin/users/{fg}/password"
    fields = {**form_at(admin, f"/admin/users/{fg}", action), "password": "Temp-pass-123"}
    sent_twice(admin, action, fields, said="已重置", other={"password": "Temp-pass-456"})
    assert _audited(app, "org.user.password_reset") == 1
    sent = sorted((k, v) for k, v in fields.items() if k != "csrf_token")
    with db(app) as s:
        prints = list(s.scalars(select(IdempotencyRecord.fingerprint)))
    assert prints and idempotency.fingerprint("POST", action, json.dumps(sent).encode()) not in prints


def test_a_generated_password_asked_for_twice_is_made_once_and_never_shown_again(app: Flask, login: Login) -> None:
    """The generated password is shown once, to the first copy; the second is told it was reset by this form and that
    the password is not shown again (a new reset from the page, if it was not kept)."""
    admin, fg = login("admin"), user_id(app, "fg")
    action = f"/admin/users/{fg}/password"
    fields = {**form_at(admin, f"/admin/users/{fg}", action), "generate": "1"}
    first = admin.post(action, data=fields)
    assert first.status_code == 200 and '<pre class="token">' in first.get_data(as_text=True)
    second = admin.post(action, data=fields)
    assert second.status_code == 302 and second.headers["Location"].endswith(f"/admin/users/{fg}")
    shown = admin.get(second.headers["Location"]).get_data(as_text=True)
    assert "只在重置时显示一次" in shown and '<pre class="token">' not in shown
    assert _audited(app, "org.user.password_reset") == 1


def test_a_person_reactivated_twice_and_deactivated_twice_gets_the_first_answer(app: Flask, login: Login) -> None:
    admin, st = login("admin"), user_id(app, "st")
    action = f"/admin/users/{st}/deactivate"
    fields = form_at(admin, "/admin", action)
    sent_twice(admin, action, fields, said="已停用用户", other={"successor": "fg"})
    assert _audited(app, "org.user.deactivate") == 1
    action = f"/admin/users/{st}/reactivate"
    fields = form_at(admin, f"/admin/users/{st}", action)
    sent_twice(admin, action, fields, said="已启用用户", other={"seen": "0"})
    assert _audited(app, "org.user.reactivate") == 1


@pytest.fixture()
def hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_WEBHOOK_ALLOW_HOSTS", "hooks.example.com")


def test_ones_notification_settings_saved_twice_are_saved_once(app: Flask, login: Login, hooks: None) -> None:
    fg = login("fg")
    page = "/notifications/settings"
    fields = {**form_at(fg, page, page), "channels_*": "in_app", "webhook_url": HOOK, "flavor": "robot"}
    sent_twice(fg, page, fields, said="通知设置已保存", other={"flavor": "json"})
    with db(app) as s:
        prints = list(s.scalars(select(IdempotencyRecord.fingerprint)))
    sent = sorted((k, v) for k, v in fields.items() if k != "csrf_token")
    assert prints and idempotency.fingerprint("POST", page, json.dumps(sent).encode()) not in prints  # no plain key


def test_a_page_from_before_once_still_saves(app: Flask, login: Login) -> None:
    """A form without the key (a tab drawn before it) works as before: `seen` guards it."""
    admin, fg = login("admin"), user_id(app, "fg")
    seen = re.search(r'name="seen" value="([0-9a-f]+)"', admin.get(f"/admin/users/{fg}").get_data(as_text=True))
    assert seen is not None
    assert post(admin, f"/admin/users/{fg}/memberships", {"units": ["zrzy"], "seen": seen.group(1)},
                page="/admin").status_code == 302
