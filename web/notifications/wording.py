"""A notice in its reader's language: rendered again from its text id and arguments (engine.notify.texts) through
the i18n catalogue, where the row keeps them (`notification.params`, since migration 0044).

The arguments are data (names of people and tasks, notes people typed): each fills its placeholder escaped and marked
translate="no", and is never read as a format string itself, so a task named "%(x)s" or "{0}" shows as typed. The
arguments a notice names as `words` are the app's own fixed words (a step of the escalation ladder, a reason the
engine gives, "中文 (English)"): those are translated, or the half of the reader's language shown; a day (the text's
`texts.DAYS`, kept as an ISO date) is worded in the reader's language (03月07日, March 7), and a list of names is
joined in it (“、”, “, ”). A row without
params (written before the migration), or whose text or arguments no longer fit, is shown as stored.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from babel.dates import format_skeleton
from flask_babel import get_locale, get_translations
from markupsafe import Markup

from engine.notify import texts
from web.wording import localized


def _data(value: Any) -> Markup:
    return Markup('<span translate="no">{}</span>').format(value)


def _day(value: date) -> Markup:
    """A day of a notice (engine.notify.texts.DAYS) in the reader's words: 03月07日 as the stored text, March 7."""
    locale = get_locale()
    if locale is None or locale.language == "zh":
        return _data(texts.chinese_day(value))
    return _data(format_skeleton("MMMMd", value, locale=locale))


def shown(title: str, body: str | None, params: Any) -> tuple[Markup, Markup]:
    """Return a notice's title and body, escaped, in the reader's language (as stored when it cannot be)."""
    stored = Markup.escape(title), Markup.escape(body or "")
    text = params.get("text") if isinstance(params, Mapping) else None
    if not isinstance(text, str) or text not in texts.TEXTS:  # a list or object edited in: unhashable, not a text
        return stored
    args, words = params.get("args"), params.get("words") or ()
    if not isinstance(args, Mapping) or not isinstance(words, list | tuple):
        return stored
    translate = get_translations().gettext
    days = texts.DAYS.get(text, ())
    filled = {str(k): v if k in days else  # a day: worded by `_day` in texts.render
              Markup.escape(localized(translate(v))) if k in words and isinstance(v, str) and v else
              [_data(i) for i in v] if isinstance(v, list) else _data(v)  # a list: joined by texts.render
              for k, v in args.items()}  # ("" is the catalogue's header to gettext)
    try:
        new_title, new_body = texts.render(text, filled,
                                           translate=lambda msgid: Markup.escape(translate(msgid)), day=_day)
    except (KeyError, ValueError, TypeError):  # a translation naming an argument this row has not: as stored
        return stored
    return Markup.escape(new_title), Markup.escape(new_body)  # Markup already (escaped words, marked data): kept as is


def of(note: Any) -> tuple[Markup, Markup]:
    """`shown` of a Notification row."""
    return shown(note.title, note.body, getattr(note, "params", None))


__all__ = ["of", "shown"]
