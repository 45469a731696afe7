"""Validate submitted task data against the task's JSON Schema on the server.

A schema's `$ref` resolves only inside the deployment's own form files (by plain name) or the schema
itself: the registry holds those files and its retrieve function refuses everything else, so no URL
a process owner wrote is ever fetched (jsonschema's default would fetch http:// and file:// refs).
A schema's `pattern`s are matched by RE2, never by Python's backtracking `re`, and so is an answer to a
`"format": "regex"` field compiled (engine/patterns.py).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, validators
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT202012

from engine import content_limits, patterns
from engine.errors import FieldError, FormInvalid
from engine.runtime import form_keywords
from engine.spiff import inert

RESERVED_PREFIX = "_"
patterns.install()  # a schema's patterns are matched by RE2, in time linear in the input (engine/patterns.py)


def _refuse(uri: str) -> Resource[Any]:
    """The registry's retrieve function: nothing outside the deployment's files is ever fetched."""
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


def registry(files: Mapping[str, str]) -> Registry[Any]:
    """Return a registry holding the deployment's JSON form files under their names, retrieving nothing else."""
    resources = []
    for name, text in files.items():
        if not name.lower().endswith(".json") or inert.local_ref_file(name) != name:
            continue
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            continue
        if isinstance(doc, dict):
            resources.append((name, Resource.from_contents(doc, default_specification=DRAFT202012)))
    return Registry(retrieve=_refuse).with_resources(resources)  # type: ignore[call-arg]


@lru_cache(maxsize=512)
def _validator(schema_text: str, files: tuple[tuple[str, str], ...] = ()) -> Any:
    schema = json.loads(schema_text)
    base = validators.validator_for(schema, default=Draft202012Validator)
    cls = validators.extend(base, form_keywords.for_draft(base))  # type: ignore[no-untyped-call]
    return cls(schema, format_checker=patterns.format_checker(), registry=registry(dict(files)))


def _field(error: Any) -> str:
    path = "/".join(str(p) for p in error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, Mapping):
        absent = [m for m in error.validator_value if m not in error.instance]
        # jsonschema raises one error per missing property ("'name' is a required property"):
        # name the one this error is about, not always the first that is missing.
        missing = next((m for m in absent if error.message.startswith(f"{m!r} ")), absent[0] if absent else None)
        if missing is not None:
            return f"{path}/{missing}" if path else str(missing)
    return path or "(form)"


# What each JSON Schema keyword's refusal says, in Chinese with an English gloss (web shows the reader's half).
# `{v}` is the keyword's value. A field's own words come first: its `errorMessage` (a string, or one per keyword).
MESSAGES: dict[str, str] = {
    "required": "必填 (required)",
    "type": "类型不对，应为{v} (must be {e})",
    "pattern": "格式不正确 (does not match the expected format)",
    "format": "格式不正确，应为{v} (not a valid {e})",
    "minLength": "至少 {v} 个字 (at least {v} characters)",
    "maxLength": "最多 {v} 个字 (at most {v} characters)",
    "minimum": "不能小于 {v} (must be ≥ {v})",
    "maximum": "不能大于 {v} (must be ≤ {v})",
    "exclusiveMinimum": "须大于 {v} (must be > {v})",
    "exclusiveMaximum": "须小于 {v} (must be < {v})",
    "multipleOf": "须为 {v} 的整数倍 (must be a multiple of {v})",
    "enum": "请从给定选项中选择 (must be one of the choices)",
    "const": "取值不符合要求 (must be the required value)",
    "minItems": "至少填写 {v} 项 (at least {v} items)",
    "maxItems": "最多填写 {v} 项 (at most {v} items)",
    "uniqueItems": "不能有重复项 (items must be unique)",
    "minProperties": "至少填写 {v} 项 (at least {v} fields)",
    "maxProperties": "最多填写 {v} 项 (at most {v} fields)",
    "additionalProperties": "含有表单未定义的字段 (unexpected field)",
    "unevaluatedProperties": "含有表单未定义的字段 (unexpected field)",
    "dependentRequired": "填写此项时还须填写：{v} (other fields required)",
    "contains": "缺少符合要求的项 (no item matches)",
    "oneOf": "填写的内容不符合任何一种要求 (matches none or several of the alternatives)",
    "anyOf": "填写的内容不符合任何一种要求 (matches none of the alternatives)",
    "not": "填写的内容不允许 (not allowed)",
    "if": "填写的内容不符合条件要求 (does not meet the conditional requirement)",
}
TYPE_NAMES = {"string": "文本", "number": "数字", "integer": "整数", "boolean": "是/否", "array": "列表",
              "object": "对象", "null": "空"}
FORMAT_NAMES = {"date": "日期（年-月-日）", "date-time": "日期时间", "time": "时间", "email": "电子邮箱",
                "uri": "网址", "ipv4": "IPv4 地址", "uuid": "UUID"}


def _own_words(error: Any) -> str | None:
    """Return the field's `errorMessage` for this refusal: a string, or the entry for the keyword."""
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    words = schema.get("errorMessage")
    if error.validator == "required" and isinstance(error.instance, Mapping):
        properties = schema.get("properties")
        missing = _field(error).rpartition("/")[2]
        field = properties.get(missing) if isinstance(properties, Mapping) else None
        words = field.get("errorMessage") if isinstance(field, Mapping) else None
        words = words.get("required") if isinstance(words, Mapping) else None  # a plain string is for bad values
        return words if isinstance(words, str) and words.strip() else None
    if isinstance(words, Mapping):
        words = words.get(error.validator)
    return words if isinstance(words, str) and words.strip() else None


def _message(error: Any, schema: Mapping[str, Any]) -> str:
    own = _own_words(error)
    if own:
        return own.strip()[:500]
    template = MESSAGES.get(str(error.validator))
    if template is None:
        return "填写的内容不符合要求 (invalid value)"
    value = error.validator_value
    shown: Any = value
    english: Any = value
    if error.validator == "type":
        kinds = value if isinstance(value, list) else [value]
        shown = "或".join(TYPE_NAMES.get(str(k), str(k)) for k in kinds)
        english = " or ".join(str(k) for k in kinds)
    elif error.validator == "format":
        shown, english = FORMAT_NAMES.get(str(value), str(value)), value
    elif error.validator == "dependentRequired" and isinstance(value, Mapping):
        shown = "、".join(str(n) for names in value.values() for n in names)
    return template.format(v=shown, e=english)


def validate(schema_text: str | None, data: Mapping[str, Any], files: Mapping[str, str] | None = None, *,
             name: str | None = None, stored_checked: bool = False) -> dict[str, Any]:
    """Return the submitted data as a dict if it satisfies the schema (`files`: the version's forms, for `$ref`).

    Every client's data for a workflow passes here (a form, the API's and the CLI's start data, a message's payload
    its catch checks): its size, depth and values are bounded before the schema or SpiffWorkflow walks it. A stored
    schema (`name`: its file) that deploy would refuse today, or a file it reaches through `$ref`, refuses every
    submission naming the file: a version deployed before the limits may hold one. `stored_checked`: the caller
    refused that file already (`refuse_stored` on this very text), so it is not checked twice.

    Raises: FormInvalid (each error names its field; nothing is changed)
    """
    if not isinstance(data, Mapping):
        raise FormInvalid([FieldError("(form)", "表单数据必须是对象 (must be an object)")])
    too_big = content_limits.data_problem(data)
    if too_big is not None:
        raise FormInvalid([FieldError(*too_big)])
    reserved = [k for k in data if not isinstance(k, str) or k.startswith(RESERVED_PREFIX) or not k]
    if reserved:
        raise FormInvalid([FieldError(str(k), "保留字段名 (reserved field name)") for k in reserved])
    if schema_text is None:
        return dict(data)
    if not stored_checked:
        refuse_stored(name or "(form)", schema_text)
    needed = _reachable(schema_text, files or {})
    for file, text in needed.items():
        refuse_stored(file, text)
    if needed:  # branches through the other files, counted together as deploy counts them
        refused = content_limits.stored_reach_problem(name or "(form)", schema_text, needed)
        if refused is not None:
            raise FormInvalid([FieldError("(form)", refused)])
    validator = _validator(schema_text, tuple(sorted(needed.items())))
    try:
        errors = sorted(validator.iter_errors(dict(data)), key=lambda e: (list(e.absolute_path), e.message))
    except RecursionError:  # a branch naming itself where nothing above counts it (a version deployed before)
        raise FormInvalid([FieldError("(form)", f"表单 {name or '(form)'} 的引用层层嵌套，无法校验 (form "
                                                f"{name or '(form)'} refers to itself without end)")]) from None
    except Unresolvable as exc:  # deploy refuses such a $ref; a version deployed before that check may have one
        raise FormInvalid([FieldError("(form)", f"表单定义引用了部署之外的内容 (unresolvable $ref): {exc}")]) from None
    except patterns.PatternRefused as exc:  # deploy refuses it too; a version deployed before may have one
        raise FormInvalid([FieldError("(form)", f"表单定义中的格式规则无法执行 (the form's pattern): {exc}")]) from None
    if errors:
        raise FormInvalid([FieldError(_field(e), _message(e, validator.schema)) for e in errors])
    return dict(data)


@lru_cache(maxsize=256)
def field_names(schema_text: str | None) -> frozenset[str]:
    """Return the fields a person fills on a form: its top-level properties, also those of its allOf / if-then parts
    (where a conditional field lives). A service refusing one of them refuses the submission (runtime/refusal.py)."""
    try:
        schema = json.loads(schema_text) if schema_text else None
    except ValueError:
        return frozenset()
    names: set[str] = set()
    parts: list[Any] = [schema]
    while parts:
        part = parts.pop()
        if not isinstance(part, Mapping):
            continue
        props = part.get("properties")
        if isinstance(props, Mapping):
            names.update(str(k) for k in props)
        required = part.get("required")
        if isinstance(required, list):
            names.update(str(k) for k in required)
        parts.extend(part.get(key) for key in ("then", "else"))
        for key in ("allOf", "anyOf", "oneOf"):
            branches = part.get(key)
            if isinstance(branches, list):
                parts.extend(branches)
    return frozenset(names)


def refuse_stored(name: str, text: str) -> None:
    """Refuse a submission against a stored form file that deploy would refuse today, naming it.

    Raises: FormInvalid
    """
    refused = content_limits.stored_form_problem(name, text)
    if refused is not None:
        raise FormInvalid([FieldError("(form)", refused)])


def _reachable(schema_text: str, files: Mapping[str, str]) -> dict[str, str]:
    """Return the form files the schema reaches through `$ref` (a small cache key, not every file)."""
    if not files or "$ref" not in schema_text:
        return {}
    names = inert.referenced_forms("\0", {**files, "\0": schema_text})
    return {n: files[n] for n in names if n in files}
