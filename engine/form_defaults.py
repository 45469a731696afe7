"""Defaults a form asks for by keyword, worked out each time the form is drawn: `"ui:default": "today"`.

A JSON Schema `default` is a literal fixed at deploy: a date field that should open on the day it is filled in (联合出证's
出证日期) would hold the day the form was written. Its UI schema names a keyword instead, in the field's entry::

    "issued_on": {"ui:widget": "date", "ui:default": "today"}

`today` is today's date in the city (Asia/Shanghai, `engine.clock`), for a date field only (format or widget `date`;
deploy checks each form file alone and cannot tell a field's kind from its UI schema, so on another field the keyword
is ignored when the form is drawn): filled into the empty field when the page is drawn (`web.formrender.initial`),
never stored in a form file nor in the data until the person submits it. The server checks what is submitted as it
always did (the schema, and a service's own rule such as 联合出证's window from the application day to today): a default is
a proposal, not a value.

Deploy refuses a `ui:default` that is not one of `KEYWORDS` (a typo, an expression, markup), naming the file and the
path; a form file stored before this check that holds one is drawn without it: an unknown keyword is ignored, never
evaluated or shown. A literal `default` in the schema still wins where both are given.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from engine import clock

KEY = "ui:default"
KEYWORDS: dict[str, Callable[[], str]] = {
    "today": lambda: clock.now().astimezone(clock.SHANGHAI).date().isoformat(),
}
KINDS: dict[str, frozenset[str]] = {"today": frozenset({"date"})}  # the widget kinds a keyword fills


def value(keyword: Any, kind: str) -> str | None:
    """Return the value a keyword gives a field drawn as `kind` (`web.formschema.widget`), or None: unknown, or not
    meant for that kind of field (ignored, as deploy would refuse it)."""
    if not isinstance(keyword, str) or keyword not in KEYWORDS or kind not in KINDS[keyword]:
        return None
    return KEYWORDS[keyword]()


def problems(ui: Any) -> list[tuple[str, str]]:
    """Return (path, message) for each `ui:default` of a UI schema that is not a known keyword."""
    found = []
    for path, keyword in _walk(ui, ()):
        if not isinstance(keyword, str) or keyword not in KEYWORDS:
            shown = str(keyword)[:40] if isinstance(keyword, (str, int, float, bool)) else type(keyword).__name__
            found.append(("/".join(path), f"{KEY} must be one of {', '.join(sorted(KEYWORDS))} (got {shown!r})"))
    return sorted(found)


def _walk(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    stack: list[tuple[Any, tuple[str, ...]]] = [(node, path)]
    while stack:  # a UI schema's depth is bounded by content_limits before this walks it
        node, path = stack.pop()
        if isinstance(node, Mapping):
            for key, sub in node.items():
                if key == KEY:
                    yield (*path, str(key)), sub
                else:
                    stack.append((sub, (*path, str(key))))
        elif isinstance(node, list):
            stack.extend((sub, (*path, str(i))) for i, sub in enumerate(node))


__all__ = ["KEY", "KEYWORDS", "problems", "value"]
