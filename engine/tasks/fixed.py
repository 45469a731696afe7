"""Fields an application fixes on a step's form: shown filled in and read-only, refused with another value.

An application may bind a process instance to a case of its own, and then some fields of a step's form are no longer
the person's to choose: an instance started for one case is that case's, whatever a form would name (the
application's extension says which). The application registers, per process key, a function (`FIXED`) given
the session and the step, returning the fields it fixes there: the form's field name → `Fixed` (the value, and the
words refusing another one). The engine then
- draws them filled in with that value and read-only (`ui:readonly`: the task page, the API's task);
- on a submission (the page, the API, 批量办理, the CLI: all through `engine.tasks.complete`), before the schema
  checks it, takes the value for a field left out or empty, and refuses another value whole (FormInvalid naming each
  such field with whatever else the form finds, nothing kept). A text is the same value with whitespace around it
  (the web form strips what is typed); letters are compared as they are (a code in another letter case is another).
Only top-level fields of the step's form are fixed; a process without an entry keeps its forms as they are.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from engine.errors import FieldError, FormInvalid
from engine.runtime import forms
from engine.tasks.models import HumanTask


@dataclass(frozen=True)
class Fixed:
    """One fixed field: its value, and why another is refused ("中文 (English)", naming the field)."""

    value: Any
    message: str


Fixer = Callable[[Session, HumanTask], Mapping[str, Fixed]]
FIXED: dict[str, Fixer] = {}  # process key → what the application fixes on a step of its instances


def _load(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except (ValueError, RecursionError):
        return None


def _fields(schema: str | Mapping[str, Any] | None) -> frozenset[str]:
    """The fields a person fills on the form (forms.field_names: parsed once per form text, not per submission)."""
    if isinstance(schema, Mapping):
        props = schema.get("properties")
        return frozenset(props) if isinstance(props, Mapping) else frozenset()
    return forms.field_names(schema)


def of(session: Session, task: HumanTask, schema: str | Mapping[str, Any] | None) -> dict[str, Fixed]:
    """Return the fields fixed on the step, of those its form (`schema`: its text, or read) has."""
    fixer = FIXED.get(task.process_key) if task.kind == "bpmn" else None
    if fixer is None:
        return {}
    found = fixer(session, task)
    if not found:
        return {}
    fields = _fields(schema)
    return {name: one for name, one in found.items() if name in fields}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _same(given: Any, value: Any) -> bool:
    if isinstance(given, str) and isinstance(value, str):
        return given.strip() == value.strip()
    return bool(given == value) and type(given) is type(value)


def apply(session: Session, task: HumanTask, schema_text: str | None,
          data: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    """Return the submitted data with the step's fixed fields set to their values, and the refusal of each fixed field
    submitted with another value (the caller refuses the submission with them and whatever else its form finds)."""
    fixed = of(session, task, schema_text)
    result = dict(data)
    errors = []
    for name, one in fixed.items():
        given = data.get(name)
        if not (_blank(given) or _same(given, one.value)):
            errors.append(FieldError(name, one.message))
        result[name] = one.value
    return result, errors


def validated(errors: list[FieldError], check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run the form's check on the data `apply` gave; refuse the fixed fields' `errors` with the form's others.

    Raises: FormInvalid
    """
    try:
        cleaned = check()
    except FormInvalid as exc:
        named = {e.field for e in errors}
        raise FormInvalid(errors + [e for e in exc.errors if e.field not in named]) from None
    if errors:
        raise FormInvalid(errors)
    return cleaned


def read_only_ui(ui: Any, names: Iterable[str]) -> dict[str, Any]:
    """Return a copy of a UI schema (read) with the named fields read-only (`ui:readonly`)."""
    marked = dict(ui) if isinstance(ui, Mapping) else {}
    for name in names:
        entry = marked.get(name)
        marked[name] = {**(entry if isinstance(entry, Mapping) else {}), "ui:readonly": True}
    return marked


def read_only(ui_text: str | None, names: Iterable[str]) -> str | None:
    """Return the UI schema text with the named fields read-only (`ui:readonly`)."""
    names = list(names)
    if not names:
        return ui_text
    return json.dumps(read_only_ui(_load(ui_text), names), ensure_ascii=False)


def values(fixed: Mapping[str, Fixed]) -> dict[str, Any]:
    """The fixed fields' values, by name."""
    return {name: one.value for name, one in fixed.items()}


__all__ = ["FIXED", "Fixed", "Fixer", "apply", "of", "read_only", "read_only_ui", "validated", "values"]
