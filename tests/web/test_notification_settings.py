"""通知设置 on the web: reached from the user's menu; one's own only; a stale tab is refused (409) and changes
nothing; an internal webhook is refused naming the field; 发送测试 queues (never fetches) and is rate-limited."""
from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from engine.notify import language, settings
from engine.notify.models import OutboxMessage
from engine.org.actors import actor_for
from tests.web.conftest import csrf_of
from tests.web.flows import db, post

Login = Callable[[str], FlaskClient]
HOOK = "https://hooks.example.com/robot/send?key=s3cret"
PAGE = "/notifications/settings"


@pytest.fixture(autouse=True)
def _hooks_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_WEBHOOK_ALLOW_HOSTS", "hooks.example.com")


def _seen(client: FlaskClient) -> str:
    found = re.search(r'name="seen" value="([0-9a-f]+)"', client.get(PAGE).get_data(as_text=True))
    assert found
    return found.group(1)


def test_the_page_is_in_the_menu_and_saves_ones_own_settings(app: Flask, login: Login) -> None:
    fg = login("fg")
    assert f'href="{PAGE}"' in fg.get("/notifications").get_data(as_text=True)
    saved = post(fg, PAGE, {"seen": _seen(fg), "channels_urge": ["in_app", "webhook"], "channels_*": "in_app",
                            "webhook_url": HOOK, "flavor": "json"}, page=PAGE)
    assert saved.status_code == 302
    html = fg.get(PAGE).get_data(as_text=True)
    assert HOOK.replace("&", "&amp;") in html and 'value="json" selected' in html
    other = login("st")
    assert "s3cret" not in other.get(PAGE).get_data(as_text=True)  # st sees her own, empty
    with db(app) as s:
        assert settings.view(s, actor_for(s, "fg")).channels["urge"] == ("in_app", "webhook")
        assert settings.view(s, actor_for(s, "st")).webhook_url == ""


def test_a_stale_tab_is_refused_and_changes_nothing(app: Flask, login: Login) -> None:
    fg = login("fg")
    tab = _seen(fg)
    assert post(fg, PAGE, {"seen": tab, "channels_*": "in_app", "webhook_url": HOOK, "flavor": "robot"},
                page=PAGE).status_code == 302
    stale = fg.post(PAGE, data={"csrf_token": csrf_of(fg, PAGE), "seen": tab, "channels_*": "email", "webhook_url": "",
                                "flavor": "robot"}, headers={"Accept": "application/json"})
    assert stale.status_code == 409 and "seen" in stale.get_data(as_text=True)
    with db(app) as s:
        shown = settings.view(s, actor_for(s, "fg"))
        assert shown.webhook_url == HOOK and shown.channels["*"] == ("in_app",)


def test_an_internal_webhook_is_refused_naming_the_field(app: Flask, login: Login) -> None:
    fg = login("fg")
    refused = fg.post(PAGE, data={"csrf_token": csrf_of(fg, PAGE), "seen": _seen(fg), "channels_*": "in_app",
                                  "webhook_url": "http://169.254.169.254/x", "flavor": "robot"},
                      headers={"Accept": "application/json"})
    assert refused.status_code == 422 and "webhook_url" in refused.get_data(as_text=True)
    with db(app) as s:
        assert settings.view(s, actor_for(s, "fg")).webhook_url == ""


def test_send_test_queues_and_is_rate_limited(app: Flask, login: Login) -> None:
    fg = login("fg")
    assert post(fg, PAGE, {"seen": _seen(fg), "channels_*": "in_app", "webhook_url": HOOK, "flavor": "robot"},
                page=PAGE).status_code == 302
    assert post(fg, f"{PAGE}/test", page=PAGE).status_code == 302
    again = fg.post(f"{PAGE}/test", data={"csrf_token": csrf_of(fg, PAGE)}, headers={"Accept": "application/json"})
    assert again.status_code == 429
    with db(app) as s:
        queued = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.startswith("notify_test:"))).all()
        assert len({m.dedupe_key.rsplit(":", 2)[0] for m in queued if m.dedupe_key}) == 1  # one test, not two
        assert all(m.delivered_at is None for m in queued)  # queued, never fetched inside the request
        channels = {m.kind for m in queued}
    listed = fg.get(PAGE).get_data(as_text=True)  # the last deliveries list it, named, waiting
    assert "还没有邮件或 Webhook 投递" not in listed and "待发送" in listed
    assert any({"email": "邮件", "webhook": "Webhook"}.get(c, c) in listed.split("最近投递", 1)[1] for c in channels)


def test_an_admin_reads_a_persons_settings_without_the_key_and_no_one_else_may(app: Flask, login: Login) -> None:
    fg = login("fg")
    assert post(fg, PAGE, {"seen": _seen(fg), "channels_*": "in_app", "webhook_url": HOOK, "flavor": "robot"},
                page=PAGE).status_code == 302
    with db(app) as s:
        fg_id = actor_for(s, "fg").user_id
    admin = login("admin")
    assert f"/admin/users/{fg_id}/notifications" in admin.get("/admin").get_data(as_text=True)
    shown = admin.get(f"/admin/users/{fg_id}/notifications")
    html = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "hooks.example.com" in html and "s3cret" not in html
    assert 'name="webhook_url"' not in html  # to read, not to edit
    assert login("st").get(f"/admin/users/{fg_id}/notifications").status_code == 403


def test_an_admin_reads_a_persons_saved_language(app: Flask, login: Login) -> None:
    """The administrators' read-only view showed channels and the webhook but not the language the person's mail and
    webhook go out in: it shows it (or that none was chosen, mail then Chinese), in the reader's words."""
    with db(app) as s:
        fg_id, st_id = actor_for(s, "fg").user_id, actor_for(s, "st").user_id
        language.choose(s, actor=actor_for(s, "fg"), language="en")
        s.commit()
    admin = login("admin")
    chosen = admin.get(f"/admin/users/{fg_id}/notifications").get_data(as_text=True)
    assert "语言：English" in chosen
    unchosen = admin.get(f"/admin/users/{st_id}/notifications").get_data(as_text=True)
    assert "语言：尚未选择（邮件为中文）" in unchosen
    admin.get("/lang/en")
    assert "Language: English" in admin.get(f"/admin/users/{fg_id}/notifications").get_data(as_text=True)
    english = admin.get(f"/admin/users/{st_id}/notifications").get_data(as_text=True)
    assert "Language: not chosen (mail in Chinese)" in english
