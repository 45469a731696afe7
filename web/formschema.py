"""A task form's JSON Schema and UI schema, walked one way for rendering, initial values and parsing.

`Form` holds both schemas; `widget` names the control a field gets, `options` its choices, `field_id` its
HTML id. `web.formrender` draws the HTML, `web.formparse` reads the submitted values back.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.runtime.formtext import order_names

PREFIX = "f"
ROW_REMOVE = "_remove"


@dataclass(frozen=True)
class Option:
    value: str  # what the form submits
    label: str
    original: Any  # the schema's value


class Form:
    """A JSON Schema and its UI schema, walked the same way for rendering, initial values and parsing."""

    def __init__(self, schema: Mapping[str, Any] | None, ui: Mapping[str, Any] | None = None) -> None:
        self.root: Mapping[str, Any] = schema or {"type": "object", "properties": {}}
        self.ui: Mapping[str, Any] = ui or {}

    @classmethod
    def from_text(cls, schema_text: str | None, ui_text: str | None = None) -> Form:
        schema = json.loads(schema_text) if schema_text else None
        ui = json.loads(ui_text) if ui_text else None
        return cls(schema if isinstance(schema, Mapping) else None, ui if isinstance(ui, Mapping) else None)

    def resolve(self, node: Any) -> Mapping[str, Any]:
        """Follow a local `$ref` (`#/$defs/...`, `#/definitions/...`); anything else is an empty schema."""
        seen = 0
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and seen < 20:
            target: Any = self.root
            for part in node["$ref"].lstrip("#").strip("/").split("/"):
                target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, Mapping) else None
            node = {**(target or {}), **{k: v for k, v in node.items() if k != "$ref"}}
            seen += 1
        return node if isinstance(node, Mapping) else {}

    def properties(self, schema: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
        """Return an object's fields: its properties, then new ones from allOf / if-then-else / anyOf / oneOf."""
        found: dict[str, Mapping[str, Any]] = {}
        for name, sub in (schema.get("properties") or {}).items():
            found[name] = self.resolve(sub)
        branches: list[Any] = [*schema.get("allOf", []), *schema.get("anyOf", []), *schema.get("oneOf", []),
                               schema.get("then"), schema.get("else")]
        for branch in branches:
            branch = self.resolve(branch)
            for name, sub in self.properties(branch) if branch else []:
                found.setdefault(name, sub)
        return list(found.items())

    @staticmethod
    def required(schema: Mapping[str, Any]) -> set[str]:
        """Return the unconditionally required names (then-branches are checked on the server only)."""
        names = set(schema.get("required") or [])
        for branch in schema.get("allOf", []):
            if isinstance(branch, Mapping) and "if" not in branch:
                names |= set(branch.get("required") or [])
        return names

    @staticmethod
    def ordered(props: list[tuple[str, Mapping[str, Any]]], ui: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
        """Apply `ui:order`; names it leaves out go where its `*` is, or at the end."""
        order = ui.get("ui:order")
        if not isinstance(order, list):
            return props
        by_name = dict(props)
        names = order_names([n for n, _ in props], order)
        return [(n, by_name[n]) for n in names]

    def fields(self, schema: Mapping[str, Any],
               ui: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
        """Return (name, schema, ui) of an object's fields, in display order."""
        return [(name, sub, ui.get(name) if isinstance(ui.get(name), Mapping) else {})
                for name, sub in self.ordered(self.properties(schema), ui)]

    def item(self, schema: Mapping[str, Any], ui: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        items = schema.get("items")
        item_ui = ui.get("items")
        return self.resolve(items), item_ui if isinstance(item_ui, Mapping) else {}


def json_type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind is None and "enum" in schema and schema["enum"]:
        first = schema["enum"][0]
        kind = "boolean" if isinstance(first, bool) else "integer" if isinstance(first, int) else \
            "number" if isinstance(first, float) else "string"
    if kind is None and "properties" in schema:
        kind = "object"
    return str(kind or "string")


def options(schema: Mapping[str, Any], ui: Mapping[str, Any]) -> list[Option] | None:
    """Return an enum's choices (`enum` + `ui:enumNames`, or `oneOf`/`anyOf` of `const` + `title`)."""
    names = ui.get("ui:enumNames")
    if isinstance(schema.get("enum"), list):
        values = list(schema["enum"])
        labels = [str(names[i]) if isinstance(names, list) and i < len(names) else str(v) for i, v in enumerate(values)]
    else:
        branches = schema.get("oneOf") or schema.get("anyOf")
        if not (isinstance(branches, list) and branches and all(isinstance(b, Mapping) and "const" in b for b in branches)):
            return None
        values = [b["const"] for b in branches]
        labels = [str(b.get("title", b["const"])) for b in branches]
    return [Option(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False), label, v)
            for v, label in zip(values, labels, strict=True)]


def widget(schema: Mapping[str, Any], ui: Mapping[str, Any], form: Form) -> str:
    """Choose how a field is shown and read: one name per widget kind."""
    chosen = ui.get("ui:widget")
    kind = json_type(schema)
    if kind == "object":
        return "object"
    if kind == "array":
        item, _item_ui = form.item(schema, ui)
        if options(item, _item_ui) is not None:
            return "checkboxes"
        return "rows" if json_type(item) == "object" else "lines"
    if chosen == "hidden":
        return "hidden"
    if kind == "boolean":
        return {"radio": "bool_radio", "select": "bool_select"}.get(str(chosen), "checkbox")
    if options(schema, ui) is not None:
        return "radio" if chosen == "radio" else "select"
    if kind in ("number", "integer"):
        return "range" if chosen == "range" else kind
    if chosen == "textarea":
        return "textarea"
    fmt = schema.get("format")
    if chosen == "date" or fmt == "date":
        return "date"
    if chosen in ("datetime", "date-time") or fmt == "date-time":
        return "datetime"
    return {"email": "email", "uri": "url"}.get(str(fmt), "text")


def field_id(path: str) -> str:
    return "fld-" + path.replace("/", "-")
