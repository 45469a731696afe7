"""Render a task's JSON Schema (+ react-jsonschema-form UI schema) as a plain HTML form — no React.

SpiffArena's conventions: `ui:order` (with `*`), `ui:widget` (textarea, radio, select, checkbox,
checkboxes, date, range, hidden), `ui:enumNames`, `ui:help`, `ui:placeholder`, `ui:options.rows`,
`ui:autofocus`, `ui:readonly`; and jzflow's `ui:default` (`"today"`: an empty date field opens on today's date in
the city, worked out as the page is drawn, never stored; `engine.form_defaults`). Fields of `allOf` /
`if`-`then`-`else` branches are shown too; the server decides what they require. Field names are paths under `f/`
(`f/visits/0/enterprise`), so the data never collides with the page's own fields (`csrf_token`, `opinion`).
`web.formparse` reads them back.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask_babel import gettext as _
from markupsafe import Markup
from werkzeug.datastructures import MultiDict

from engine import clock, content_limits, form_defaults
from web.formschema import PREFIX, ROW_REMOVE, Form, Option, field_id, json_type, options, widget
from web.wording import localized

__all__ = ["MAX_ROWS", "PREFIX", "ROW_REMOVE", "Form", "Option", "field_id", "initial", "json_type", "options",
           "render", "row_count", "rows_past_limit", "tag", "widget"]

def _attrs(values: Mapping[str, Any]) -> Markup:
    parts = []
    for key, value in values.items():
        if value is None or value is False:
            continue
        parts.append(Markup(" {}").format(key) if value is True else Markup(' {}="{}"').format(key, value))
    return Markup("").join(parts)


def authored(text: Any) -> Markup:
    """Mark the form author's words (titles, help, choices from the BPMN) as data: they stay in their language."""
    return tag("span", {"translate": "no"}, text)


def tag(name: str, attrs: Mapping[str, Any], content: Any = None) -> Markup:
    if content is None and name in ("input", "br"):
        return Markup("<{}{}>").format(name, _attrs(attrs))  # names are our own literals: format escapes them anyway
    return Markup("<{0}{1}>{2}</{0}>").format(name, _attrs(attrs), content if content is not None else "")


# --- initial values: data → the raw form values the widgets show ---------------------------------------

def _text(value: Any, kind: str) -> str:
    if kind == "datetime":
        try:
            parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            local = clock.as_utc(parsed).astimezone(clock.SHANGHAI) if parsed.tzinfo else parsed
            return local.strftime("%Y-%m-%dT%H:%M")
        except ValueError:
            return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def initial(form: Form, data: Mapping[str, Any] | None) -> MultiDict[str, str]:
    """Return the raw form values for task data (schema defaults where the data has none)."""
    raw: MultiDict[str, str] = MultiDict()
    _flatten(form, form.root, form.ui, PREFIX, data or {}, raw)
    return raw


def _default(form: Form, schema: Mapping[str, Any], ui: Mapping[str, Any]) -> Any:
    """The schema's literal `default`, else the UI schema's keyword worked out now (`engine.form_defaults`: today's
    date on a date field; an unknown keyword gives nothing)."""
    if "default" in schema:
        return schema["default"]
    if form_defaults.KEY in ui:
        return form_defaults.value(ui[form_defaults.KEY], widget(schema, ui, form))
    return None


def _flatten(form: Form, schema: Mapping[str, Any], ui: Mapping[str, Any], path: str, value: Any,
             raw: MultiDict[str, str]) -> None:
    kind = widget(schema, ui, form)
    if kind == "object":
        values = value if isinstance(value, Mapping) else {}
        for name, sub, sub_ui in form.fields(schema, ui):
            _flatten(form, sub, sub_ui, f"{path}/{name}", values.get(name, _default(form, sub, sub_ui)), raw)
        return
    if value is None:
        return
    if kind == "rows":
        item, item_ui = form.item(schema, ui)
        for i, entry in enumerate(value if isinstance(value, list) else []):
            _flatten(form, item, item_ui, f"{path}/{i}", entry, raw)
    elif kind == "lines":
        item, _ = form.item(schema, ui)
        raw[path] = "\n".join(_text(v, widget(item, {}, form)) for v in (value if isinstance(value, list) else [value]))
    elif kind == "checkboxes":
        item, item_ui = form.item(schema, ui)
        chosen = value if isinstance(value, list) else [value]
        for option in options(item, item_ui) or []:
            if option.original in chosen:
                raw.add(path, option.value)
    elif kind in ("radio", "select"):
        match = next((o for o in options(schema, ui) or [] if o.original == value), None)
        raw[path] = match.value if match else _text(value, kind)
    elif kind == "checkbox":
        if value is True:
            raw[path] = "true"
    else:
        raw[path] = _text(value, kind)


# --- rendering ----------------------------------------------------------------------------------------

@dataclass
class Renderer:
    form: Form
    raw: MultiDict[str, str]
    errors: dict[str, list[str]]  # raw path → messages; claimed ones are removed as fields show them
    more: str = ""  # the rows field that asked for one more empty row
    disabled: bool = False

    def render(self) -> Markup:
        body = self._object_fields(self.form.root, self.form.ui, PREFIX, in_rows=False)
        top: list[Markup] = []
        description = self.form.root.get("description")
        if description:
            top.append(tag("p", {"class": "form-help", "translate": "no"}, description))
        left = [m for msgs in self.errors.values() for m in msgs]
        if left:
            top.append(tag("div", {"class": "flash flash-error form-errors", "role": "alert"},
                           Markup("").join(tag("div", {}, localized(m)) for m in left)))
        self.errors.clear()
        return Markup("").join([*top, body])

    def _claim(self, path: str, prefix: bool = False) -> list[str]:
        found = [m for p in list(self.errors) if p == path or (prefix and p.startswith(path + "/"))
                 for m in self.errors.pop(p)]
        return found

    def _object_fields(self, schema: Mapping[str, Any], ui: Mapping[str, Any], path: str, *, in_rows: bool) -> Markup:
        required = self.form.required(schema)
        return Markup("").join(self._field(sub, sub_ui, f"{path}/{name}", name, name in required, in_rows)
                               for name, sub, sub_ui in self.form.fields(schema, ui))

    def _field(self, schema: Mapping[str, Any], ui: Mapping[str, Any], path: str, name: str, required: bool,
               in_rows: bool) -> Markup:
        kind = widget(schema, ui, self.form)
        title = str(ui.get("ui:title") or schema.get("title") or name)
        fid = field_id(path)
        errors = self._claim(path, prefix=kind in ("lines", "checkboxes"))
        if kind == "object":
            inner = self._object_fields(schema, ui, path, in_rows=in_rows)
            return self._fieldset("object", authored(title), schema, ui, inner, errors, required)
        if kind == "rows":
            return self._rows(schema, ui, path, title, errors, required)
        if kind == "hidden":
            return tag("input", {"type": "hidden", "name": path, "value": self.raw.get(path, "")})
        readonly = bool(ui.get("ui:readonly") or ui.get("ui:disabled") or schema.get("readOnly")) or self.disabled
        common: dict[str, Any] = {"id": fid, "name": path, "aria-invalid": "true" if errors else None,
                                  "aria-describedby": f"{fid}-error" if errors else None,
                                  "autofocus": bool(ui.get("ui:autofocus")) and not in_rows}
        control = self._control(kind, schema, ui, path, fid, title, common, readonly, required and not in_rows)
        if kind in ("checkbox", "radio", "bool_radio", "checkboxes"):
            return self._wrap(kind, control, schema, ui, fid, errors, label=None)
        label = tag("label", {"for": fid}, Markup("{}{}").format(authored(title), self._star(required)))
        return self._wrap(kind, control, schema, ui, fid, errors, label=label)

    def _control(self, kind: str, schema: Mapping[str, Any], ui: Mapping[str, Any], path: str, fid: str, title: str,
                 common: dict[str, Any], readonly: bool, required: bool) -> Markup:
        value = self.raw.get(path, "")
        placeholder = ui.get("ui:placeholder")
        if placeholder:
            common = {**common, "translate": "no"}
        if kind == "textarea":
            opts = ui.get("ui:options") if isinstance(ui.get("ui:options"), Mapping) else {}
            rows = opts.get("rows") or ui.get("ui:rows") or 4
            return tag("textarea", {**common, "rows": rows, "placeholder": placeholder, "readonly": readonly,
                                    "required": required, "maxlength": schema.get("maxLength")}, value)
        if kind == "lines":
            return tag("textarea", {**common, "rows": 4, "readonly": readonly,
                                    "placeholder": placeholder or _("每行一项")}, value)
        if kind == "checkbox":
            box = tag("input", {**common, "type": "checkbox", "value": "true", "checked": value in ("true", "on", "1"),
                                "disabled": readonly})
            return tag("label", {"class": "check", "for": fid}, Markup("{} {}").format(box, authored(title)))
        if kind in ("select", "bool_select"):
            choices = (options(schema, ui) or []) if kind == "select" else _bool_options(ui)
            opts_html = [tag("option", {"value": ""}, _("请选择"))]
            opts_html += [tag("option", {"value": o.value, "selected": o.value == value}, o.label) for o in choices]
            return tag("select", {**common, "disabled": readonly, "required": required}, Markup("").join(opts_html))
        if kind in ("radio", "bool_radio", "checkboxes"):
            return self._choices(kind, schema, ui, path, fid, title, readonly, required)
        attrs: dict[str, Any] = {**common, "value": value, "placeholder": placeholder, "readonly": readonly,
                                 "required": required}
        if kind == "number":
            attrs.update(type="text", inputmode="decimal")  # Decimal-exact: no browser rounding to `step`
        elif kind == "integer":
            attrs.update(type="number", step=1, min=schema.get("minimum"), max=schema.get("maximum"))
        elif kind == "range":
            attrs.update(type="range", min=schema.get("minimum", 0), max=schema.get("maximum", 100),
                         step=1 if json_type(schema) == "integer" else "any")
        elif kind == "datetime":
            attrs.update(type="datetime-local")
        else:
            attrs.update(type=kind if kind in ("date", "email", "url") else "text", maxlength=schema.get("maxLength"))
        return tag("input", attrs)

    def _choices(self, kind: str, schema: Mapping[str, Any], ui: Mapping[str, Any], path: str, fid: str, title: str,
                 readonly: bool, required: bool) -> Markup:
        if kind == "checkboxes":
            item, item_ui = self.form.item(schema, ui)
            choices, chosen, input_type = options(item, item_ui) or [], self.raw.getlist(path), "checkbox"
        else:
            choices = (options(schema, ui) or []) if kind == "radio" else _bool_options(ui)
            chosen, input_type = [self.raw.get(path, "")], "radio"
        boxes = [tag("label", {"class": "check"}, Markup("{} {}").format(tag("input", {
            "type": input_type, "name": path, "value": o.value, "id": f"{fid}-{i}", "checked": o.value in chosen,
            "disabled": readonly, "required": required and input_type == "radio"}), authored(o.label)))
            for i, o in enumerate(choices)]
        legend = tag("legend", {}, Markup("{}{}").format(authored(title), self._star(required)))
        return tag("fieldset", {"class": "choices", "id": fid}, Markup("").join([legend, *boxes]))

    def _rows(self, schema: Mapping[str, Any], ui: Mapping[str, Any], path: str, title: str, errors: list[str],
              required: bool) -> Markup:
        item, item_ui = self.form.item(schema, ui)
        count = row_count(self.raw, path) + 1 + (1 if self.more == path else 0)
        item_title = item_ui.get("ui:title") or item.get("title")
        rows = []
        for i in range(count):
            row_path = f"{path}/{i}"
            inner = self._object_fields(item, item_ui, row_path, in_rows=True)
            row_errors = self._claim(row_path)
            remove = tag("label", {"class": "check row-remove"}, Markup("{} {}").format(tag("input", {
                "type": "checkbox", "name": f"{row_path}/{ROW_REMOVE}", "value": "1",
                "checked": bool(self.raw.get(f"{row_path}/{ROW_REMOVE}"))}), _("删除此行")))
            legend = authored(f"{item_title} {i + 1}") if item_title else Markup.escape(_("第%(n)s项", n=i + 1))
            rows.append(self._fieldset("row", legend, {}, {}, inner + remove, row_errors, False))
        more = tag("button", {"type": "submit", "name": "_more", "value": path, "class": "secondary",
                              "formnovalidate": True}, _("增加一行"))
        note = tag("p", {"class": "form-help"}, _("空行不会提交"))
        return self._fieldset("rows", authored(title), schema, ui, Markup("").join([*rows, note, more]), errors, required)

    def _fieldset(self, kind: str, title: Markup, schema: Mapping[str, Any], ui: Mapping[str, Any], inner: Markup,
                  errors: list[str], required: bool) -> Markup:
        legend = tag("legend", {}, Markup("{}{}").format(title, self._star(required)))
        return tag("fieldset", {"class": f"form-{kind}" + (" has-error" if errors else "")},
                   Markup("").join([legend, self._help(schema, ui), self._errors(errors, schema=schema), inner]))

    def _wrap(self, kind: str, control: Markup, schema: Mapping[str, Any], ui: Mapping[str, Any], fid: str,
              errors: list[str], label: Markup | None) -> Markup:
        parts = [label, control, self._help(schema, ui), self._errors(errors, fid, schema)]
        return tag("div", {"class": f"form-field form-{kind}" + (" has-error" if errors else "")},
                   Markup("").join(p for p in parts if p is not None))

    @staticmethod
    def _star(required: bool) -> Markup:
        return Markup(' <span class="req" title="{}">*</span>').format(_("必填")) if required else Markup("")

    @staticmethod
    def _help(schema: Mapping[str, Any], ui: Mapping[str, Any]) -> Markup:
        texts = [t for t in (schema.get("description"), ui.get("ui:help")) if t]
        return Markup("").join(tag("div", {"class": "form-help", "translate": "no"}, t) for t in texts)

    @staticmethod
    def _errors(errors: Iterable[str], fid: str | None = None, schema: Mapping[str, Any] | None = None) -> Markup:
        own = (schema or {}).get("errorMessage")  # the field's own words (engine.runtime.forms): the author's, data
        words = {own} if isinstance(own, str) else set(own.values()) if isinstance(own, Mapping) else set()
        return Markup("").join(tag("div", {"class": "field-error", "id": f"{fid}-error" if fid else None},
                                       authored(m) if m in words else localized(m)) for m in errors)


def _bool_options(ui: Mapping[str, Any]) -> list[Option]:
    names = ui.get("ui:enumNames")
    yes, no = (str(names[0]), str(names[1])) if isinstance(names, list) and len(names) == 2 else (_("是"), _("否"))
    return [Option("true", yes, True), Option("false", no, False)]


# rows of one table a form takes: the number in a row's field name comes from the browser
MAX_ROWS = content_limits.MAX_TABLE_ROWS
_ROW_NUMBER = re.compile(r"[0-9]+")


def row_count(raw: MultiDict[str, str], path: str) -> int:
    """Return how many rows of an array of objects the raw values hold (the highest index + 1), at most MAX_ROWS.

    Only a field whose name has a number in the row's place is a row, and only below MAX_ROWS: a number past it
    (rows_past_limit, which the parse refuses) is left out, so a page or a parse never walks more.
    """
    prefix = path + "/"
    highest = -1
    for key in raw:
        if key.startswith(prefix):
            number = key[len(prefix):].split("/", 1)[0]
            if _ROW_NUMBER.fullmatch(number) and len(number) < 5 and int(number) < MAX_ROWS:
                highest = max(highest, int(number))
    return highest + 1


def rows_past_limit(raw: MultiDict[str, str], path: str) -> bool:
    """Tell whether a field of the array at `path` names a row at or past MAX_ROWS."""
    prefix = path + "/"
    return any(_ROW_NUMBER.fullmatch(number := key[len(prefix):].split("/", 1)[0]) is not None
               and (len(number) >= 5 or int(number) >= MAX_ROWS) for key in raw if key.startswith(prefix))


def render(form: Form, raw: MultiDict[str, str], errors: Mapping[str, list[str]] | None = None, *, more: str = "",
           disabled: bool = False) -> Markup:
    """Return the form's fields as HTML (without the <form> element), showing `raw` values and field errors."""
    return Renderer(form, raw, {k: list(v) for k, v in (errors or {}).items()}, more=more, disabled=disabled).render()


__all__ = ["MAX_ROWS", "PREFIX", "Form", "Option", "field_id", "initial", "options", "render", "row_count",
           "rows_past_limit", "widget"]
