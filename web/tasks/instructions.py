"""Render a task's instructions (a process owner's Jinja template) safely, as text with line breaks.

The template runs in Jinja's immutable sandbox with autoescape on, over the task's data. What it
produces is then shown as text: no HTML from the template or from the data reaches the page, only
line breaks and `**bold**` (added after escaping). A broken template shows its source as text.
"""
from __future__ import annotations

import html
import time
from collections.abc import Mapping
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

MAX_CHARS = 20_000  # a template that loops is cut off here …
MAX_SECONDS = 0.5  # … or when it has taken this long between two pieces of output
_env = ImmutableSandboxedEnvironment(autoescape=True)


def render_text(template: str | None, data: Mapping[str, Any]) -> str:
    """Return the instructions as plain text (the template's own markup included as text)."""
    if not template:
        return ""
    try:
        compiled = _env.from_string(template)
        pieces: list[str] = []
        size = 0
        started = time.monotonic()
        for piece in compiled.generate(**{k: v for k, v in data.items() if isinstance(k, str)}):
            pieces.append(piece)
            size += len(piece)
            if size > MAX_CHARS or time.monotonic() - started > MAX_SECONDS:
                pieces.append(" …")
                break
        rendered = "".join(pieces)
    except Exception:  # a broken or refused template (SecurityError, UndefinedError, …) must not break the page
        return template
    # Autoescape protected the data inside the template; undo it once so all of it is shown as text.
    return html.unescape(rendered)


def _bold(line: Markup) -> Markup:
    parts = line.split("**")
    pairs = (len(parts) - 1) // 2  # an unmatched ** stays as it is
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        out.append(Markup("<strong>{}</strong>").format(part) if i % 2 and i <= 2 * pairs - 1
                   else part if i % 2 == 0 else Markup("**") + part)
    return Markup("").join(out)


def to_html(text: str) -> Markup:
    """Escape text, then keep its line breaks and `**bold**`."""
    return Markup("<br>\n").join(_bold(line) for line in escape(text).splitlines())


def render(template: str | None, data: Mapping[str, Any]) -> Markup:
    """Return the task's instructions as safe HTML."""
    return to_html(render_text(template, data))


__all__ = ["render", "render_text", "to_html"]
