"""A person's saved language (engine.notify.language, web/language.py): the switch used while logged in saves it
(by POST, with its CSRF token) and sets the cookie; on a new browser the pages open in it after login, whatever the
anonymous cookie said; 通知设置 shows and changes it, refusing anything but zh-CN/en by the field's name; a person
changes only their own; a link from elsewhere (GET /lang/…) changes a browser's cookie, never a person's choice."""
from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from engine import org
from engine.audit.models import AuditEvent
from engine.org.models import User
from tests.web.conftest import PASSWORD, PASSWORD_HASH, csrf_of
from tests.web.flows import db

Login = Callable[[str], FlaskClient]


def _saved(app: Flask, username: str) -> str | None:
    with db(app) as s:
        return s.scalar(select(User.language).where(User.username == username))


def _lang_of(client: FlaskClient, path: str = "/notifications/settings") -> str:
    html = client.get(path).get_data(as_text=True)
    return html.split('<html lang="', 1)[1].split('"', 1)[0]


def _log_in(app: Flask, username: str, cookie: str | None = None) -> FlaskClient:
    client = app.test_client()  # a new browser
    if cookie:
        client.get(f"/lang/{cookie}")
    token = csrf_of(client)
    assert client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token}).status_code == 302
    return client


def test_the_switch_saves_the_persons_language_and_a_new_browser_opens_in_it(app: Flask, login: Login) -> None:
    fg = login("fg")
    assert _lang_of(fg) == "zh-CN" and _saved(app, "fg") is None
    answer = fg.post("/lang/en", data={"csrf_token": csrf_of(fg, "/notifications/settings")},
                     headers={"Referer": "http://localhost/notifications/settings"})
    assert answer.status_code == 302 and "lang=en" in answer.headers["Set-Cookie"]
    assert _saved(app, "fg") == "en" and _lang_of(fg) == "en"
    fresh = _log_in(app, "fg")  # another browser, no cookie
    assert _lang_of(fresh) == "en"
    chinese_cookie = _log_in(app, "fg", cookie="zh")  # an anonymous visit's cookie does not override the choice
    assert _lang_of(chinese_cookie) == "en" and _saved(app, "fg") == "en"
    chinese_cookie.get("/lang/zh")  # a link (GET) while logged in: this browser's cookie, not the person's choice
    assert _saved(app, "fg") == "en" and _lang_of(chinese_cookie) == "en"
    chinese_cookie.post("/logout", data={"csrf_token": csrf_of(chinese_cookie, "/notifications/settings")})
    assert 'lang="en"' in chinese_cookie.get("/login").get_data(as_text=True)  # the cookie followed the person
    fg = _log_in(app, "fg")  # (the logout ended every session of the person)
    fg.post("/lang/zh", data={"csrf_token": csrf_of(fg, "/notifications/settings")})  # the switch back
    assert _saved(app, "fg") == "zh-CN" and _lang_of(_log_in(app, "fg", cookie="en")) == "zh-CN"
    with db(app) as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "notify.language")).all()
        assert [(e.before, e.after) for e in events] == [({"language": None}, {"language": "en"}),
                                                         ({"language": "en"}, {"language": "zh-CN"})]


def test_a_person_who_has_not_chosen_follows_the_cookie(app: Flask) -> None:
    english = _log_in(app, "st", cookie="en")
    assert _lang_of(english) == "en" and _saved(app, "st") is None  # the cookie is not saved silently
    assert _lang_of(_log_in(app, "st")) == "zh-CN"


def test_anonymous_switch_sets_the_cookie_only(app: Flask) -> None:
    client = app.test_client()
    client.get("/lang/en")
    assert 'lang="en"' in client.get("/login").get_data(as_text=True)
    token = csrf_of(client)
    assert client.post("/lang/zh", data={"csrf_token": token}).status_code == 302  # anonymous: the cookie
    assert 'lang="zh-CN"' in client.get("/login").get_data(as_text=True)


def test_settings_show_and_change_the_language_and_refuse_other_values(app: Flask, login: Login) -> None:
    st = login("st")
    page = st.get("/notifications/settings").get_data(as_text=True)
    assert 'action="/notifications/settings/language"' in page and '<option value="zh-CN" selected>' in page
    token = csrf_of(st, "/notifications/settings")
    for bad in ("fr", "zh", "", "en\x00", "长" * 100):
        answer = st.post("/notifications/settings/language", data={"language": bad, "csrf_token": token},
                         follow_redirects=True)
        assert answer.status_code in (200, 400, 422), bad
        assert "language" in answer.get_data(as_text=True) or bad == "en\x00", bad  # NUL: the guard's 400
        assert _saved(app, "st") is None
    assert st.post("/notifications/settings/language", data={"language": "en"}).status_code == 400  # no CSRF
    assert _saved(app, "st") is None
    answer = st.post("/notifications/settings/language", data={"language": "en", "csrf_token": token},
                     follow_redirects=True)
    assert "Language saved" in answer.get_data(as_text=True) and _saved(app, "st") == "en"
    assert '<option value="en" selected lang="en">' in st.get("/notifications/settings").get_data(as_text=True)
    assert st.post("/lang/xx", data={"csrf_token": token}, follow_redirects=True).status_code in (200, 422)
    assert _saved(app, "st") == "en"


def test_one_person_cannot_change_anothers_language(app: Flask, login: Login) -> None:
    st = login("st")
    with db(app) as s:
        fg_id = s.scalar(select(User.id).where(User.username == "fg"))
    token = csrf_of(st, "/notifications/settings")
    for field in ("user_id", "user", "username"):
        st.post("/notifications/settings/language",
                data={"language": "en", "csrf_token": token, field: str(fg_id) if field == "user_id" else "fg"})
    assert _saved(app, "fg") is None and _saved(app, "st") == "en"
    assert app.test_client().post("/notifications/settings/language", data={"language": "en"}).status_code in (
        302, 400)  # anonymous: no CSRF, no session
    assert _saved(app, "fg") is None


def test_an_auditor_may_choose_their_language(app: Flask, login: Login) -> None:
    """Auditors change nothing audited; the language they read in is theirs, like their password."""
    with db(app) as s:
        org.add_role(s, code="auditor", name="审计督查")
        org.add_user(s, username="audit1", display_name="审计员", role_codes=["auditor"])
        s.execute(update(User).where(User.username == "audit1").values(password_hash=PASSWORD_HASH))
        s.commit()
    auditor = login("audit1")
    token = csrf_of(auditor, "/notifications/settings")
    assert auditor.post("/lang/en", data={"csrf_token": token}).status_code == 302
    assert _saved(app, "audit1") == "en"
    assert auditor.post("/notifications/settings", data={"csrf_token": token, "seen": "x"}).status_code == 403
