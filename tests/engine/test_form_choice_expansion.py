"""Choices a form draws through `$ref`s count against the form's limit (engine/content_limits.py).

A form file holds at most 100,000 JSON values, so written out it draws at most that many choices. One list of 2,000
choices under `$defs`, named by `$ref` from 1,000 fields, was drawn two million times: 400 such fields took 30 s and
30 MB a view of the task page, the start page or the modeller's preview, and every submission checked each answer
against its list. The choices reached through `$ref`s (and branches) now count together, as written out.
"""
from __future__ import annotations

from typing import Any

from engine import content_limits

CHOICES = {"type": "string", "enum": [f"选项{i}" for i in range(2_000)]}


def _form(fields: int, via: str = "enum") -> dict[str, Any]:
    shared = CHOICES if via == "enum" else {"type": "string", "oneOf": [{"const": v} for v in CHOICES["enum"]]}
    return {"type": "object", "$defs": {"choices": shared},
            "properties": {f"p{i}": {"$ref": "#/$defs/choices"} for i in range(fields)}}


def test_choices_drawn_through_refs_past_the_form_limit_are_refused() -> None:
    problems = content_limits.form_problems(_form(51))
    assert [path for path, _ in problems] == ["enum"], problems
    assert "more than 100,000 choices" in problems[0][1]
    assert content_limits.form_problems(_form(51, "oneOf"))  # each `const` branch is a schema: refused before too


def test_a_shared_list_within_the_limit_passes() -> None:
    assert content_limits.form_problems(_form(50)) == []
    assert content_limits.form_problems(_form(1)) == []
