"""Submitted form data as people read it: each field's title and its value in words, in the form's order.

Walks a task's JSON Schema and UI schema the way the form was shown (`ui:order` with `*`, `title`, `enum` with
`ui:enumNames`, `oneOf`/`anyOf` of `const` + `title`, booleans as 是/否, nested objects and rows, fields of
`allOf` / `if`-`then`-`else` branches, local `$ref`), so a read-only view and a printed document show labels and
enum titles, never raw keys. Values the schema does not describe still show, under their key, after the rest:
nothing that was submitted is hidden. Plain text only: whoever renders it escapes it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from engine import clock
from engine.runtime import form_keywords

MAX_DEPTH = 12
YES, NO = "是", "否"


@dataclass(frozen=True)
class Field:
    """One submitted field: its label and value as text, or its sub-fields (an object, a row of a table)."""

    key: str
    label: str
    text: str = ""
    children: list[Field] = field(default_factory=list)
    multiline: bool = False


def _resolve(root: Mapping[str, Any], node: Any) -> Mapping[str, Any]:
    seen = 0
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and seen < 20:
        target: Any = root
        for part in node["$ref"].lstrip("#").strip("/").split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, Mapping) else None
        node = {**(target if isinstance(target, Mapping) else {}), **{k: v for k, v in node.items() if k != "$ref"}}
        seen += 1
    return node if isinstance(node, Mapping) else {}


def _properties(root: Mapping[str, Any], schema: Mapping[str, Any], depth: int = 0) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    props = schema.get("properties")
    for name, sub in (props.items() if isinstance(props, Mapping) else []):
        found[str(name)] = _resolve(root, sub)
    if depth > MAX_DEPTH:
        return found
    branches: list[Any] = [*(schema.get("allOf") or []), *(schema.get("anyOf") or []),
                           *(schema.get("oneOf") or []), schema.get("then"), schema.get("else")]
    for branch in branches:
        resolved = _resolve(root, branch)
        for name, sub in _properties(root, resolved, depth + 1).items() if resolved else []:
            found.setdefault(name, sub)
    return found


def _ordered(names: list[str], ui: Mapping[str, Any]) -> list[str]:
    order = ui.get("ui:order")
    return order_names(names, order) if isinstance(order, list) else names


def order_names(names: list[str], order: list[Any]) -> list[str]:
    """Apply a `ui:order` list to field names: each name once, those it leaves out where its first `*` is, or at
    the end. Linear in the order: before, every `*` placed the rest again (`["*"] * 90000` under 1,000 fields drew
    90 million), and each name was looked for in lists."""
    known = set(names)
    listed = {n for n in order if isinstance(n, str) and n in known}
    rest = [n for n in names if n not in listed]
    result: list[str] = []
    placed: set[str] = set()
    for n in order:
        if n == "*":
            if "*" not in placed:
                placed.add("*")
                result += rest
        elif isinstance(n, str) and n in known and n not in placed:
            placed.add(n)
            result.append(n)
    if "*" not in placed:
        result += rest
    return result


def _choices(schema: Mapping[str, Any], ui: Mapping[str, Any]) -> list[tuple[Any, str]] | None:
    names = ui.get("ui:enumNames")
    if isinstance(schema.get("enum"), list):
        values = list(schema["enum"])
        return [(v, str(names[i]) if isinstance(names, list) and i < len(names) else _scalar(v))
                for i, v in enumerate(values)]
    branches = schema.get("oneOf") or schema.get("anyOf")
    if isinstance(branches, list) and branches and all(isinstance(b, Mapping) and "const" in b for b in branches):
        return [(b["const"], str(b.get("title", _scalar(b["const"])))) for b in branches]
    return None


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return YES if value else NO
    if isinstance(value, datetime):
        local = clock.as_utc(value).astimezone(clock.SHANGHAI) if value.tzinfo else value
        return local.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return str(value)


def _datetime_text(value: Any) -> str:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return _scalar(parsed)


def _label_of(choices: list[tuple[Any, str]], value: Any) -> str:
    """The choice's label: numbers as written (the API's Decimal('0.1') is the schema's 0.1), booleans no numbers."""
    wanted = form_keywords.same(value)
    return next((label for original, label in choices if form_keywords.same(original) == wanted), _scalar(value))


def _item(root: Mapping[str, Any], schema: Mapping[str, Any], ui: Mapping[str, Any]) -> tuple[Mapping[str, Any],
                                                                                                 Mapping[str, Any]]:
    item_ui = ui.get("items")
    return _resolve(root, schema.get("items")), item_ui if isinstance(item_ui, Mapping) else {}


def _is_object(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or (kind is None and "properties" in schema)


def _field(root: Mapping[str, Any], key: str, schema: Mapping[str, Any], ui: Mapping[str, Any], value: Any,
           depth: int) -> Field:
    label = str(ui.get("ui:title") or schema.get("title") or key)
    if depth > MAX_DEPTH:
        return Field(key, label, _scalar(value))
    if isinstance(value, Mapping):
        return Field(key, label, children=_fields(root, schema, ui, value, depth + 1))
    if isinstance(value, list):
        item, item_ui = _item(root, schema, ui)
        choices = _choices(item, item_ui)
        if choices is not None or not any(isinstance(v, Mapping) for v in value):
            texts = [_label_of(choices, v) if choices is not None else _scalar(v) for v in value]
            return Field(key, label, "、".join(texts) if choices is not None else "\n".join(texts),
                         multiline=choices is None and len(texts) > 1)
        item_title = str(item_ui.get("ui:title") or item.get("title") or label)
        rows = [Field(f"{key}/{i}", f"{item_title} {i + 1}", children=_fields(root, item, item_ui, v, depth + 1))
                if isinstance(v, Mapping) else Field(f"{key}/{i}", f"{item_title} {i + 1}", _scalar(v))
                for i, v in enumerate(value)]
        return Field(key, label, children=rows)
    choices = _choices(schema, ui)
    if choices is not None:
        return Field(key, label, _label_of(choices, value))
    if isinstance(value, bool):
        names = ui.get("ui:enumNames")
        if isinstance(names, list) and len(names) == 2:
            return Field(key, label, str(names[0] if value else names[1]))
        return Field(key, label, _scalar(value))
    if isinstance(value, str) and (schema.get("format") == "date-time" or ui.get("ui:widget") in ("datetime",
                                                                                                  "date-time")):
        return Field(key, label, _datetime_text(value))
    text = _scalar(value)
    return Field(key, label, text, multiline=ui.get("ui:widget") == "textarea" or "\n" in text)


def _fields(root: Mapping[str, Any], schema: Mapping[str, Any], ui: Mapping[str, Any], data: Mapping[str, Any],
            depth: int) -> list[Field]:
    props = _properties(root, schema) if _is_object(schema) or "allOf" in schema else {}
    names = _ordered(list(props), ui)
    shown: list[Field] = []
    for name in names:
        if name not in data or data[name] is None or data[name] == "" or data[name] == []:
            continue
        found_ui = ui.get(name)
        sub_ui: Mapping[str, Any] = found_ui if isinstance(found_ui, Mapping) else {}
        if sub_ui.get("ui:widget") == "hidden":
            continue
        shown.append(_field(root, name, props[name], sub_ui, data[name], depth))
    for name in sorted(str(k) for k in data if k not in props):  # not in the form: still shown, under its key
        value = data[name]
        if value is None or value == "" or value == []:
            continue
        shown.append(_field(root, name, {}, {}, value, depth))
    return shown


def describe(schema: Mapping[str, Any] | None, ui: Mapping[str, Any] | None, data: Mapping[str, Any]) -> list[Field]:
    """Return the submitted data as labelled fields, in the form's order (empty values left out)."""
    root = schema if isinstance(schema, Mapping) else {"type": "object", "properties": {}}
    return _fields(root, root, ui if isinstance(ui, Mapping) else {}, data, 0)


def describe_texts(schema_text: str | None, ui_text: str | None, data: Mapping[str, Any]) -> list[Field]:
    """Like `describe`, from the form files' texts (a file that is not JSON counts as absent)."""
    def parse(text: str | None) -> Mapping[str, Any] | None:
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, Mapping) else None
    return describe(parse(schema_text), parse(ui_text), data)


def title_of(schema_text: str | None) -> str | None:
    """Return a form's own title, if it has one."""
    try:
        value = json.loads(schema_text) if schema_text else None
    except ValueError:
        return None
    title = value.get("title") if isinstance(value, Mapping) else None
    return str(title) if title else None


__all__ = ["Field", "describe", "describe_texts", "title_of"]
