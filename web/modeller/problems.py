"""Deploy problems in the user's language: a problem written from a catalogue template is translated here."""
from __future__ import annotations

from typing import Any

from flask_babel import gettext

from engine.errors import DeployProblem


def shown(problems: list[DeployProblem]) -> list[dict[str, Any]]:
    """Return each problem as a dict whose message is in the user's language (Chinese stays as written)."""
    rows: list[dict[str, Any]] = []
    for p in problems:
        row = vars(p).copy()
        if p.template:
            row["message"] = gettext(p.template, **(p.params or {}))
        rows.append(row)
    return rows


__all__ = ["shown"]
