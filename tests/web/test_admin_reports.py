"""What 停用 and 重置密码 tell the administrator they did: the tasks and items handed over, the pending 申请延期
withdrawn, the units that lost their head; the API tokens revoked. In Chinese and in English."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from engine import clock
from engine.deadlines.models import ExtensionRequest
from engine.org.actors import actor_for
from engine.org.models import OrgUnit, User
from plan.supervision import actions
from tests.web.flows import Api, db, post, token_for, user_id
from tests.web.test_admin import _accept_held_by_window
from tests.web.test_admin_people import _seen

Login = Callable[[str], FlaskClient]


def _asked_by_window(app: Flask, task_id: int) -> int:
    with db(app) as s:
        request = actions.request_extension(s, actor=actor_for(s, "window"), task_id=task_id,
                                            due_date=(clock.now() + timedelta(days=30)).date(), reason="材料未齐")
        s.commit()
        return request.id


def _deactivate(admin: FlaskClient, app: Flask, data: dict[str, str] | None = None) -> str:
    done = post(admin, f"/admin/users/{user_id(app, 'window')}/deactivate", data or {}, page="/admin")
    assert done.status_code == 302
    return admin.get("/admin").get_data(as_text=True)


def test_the_deactivation_says_how_many_pending_extension_requests_it_withdrew(app: Flask, login: Login) -> None:
    accept = _accept_held_by_window(app, login)
    asked = _asked_by_window(app, accept)
    page = _deactivate(login("admin"), app, {"successor": "fg"})
    assert "1 项待办已移交给 fg" in page and "1 项待审批的延期申请已撤回" in page
    assert "此人没有需要移交的待办或事项" not in page
    with db(app) as s:
        request = s.get(ExtensionRequest, asked)
        assert request is not None and request.status == "cancelled"


def test_in_english_too_with_the_units_that_lost_their_head(app: Flask, login: Login) -> None:
    accept = _accept_held_by_window(app, login)
    _asked_by_window(app, accept)
    with db(app) as s:
        unit = OrgUnit(code="wt2", name="第二窗口", leader_id=user_id(app, "window"))
        s.add(unit)
        s.commit()
    admin = login("admin")
    admin.get("/lang/en")
    page = _deactivate(admin, app)
    assert "1 task(s) handed over" in page and "1 pending extension request(s) withdrawn" in page
    assert "1 unit(s) no longer have this person as head" in page
    assert "延期申请" not in page


def test_a_person_with_nothing_to_hand_over_is_said_so(app: Flask, login: Login) -> None:
    admin = login("admin")
    page = _deactivate(admin, app)
    assert "已停用用户 window" in page and "此人没有需要移交的待办或事项" in page
    with db(app) as s:  # 启用 again, to deactivate in English
        user = s.get(User, user_id(app, "window"))
        assert user is not None
        user.is_active = True
        s.commit()
    admin.get("/lang/en")
    assert "They had no open tasks or items to hand over" in _deactivate(admin, app)


def test_a_password_reset_says_how_many_api_tokens_it_revoked_in_english_too(app: Flask, login: Login) -> None:
    fg = user_id(app, "fg")
    Api(app, token_for(app, "fg"))
    Api(app, token_for(app, "fg", name="第二个"))
    admin = login("admin")
    admin.get("/lang/en")
    reset = post(admin, f"/admin/users/{fg}/password", {"password": "Temp-pass-123", "seen": _seen(admin, fg)},
                 page="/admin")
    assert reset.status_code == 302
    assert "2 API tokens revoked" in admin.get(reset.headers["Location"]).get_data(as_text=True)
