"""One language per screen: engine messages carry "中文 (English)"; the page shows the half of its locale.

The engine and plan raise errors whose message is Chinese followed by an English gloss in parentheses
(`只有管理员可以访问 (admins only)`), so API clients and logs read both. A zh-CN page shows the Chinese
half only, an English page the gloss (or the whole message when there is none).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from flask_babel import get_locale
from markupsafe import Markup

# a trailing " (…)" gloss: ASCII letters, and no CJK inside
_GLOSS = re.compile(r"\s*[（(]([^()（）\u3000-\u9fff]*[A-Za-z][^()（）\u3000-\u9fff]*)[)）]\s*$")
_INNER_GLOSS = re.compile(r"\s*\(([a-z][^()\u3000-\u9fff]*)\)(?=[:：])")


def split(message: str) -> tuple[str, str | None]:
    """Return (Chinese, English gloss or None) of a "中文 (English)" message; the detail after a colon stays (in
    both halves of "中文 (English): detail")."""
    inner = _INNER_GLOSS.search(message)
    text = _INNER_GLOSS.sub("", message) if inner else message
    match = _GLOSS.search(text)
    if match is None or not re.search(r"[\u4e00-\u9fff]", text[:match.start()]):
        # "任务不存在 (no such task): 5": the gloss and the detail after it (the detail is data); an English text with
        # parentheses before a colon (a catalogue's translation) has no Chinese before them and no gloss
        glossed = inner is not None and re.search(r"[\u4e00-\u9fff]", message[:inner.start()])
        return text, inner.group(1) + message[inner.end():] if glossed and inner else None
    return text[:match.start()], match.group(1).strip()


def localized(message: str) -> str:
    """Return the half of a bilingual message that the current locale reads."""
    zh, en = split(message)
    if str(get_locale() or "zh") == "en":
        return en or message
    return zh


def worded(message: str, details: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return an API problem's message and details in the current locale's half: each field's message of a
    form_invalid (`fields`), and the message rebuilt from them (its own halves would split at the last field's)."""
    fields = details.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, dict) and isinstance(f.get("message"), str)
                                               for f in fields):
        return localized(message), details
    said = [{**f, "message": localized(f["message"])} for f in fields]
    head = localized(message.split(":", 1)[0]) if ":" in message else localized(message)
    return f"{head}: " + "; ".join(f"{f.get('field')}: {f['message']}" for f in said), {**details, "fields": said}


def person(name: str | None) -> Markup:
    """Return a person's name as shown, marked as data (translate="no"): the engine's own actor ("system") is 系统."""
    from flask_babel import gettext as _
    if not name or name in ("system", "系统"):  # the plan layer names the system 系统 already
        return Markup.escape(_("系统"))
    return Markup('<span translate="no">{}</span>').format(name)


def listed(value: str | Sequence[str]) -> str:
    """Return names joined in the reader's language (“、”, “, ”); text as it is."""
    from flask_babel import gettext as _
    return value if isinstance(value, str) else _("、").join(value)


MANUAL = "（手动）"


def plan_word(word: str) -> str:
    """Return, in the reader's language, a fixed word the plan layer hands over in Chinese (督办 steps and actions)."""
    from flask_babel import gettext as _
    if word.endswith(MANUAL):
        return f"{_(word[:-len(MANUAL)])}{_(MANUAL)}"
    return _(word) if word else word
