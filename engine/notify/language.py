"""A person's language (app_user.language, migration 0045), and the words of their outbound notices in it.

"zh-CN" (the default) or "en". The rule: a person's saved language wins over the browser's `lang` cookie once they
are logged in, on any browser (web/__init__.py `_locale`); the language switch, used while logged in, saves it here
(`choose`) and sets the cookie too, and 通知设置 shows and changes it. A cookie set while anonymous (the login page)
never becomes a saved preference by itself: a person who has not chosen (null) sees the pages in the cookie's language
and gets Chinese mail.

Outbound notices to a person are worded in their language (`worded`): e-mail, and their own JSON webhook (which also
carries the text id and arguments, docs/architecture.md). The notice is rendered again from its text id and arguments
(engine.notify.texts) through the English catalogue, web/translations/en/LC_MESSAGES/messages.po, read here as data
(the engine imports nothing of the web). Group robots stay Chinese: they address a group. As on the web
(web/notifications/wording.py), arguments are data: they fill placeholders and are never read as a format string;
the arguments a notice names as `words` are the app's fixed words and are translated. Mail is plain text: nothing is
escaped and no markup added (a name typed "<b>" is mailed as typed).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit
from engine.errors import InvalidInput
from engine.notify import texts
from engine.org.actors import Actor
from engine.org.models import User

LANGUAGES = ("zh-CN", "en")
DEFAULT = "zh-CN"
CATALOGUE = Path(__file__).resolve().parents[2] / "web" / "translations" / "en" / "LC_MESSAGES" / "messages.po"
TITLE_ROOM = 300  # as core.worded cuts the Chinese title

# A trailing " (English gloss)" of a "中文 (English)" word: the half an English reader reads (as web.wording.split).
_GLOSS = re.compile(r"\s*[（(]([^()（）\u3000-\u9fff]*[A-Za-z][^()（）\u3000-\u9fff]*)[)）]\s*$")
_loaded: dict[str, Any] = {}
_lock = threading.Lock()


def checked(language: str) -> str:
    """Return the language if it is one of LANGUAGES.

    Raises: InvalidInput (field language)
    """
    if language not in LANGUAGES:
        raise InvalidInput(f"语言（language）须为 {' 或 '.join(LANGUAGES)} (language must be zh-CN or en): "
                           f"{language[:20]!r}", field="language")
    return language


def of(session: Session, user_id: int) -> str:
    """Return a person's language: their choice, else DEFAULT."""
    return chosen(session, user_id) or DEFAULT


def chosen(session: Session, user_id: int) -> str | None:
    """Return the language a person chose, None when they have not."""
    return session.scalar(select(User.language).where(User.id == user_id))


def choose(session: Session, *, actor: Actor, language: str) -> bool:
    """Save the actor's own language (flushes; audited as notify.language); return whether it changed.

    Only ever the actor's own: there is no user to name.

    Raises: InvalidInput (field language: not zh-CN or en; field user: not a signed-in person)
    """
    checked(language)
    if actor.user_id is None:
        raise InvalidInput("只有登录用户可以保存语言 (only a signed-in person has a language)", field="user")
    user = session.scalar(select(User).where(User.id == actor.user_id).with_for_update())  # two tabs: one after other
    if user is None:
        raise InvalidInput("只有登录用户可以保存语言 (only a signed-in person has a language)", field="user")
    before = user.language
    if before == language:
        return False
    user.language = language
    session.flush()
    audit.record(session, actor, "notify.language", stream=f"user:{user.id}", object_type="app_user",
                 object_id=user.id, before={"language": before}, after={"language": language})
    return True


def _english() -> dict[str, str]:
    """The catalogue's English by msgid (fuzzy and empty lines left out, as the compiled catalogue leaves them),
    read once per process and again when the file changes."""
    stamp = CATALOGUE.stat().st_mtime_ns
    with _lock:
        if _loaded.get("stamp") != stamp:
            with CATALOGUE.open("rb") as source:
                _loaded["english"] = {str(m.id): str(m.string) for m in read_po(source)
                                      if m.id and isinstance(m.id, str) and m.string and not m.fuzzy}
            _loaded["stamp"] = stamp
        english: dict[str, str] = _loaded["english"]
    return english


def translator(language: str) -> Callable[[str], str] | None:
    """msgid → text in the language (the msgid where the catalogue has none); None for Chinese, the source."""
    if language != "en":
        return None
    english = _english()
    return lambda msgid: english.get(msgid, msgid)


def _word(translate: Callable[[str], str], word: str) -> str:
    said = translate(word)
    match = _GLOSS.search(said)
    if match is not None and re.search(r"[\u4e00-\u9fff]", said[:match.start()]):
        return match.group(1).strip()
    return said


def worded(title: str, body: str, params: Any, language: str | None) -> tuple[str, str]:
    """Return a notice's title and body, plain text, in the language; as given (its Chinese) for Chinese, a notice
    without params, or params that no longer fit (a text since removed, an argument missing)."""
    translate = translator(language or DEFAULT)
    if translate is None or not isinstance(params, Mapping) or params.get("text") not in texts.TEXTS:
        return title, body
    args, words = params.get("args"), params.get("words") or ()
    if not isinstance(args, Mapping) or not isinstance(words, list | tuple):
        return title, body
    filled = {str(k): _word(translate, v) if k in words and isinstance(v, str) and v else v for k, v in args.items()}
    try:
        new_title, new_body = texts.render(str(params["text"]), filled, translate=translate)
    except (KeyError, ValueError, TypeError):
        return title, body
    return new_title[:TITLE_ROOM], new_body


__all__ = ["CATALOGUE", "DEFAULT", "LANGUAGES", "checked", "choose", "chosen", "of", "translator", "worded"]
