"""管理 → 编辑人员: an administrator moves a person, changes roles and marks, resets a password, reactivates; others
are refused, stale forms are refused, a generated password is shown once and never cached."""
from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from engine.audit.models import AuditEvent
from engine.org import staffing
from engine.org.models import OrgUnit, User
from engine.org.token_models import ApiToken
from tests.web.flows import Api, db, post, token_for, user_id

Login = Callable[[str], FlaskClient]


def _seen(client: FlaskClient, uid: int) -> str:
    page = client.get(f"/admin/users/{uid}").get_data(as_text=True)
    found = re.search(r'name="seen" value="([0-9a-f]+)"', page)
    assert found, page[:400]
    return found.group(1)


def test_non_admins_cannot_see_or_change_a_person(app: Flask, login: Login) -> None:
    fg = user_id(app, "fg")
    for who in ("fg", "applicant"):
        staff = login(who)
        assert staff.get(f"/admin/users/{fg}").status_code == 403, who
        for path, form in ((f"/admin/users/{fg}/memberships", {"units": "zrzy", "is_admin": "1"}),
                           (f"/admin/users/{fg}/marks", {"unit": "fgj", "mark": "head", "on": "1"}),
                           (f"/admin/users/{fg}/password", {"password": "Hostile-pass-1"}),
                           (f"/admin/users/{fg}/reactivate", {})):
            assert post(staff, path, form).status_code == 403, (who, path)
    with db(app) as s:
        user = s.get(User, fg)
        assert user is not None and not user.is_admin and not user.must_change_password
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.stream == f"user:{fg}", AuditEvent.action.like("org.user.%"),
            AuditEvent.action != "org.user.add")) == 0


def test_an_admin_moves_a_person_and_makes_them_head_from_the_list(app: Flask, login: Login) -> None:
    admin = login("admin")
    fg = user_id(app, "fg")
    assert f"/admin/users/{fg}" in admin.get("/admin").get_data(as_text=True)  # 编辑人员 from the list
    moved = post(admin, f"/admin/users/{fg}/memberships", {"units": ["zrzy"], "roles": ["reviewer"],
                                                            "seen": _seen(admin, fg)}, page="/admin")
    assert moved.status_code == 302
    head = post(admin, f"/admin/users/{fg}/marks", {"unit": "zrzy", "mark": "head", "on": "1",
                                                     "seen": _seen(admin, fg)}, page="/admin")
    assert head.status_code == 302
    with db(app) as s:
        unit = s.scalar(select(OrgUnit).where(OrgUnit.code == "zrzy"))
        assert unit is not None and unit.leader_id == fg


def test_a_stale_form_an_unknown_unit_and_no_csrf_change_nothing(app: Flask, login: Login) -> None:
    admin = login("admin")
    fg = user_id(app, "fg")
    seen = _seen(admin, fg)
    assert admin.post(f"/admin/users/{fg}/memberships", data={"units": "zrzy", "seen": seen}).status_code == 400
    unknown = post(admin, f"/admin/users/{fg}/memberships", {"units": ["nowhere"], "seen": seen}, page="/admin")
    assert unknown.status_code == 404 and "单位不存在" in unknown.get_data(as_text=True)
    assert post(admin, f"/admin/users/{fg}/memberships", {"units": ["zrzy"], "roles": ["reviewer"], "seen": seen},
                page="/admin").status_code == 302
    stale = post(admin, f"/admin/users/{fg}/memberships", {"units": ["sthj"], "seen": seen}, page="/admin")
    assert stale.status_code == 409 and "刷新" in stale.get_data(as_text=True)
    blind = post(admin, f"/admin/users/{fg}/memberships", {"units": ["sthj"]}, page="/admin")
    assert blind.status_code == 409
    assert admin.get("/admin/users/999999").status_code == 404
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "org.user.edit")) == 1


def test_a_generated_password_is_shown_once_and_the_person_must_change_it(app: Flask, login: Login) -> None:
    fg_client = login("fg")
    admin = login("admin")
    fg = user_id(app, "fg")
    oversized = post(admin, f"/admin/users/{fg}/password", {"password": "x" * 5000, "seen": _seen(admin, fg)},
                     page="/admin")
    assert oversized.status_code == 422 and "临时密码" in oversized.get_data(as_text=True)
    reset = post(admin, f"/admin/users/{fg}/password", {"password": "", "seen": _seen(admin, fg)}, page="/admin")
    assert reset.status_code == 200 and reset.headers["Cache-Control"] == "no-store"
    found = re.search(r'<pre class="token">([^<]+)</pre>', reset.get_data(as_text=True))
    assert found
    temporary = found.group(1)
    assert fg_client.get("/inbox").status_code == 302  # their session ended
    with db(app) as s:
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "org.user.password_reset")))
        assert len(events) == 1 and temporary not in str(events[0].before) + str(events[0].after)
    fresh = app.test_client()
    assert fresh.post("/login", data={"username": "fg", "password": temporary,
                                      "csrf_token": _csrf(fresh)}).status_code == 302
    assert fresh.get("/inbox").headers["Location"].endswith("/account/password")
    changed = fresh.post("/account/password", data={"current_password": temporary, "new_password": "Mine-pass-123",
                                                    "confirm_password": "Mine-pass-123",
                                                    "csrf_token": _csrf(fresh, "/account/password")})
    assert changed.status_code == 302
    assert fresh.get("/inbox").status_code == 200


def test_a_reset_stops_the_persons_api_tokens_and_none_is_issued_until_the_password_is_changed(
        app: Flask, login: Login) -> None:
    """A reset after a compromise: a token taken with the password answers 401 at once, and the temporary password
    cannot be turned into a new one — by the person (their login reaches only 修改密码) nor by an administrator."""
    fg = user_id(app, "fg")
    old = Api(app, token_for(app, "fg"))
    assert old.get("/api/tasks").status_code == 200
    admin = login("admin")
    reset = post(admin, f"/admin/users/{fg}/password", {"password": "Temp-pass-123", "seen": _seen(admin, fg)},
                 page="/admin")
    assert reset.status_code == 302
    assert "吊销 1 个 API 令牌" in admin.get(reset.headers["Location"]).get_data(as_text=True)
    gone = old.get("/api/tasks")
    assert gone.status_code == 401 and gone.json is not None and gone.json["error"] == "unauthorized"
    assert old.post("/api/tasks/1/claim").status_code == 401
    for_fg = post(admin, "/admin/tokens", {"name": "代建", "username": "fg"}, page="/admin/tokens")
    assert for_fg.status_code == 422 and "临时密码" in for_fg.get_data(as_text=True)
    fresh = app.test_client()
    assert fresh.post("/login", data={"username": "fg", "password": "Temp-pass-123",
                                      "csrf_token": _csrf(fresh)}).status_code == 302
    mine = fresh.post("/admin/tokens", data={"name": "自建", "csrf_token": _csrf(fresh, "/account/password")})
    assert mine.status_code == 403
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.revoked_at.is_(None),
                                                                          ApiToken.user_id == fg)) == 0
        [event] = s.scalars(select(AuditEvent).where(AuditEvent.action == "org.user.password_reset"))
        assert event.after is not None and event.after["tokens_revoked"] == 1
    assert fresh.post("/account/password", data={"current_password": "Temp-pass-123", "new_password": "Mine-pass-123",
                                                 "confirm_password": "Mine-pass-123",
                                                 "csrf_token": _csrf(fresh, "/account/password")}).status_code == 302
    again = fresh.post("/admin/tokens", data={"name": "自建", "csrf_token": _csrf(fresh, "/admin/tokens")})
    assert again.status_code == 201


def _csrf(client: FlaskClient, page: str = "/login") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(page).get_data(as_text=True))
    assert found
    return found.group(1)


def test_reactivation_from_the_page(app: Flask, login: Login) -> None:
    admin = login("admin")
    st = user_id(app, "st")
    assert post(admin, f"/admin/users/{st}/deactivate", {}, page="/admin").status_code == 302
    refused = post(admin, f"/admin/users/{st}/password", {"password": "Temp-pass-123", "seen": _seen(admin, st)},
                   page="/admin")
    assert refused.status_code == 422
    assert post(admin, f"/admin/users/{st}/reactivate", {"seen": _seen(admin, st)}, page="/admin").status_code == 302
    with db(app) as s:
        user = s.get(User, st)
        assert user is not None and user.is_active


def _form_values(page: str, name: str) -> list[str]:
    """What the browser sends for `name`: selected options of an enabled select (not disabled ones), hidden inputs."""
    sent = re.findall(rf'<input type="hidden" name="{name}" value="([^"]+)">', page)
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', page, re.S)
    assert select is not None
    if " disabled" not in select.group(0).split(">", 1)[0]:
        sent += [m.group(1) for m in re.finditer(r'<option value="([^"]+)"[^>]*>', select.group(1))
                 if " selected" in m.group(0) and " disabled" not in m.group(0)]
    return sent


def test_an_sso_person_gets_roles_the_provider_does_not_give_and_keeps_those_it_does(
        app: Flask, login: Login, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_OIDC_ROLE_MAP", "approver=reviewer")  # the provider gives reviewer, nothing else
    fg = user_id(app, "fg")
    with db(app) as s:
        person = s.get(User, fg)
        assert person is not None
        person.source = "oidc"
        s.commit()
    admin = login("admin")
    page = admin.get(f"/admin/users/{fg}").get_data(as_text=True)
    assert "角色 reviewer 由统一身份认证管理" in page
    assert re.search(r'<option value="reviewer"[^>]* selected disabled', page)  # shown, not the admin's to change
    assert _form_values(page, "roles") == ["reviewer"] and _form_values(page, "units") == ["fgj"]
    added = post(admin, f"/admin/users/{fg}/memberships",
                 {"units": _form_values(page, "units"), "roles": [*_form_values(page, "roles"), "leader"],
                  "seen": _seen(admin, fg)}, page="/admin")
    assert added.status_code == 302
    # a hand-made form dropping the provider's role is refused, naming it, and changes nothing
    dropped = post(admin, f"/admin/users/{fg}/memberships", {"units": ["fgj"], "roles": ["leader"],
                                                              "seen": _seen(admin, fg)}, page="/admin")
    assert dropped.status_code == 422 and "reviewer" in dropped.get_data(as_text=True)
    with db(app) as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "org.user.edit")) == 1
        person = s.get(User, fg)
        assert person is not None and staffing.person(s, person).roles == ["leader", "reviewer"]
