"""The page's language: the logged-in person's saved one (engine.notify.language), else the browser's `lang` cookie.

The rule (docs/architecture.md, "One language per screen"): a person who chose a language (the switch while logged in,
or 通知设置) sees it on every browser once logged in, whatever the browser's cookie says; the switch used while logged
in saves it and sets the cookie too, so the login page after a logout stays in it. A cookie set while anonymous (the
login page) is never saved for the person: until they choose, their pages follow the cookie (and their mail is
Chinese). The switch saves only by POST with its CSRF token: a link from elsewhere (GET /lang/en) changes this browser's
cookie, never a person's preference.
"""
from __future__ import annotations

from flask import g
from flask_login import current_user
from werkzeug.wrappers import Response

COOKIE = "lang"
LOCALES = ("zh", "en")  # the catalogue's locales, as the cookie names them
_PERSON = {"zh": "zh-CN", "en": "en"}  # locale → app_user.language
_LOCALE = {v: k for k, v in _PERSON.items()}


def person_language(locale: str) -> str:
    """Return the saved form (zh-CN, en) of a locale; other text as it is (refused by the service)."""
    return _PERSON.get(locale, locale)


def locale_of(language: str | None) -> str | None:
    """Return the locale of a saved language (zh-CN → zh), None for none."""
    return _LOCALE.get(language or "")


def saved() -> str | None:
    """The logged-in person's saved language as a locale; None when anonymous or not chosen. An API token's request
    (g.api_auth "token") reads its token's person's, by id, once: a cookie session's user is never loaded for it."""
    if g.get("api_auth") == "token":
        if "api_language" not in g:
            from engine.notify import language as notify_language
            from web.common import db_session
            g.api_language = locale_of(notify_language.chosen(db_session(), g.actor.user_id or -1))
        return g.get("api_language")
    user = getattr(current_user, "user", None)  # a LoginUser's account; anonymous users have none
    return locale_of(getattr(user, "language", None))


def remember(response: Response, locale: str) -> Response:
    """Set this browser's language cookie (a year; the login page reads it)."""
    response.set_cookie(COOKIE, locale, max_age=365 * 86400, samesite="Lax", httponly=True)
    return response


__all__ = ["COOKIE", "LOCALES", "locale_of", "person_language", "remember", "saved"]
