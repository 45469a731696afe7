"""Read a rendered JSON Schema form back into typed task data, and place the server's errors at their fields.

The schema decides each value's type: numbers become `Decimal` (never float), integers `int`,
checkboxes `bool`, enum choices the schema's own values. Empty inputs are left out, so `required`
is what reports them. Rows of an array of objects that were left empty (or ticked "删除此行") are
dropped; the data paths of the rows that remain are mapped back to their inputs for error messages.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict

from engine import clock
from engine.errors import FieldError
from web.formrender import MAX_ROWS, row_count, rows_past_limit
from web.formschema import PREFIX, ROW_REMOVE, Form, json_type, options, widget

TRUE = ("true", "on", "1")


@dataclass
class Parsed:
    data: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)  # raw path → messages (values that did not parse)
    remap: dict[str, str] = field(default_factory=dict)  # data path → raw path, where rows were dropped

    def raw_path(self, data_path: str) -> str:
        """Return the input name showing a data path (`visits/0/x` → `f/visits/2/x` when rows were dropped)."""
        if data_path in ("", "(form)"):
            return ""
        parts = data_path.split("/")
        for cut in range(len(parts), 0, -1):
            mapped = self.remap.get("/".join(parts[:cut]))
            if mapped is not None:
                return "/".join([mapped, *parts[cut:]])
        return f"{PREFIX}/{data_path}"

    def place(self, errors: Iterable[FieldError]) -> dict[str, list[str]]:
        """Return parse errors plus the server's field errors, keyed by input name (parse errors win a field)."""
        placed = {k: list(v) for k, v in self.errors.items()}
        for error in errors:
            path = self.raw_path(error.field)
            if path in self.errors:
                continue  # "required" after a value that did not parse says nothing new
            placed.setdefault(path, []).append(error.message)
        return placed


def parse(form: Form, raw: MultiDict[str, str]) -> Parsed:
    """Read the submitted values under `f/` into data shaped by the schema."""
    result = Parsed(data={})
    value, _touched = _value(form, form.root, form.ui, PREFIX, "", raw, result, required=True)
    result.data = value if isinstance(value, dict) else {}
    return result


def _value(form: Form, schema: Mapping[str, Any], ui: Mapping[str, Any], path: str, data_path: str,
           raw: MultiDict[str, str], result: Parsed, *, required: bool) -> tuple[Any, bool]:
    """Return (value or None, whether the user entered anything)."""
    kind = widget(schema, ui, form)
    if kind == "object":
        values: dict[str, Any] = {}
        touched = False
        names = form.required(schema)
        for name, sub, sub_ui in form.fields(schema, ui):
            sub_data = f"{data_path}/{name}" if data_path else name
            value, sub_touched = _value(form, sub, sub_ui, f"{path}/{name}", sub_data, raw, result,
                                        required=name in names)
            touched = touched or sub_touched
            if value is not None:
                values[name] = value
        return (values if touched or required else None), touched
    if kind == "rows":
        return _rows(form, schema, ui, path, data_path, raw, result)
    if kind == "checkboxes":
        item, item_ui = form.item(schema, ui)
        chosen = raw.getlist(path)
        picked = [o.original for o in options(item, item_ui) or [] if o.value in chosen]
        return (picked or None), bool(picked)
    if kind == "checkbox":
        checked = raw.get(path, "").lower() in TRUE
        return checked, checked
    text = raw.get(path, "").replace("\r\n", "\n").strip()
    if kind in ("bool_radio", "bool_select"):
        return ({"true": True, "false": False}.get(text), bool(text))
    if not text:
        return None, False
    if kind == "lines":
        item, _item_ui = form.item(schema, ui)
        items = [_scalar(json_type(item), line.strip(), path, result) for line in text.split("\n") if line.strip()]
        return [i for i in items if i is not None] or None, True
    if kind in ("radio", "select"):
        match = next((o for o in options(schema, ui) or [] if o.value == text), None)
        return (match.original if match else text), True  # an unknown value is left for `enum` to refuse
    if kind == "datetime":
        return _datetime(text, path, result), True
    return _scalar(json_type(schema), text, path, result), kind != "range"  # a slider always sends a value


def _rows(form: Form, schema: Mapping[str, Any], ui: Mapping[str, Any], path: str, data_path: str,
          raw: MultiDict[str, str], result: Parsed) -> tuple[Any, bool]:
    item, item_ui = form.item(schema, ui)
    if rows_past_limit(raw, path):
        result.errors.setdefault(path, []).append(_("最多 %(n)s 行", n=MAX_ROWS))
        return None, True
    rows: list[Any] = []
    for i in range(row_count(raw, path)):
        row_path = f"{path}/{i}"
        if raw.get(f"{row_path}/{ROW_REMOVE}"):
            continue
        row_data = f"{data_path}/{len(rows)}"
        value, touched = _value(form, item, item_ui, row_path, row_data, raw, result, required=False)
        if touched and value is not None:
            if row_path != f"{PREFIX}/{row_data}":
                result.remap[row_data] = row_path
            rows.append(value)
    return (rows or None), bool(rows)


def _scalar(kind: str, text: str, path: str, result: Parsed) -> Any:
    if kind not in ("number", "integer"):
        return text
    try:
        number = Decimal(text.replace(",", "").replace("，", "").replace(" ", ""))
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        result.errors.setdefault(path, []).append(_("请输入数字"))
        return None
    if kind == "integer":
        if number != number.to_integral_value():
            result.errors.setdefault(path, []).append(_("请输入整数"))
            return None
        return int(number)
    return number


def _datetime(text: str, path: str, result: Parsed) -> str | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        result.errors.setdefault(path, []).append(_("日期时间格式无效"))
        return None
    if parsed.tzinfo is None:  # the browser's datetime-local is wall time in Asia/Shanghai
        parsed = parsed.replace(tzinfo=clock.SHANGHAI)
    return parsed.isoformat(timespec="seconds")


__all__ = ["Parsed", "parse"]
