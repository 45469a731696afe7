"""Deploy problems, warnings and translation reports in the user's language.

A problem written from a catalogue template is translated here; a deploy's warnings (engine.deploy.references,
already bounded there) and a translation report (what `translate` changed at import) are flashed line by line.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import flash
from flask_babel import gettext

from engine.deploy import Translation
from engine.errors import DeployProblem

REPORT_LINES = 40  # flashed one per change; the rest are counted


def shown(problems: list[DeployProblem]) -> list[dict[str, Any]]:
    """Return each problem as a dict whose message is in the user's language (Chinese stays as written)."""
    rows: list[dict[str, Any]] = []
    for p in problems:
        row = vars(p).copy()
        if p.template:
            row["message"] = gettext(p.template, **(p.params or {}))
        rows.append(row)
    return rows


def flash_warnings(warnings: Sequence[DeployProblem]) -> None:
    """Flash each warning of a deploy (deployed all the same) with its file, line and element."""
    for row in shown(list(warnings)):
        where = row["file"] + (f":{row['line']}" if row["line"] else "")
        where += f" [{row['element_id']}]" if row["element_id"] else ""
        flash(gettext("警告") + f" {where}: {row['message']}", "warning")


def flash_report(translation: Translation) -> None:
    """Flash how many elements were translated and each change (file:line [element] what: before → after)."""
    flash(gettext("已转换 %(count)s 处其他工具的写法：", count=len(translation.report)), "info")
    for item in translation.report[:REPORT_LINES]:
        flash(str(item), "info")
    if len(translation.report) > REPORT_LINES:
        flash(gettext("……另有 %(count)s 处", count=len(translation.report) - REPORT_LINES), "info")


__all__ = ["flash_report", "flash_warnings", "shown"]
