"""SpiffArena's dynamic choices: `"anyOf": ["options_from_task_data_var:fruits"]` in a form's JSON Schema.

The field's choices come from the task data variable named after the prefix: a list of
`{"value": …, "label": …}` (SpiffArena's shape) or of plain values. Before the form is shown or checked,
the marker becomes `anyOf: [{"const": value, "title": label}, …]`; a variable that is missing or of another
shape gives no choice at all (`enum: []`), so nothing unexpected can be submitted. At deploy the marker is
checked for a variable name and the schema is validated with a stand-in choice.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

PREFIX = "options_from_task_data_var:"
MAX_OPTIONS = 1000


def markers(doc: Any, where: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Yield (path, variable name) for every dynamic-choices marker in a schema."""
    if isinstance(doc, Mapping):
        any_of = doc.get("anyOf")
        if isinstance(any_of, list) and len(any_of) == 1 and isinstance(any_of[0], str) \
                and any_of[0].startswith(PREFIX):
            yield (*where, "anyOf"), any_of[0][len(PREFIX):].strip()
        for key, value in doc.items():
            yield from markers(value, (*where, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from markers(value, (*where, index))


def _replace(doc: Any, choices: Any) -> Any:
    """Return a copy of the schema with every marker replaced by `choices(variable)` (a dict of keywords)."""
    if isinstance(doc, Mapping):
        any_of = doc.get("anyOf")
        if isinstance(any_of, list) and len(any_of) == 1 and isinstance(any_of[0], str) \
                and any_of[0].startswith(PREFIX):
            rest = {k: _replace(v, choices) for k, v in doc.items() if k != "anyOf"}
            return {**rest, **choices(any_of[0][len(PREFIX):].strip())}
        return {k: _replace(v, choices) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_replace(v, choices) for v in doc]
    return doc


def for_deploy(doc: Any) -> Any:
    """Return the schema with a stand-in choice for each marker, so it can be checked as JSON Schema."""
    return _replace(doc, lambda _name: {"anyOf": [{"const": "", "title": ""}]})


def options_of(value: Any) -> dict[str, Any]:
    """Turn a task data value into the keywords of a choice field (no choice unless it is a proper list)."""
    if not isinstance(value, list) or not value or len(value) > MAX_OPTIONS:
        return {"enum": []}
    branches: list[dict[str, Any]] = []
    for item in value:
        if isinstance(item, Mapping) and "value" in item:
            branches.append({"const": item["value"], "title": str(item.get("label", item["value"]))})
        elif isinstance(item, (str, int, float, bool)):
            branches.append({"const": item, "title": str(item)})
        else:
            return {"enum": []}
    return {"anyOf": branches}


def resolve(schema_text: str | None, data: Mapping[str, Any]) -> str | None:
    """Return the schema text with every marker replaced by the choices in the task data."""
    if not schema_text or PREFIX not in schema_text:
        return schema_text
    try:
        doc = json.loads(schema_text)
    except (ValueError, RecursionError):
        return schema_text
    return json.dumps(_replace(doc, lambda name: options_of(data.get(name))), ensure_ascii=False)


__all__ = ["PREFIX", "for_deploy", "markers", "options_of", "resolve"]
