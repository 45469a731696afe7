"""Camunda 7's embedded form fields (`camunda:formData`) as a JSON Schema form, where the meaning is clear.

Field types string, long/integer, double, boolean, date and enum, labels, defaults and the built-in
constraints (required, readonly, minlength, maxlength, min, max) carry over; a custom type, a custom
validator or an expression as default raises Untranslatable, and the formData stays for the deploy to refuse.
"""
from __future__ import annotations

from collections.abc import Mapping

from lxml import etree

from engine.spiff.foreign_expr import Untranslatable

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
FORM_TYPES = {"string": {"type": "string"}, "long": {"type": "integer"}, "integer": {"type": "integer"},
              "double": {"type": "number"}, "boolean": {"type": "boolean"},
              "date": {"type": "string", "format": "date"}}
FORM_CONSTRAINTS = {"minlength": "minLength", "maxlength": "maxLength", "min": "minimum", "max": "maximum"}


def form_schema(task: etree._Element, data: etree._Element) -> dict[str, object]:
    props: dict[str, object] = {}
    required: list[str] = []
    for field_el in data:
        if not isinstance(field_el.tag, str):
            continue
        if field_el.tag != f"{{{CAMUNDA_NS}}}formField":
            raise Untranslatable(f"<{etree.QName(field_el).localname}> in formData")
        fid = field_el.get("id") or ""
        if not fid.isidentifier():
            raise Untranslatable(f"form field id “{fid}” is not a variable name")
        kind = field_el.get("type") or "string"
        prop: dict[str, object]
        if kind == "enum":
            values = [(v.get("id"), v.get("name") or v.get("id")) for v in field_el.iter(f"{{{CAMUNDA_NS}}}value")]
            if not values:
                raise Untranslatable(f"enum field “{fid}” has no values")
            prop = {"type": "string", "oneOf": [{"const": v, "title": t} for v, t in values]}
        elif kind in FORM_TYPES:
            prop = dict(FORM_TYPES[kind])
        else:
            raise Untranslatable(f"form field type “{kind}” of “{fid}”")
        prop["title"] = field_el.get("label") or fid
        default = field_el.get("defaultValue")
        if default is not None:
            if "${" in default or "#{" in default:
                raise Untranslatable(f"an expression as default of “{fid}”")
            prop["default"] = _typed(default, prop)
        for c in field_el.iter(f"{{{CAMUNDA_NS}}}constraint"):
            cname, cvalue = c.get("name") or "", c.get("config")
            if cname == "required":
                required.append(fid)
            elif cname == "readonly":
                prop["readOnly"] = True
            elif cname in FORM_CONSTRAINTS and cvalue is not None:
                try:
                    prop[FORM_CONSTRAINTS[cname]] = int(cvalue) if cname in ("minlength", "maxlength") \
                        else float(cvalue) if "." in cvalue else int(cvalue)
                except ValueError as exc:
                    raise Untranslatable(f"constraint {cname}=“{cvalue}” of “{fid}”") from exc
            else:
                raise Untranslatable(f"constraint “{cname}” of “{fid}” (a custom validator)")
        props[fid] = prop
    if not props:
        raise Untranslatable("formData without fields")
    schema: dict[str, object] = {"title": task.get("name") or task.get("id") or "", "type": "object",
                                 "properties": props}
    if required:
        schema["required"] = required
    return schema


def _typed(text: str, prop: Mapping[str, object]) -> object:
    kind = prop.get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError as exc:
        raise Untranslatable(f"default “{text}” is not a {kind}") from exc
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise Untranslatable(f"default “{text}” is not true or false")
        return text.lower() == "true"
    return text


__all__ = ["form_schema"]
