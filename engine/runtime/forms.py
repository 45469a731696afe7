"""Validate submitted task data against the task's JSON Schema on the server.

A schema's `$ref` resolves only inside the deployment's own form files (by plain name) or the schema
itself: the registry holds those files and its retrieve function refuses everything else, so no URL
a process owner wrote is ever fetched (jsonschema's default would fetch http:// and file:// refs).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, validators
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT202012

from engine.errors import FieldError, FormInvalid
from engine.spiff import inert

RESERVED_PREFIX = "_"


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
    cls = validators.validator_for(schema, default=Draft202012Validator)
    return cls(schema, format_checker=FormatChecker(), registry=registry(dict(files)))


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


def _message(error: Any, schema: Mapping[str, Any]) -> str:
    if error.validator == "required":
        return "必填 (required)"
    title = error.schema.get("title") if isinstance(error.schema, Mapping) else None
    prefix = f"{title}: " if title else ""
    return f"{prefix}{error.message}"


def validate(schema_text: str | None, data: Mapping[str, Any], files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the submitted data as a dict if it satisfies the schema (`files`: the version's forms, for `$ref`).

    Raises: FormInvalid (each error names its field; nothing is changed)
    """
    if not isinstance(data, Mapping):
        raise FormInvalid([FieldError("(form)", "表单数据必须是对象 (must be an object)")])
    reserved = [k for k in data if not isinstance(k, str) or k.startswith(RESERVED_PREFIX) or not k]
    if reserved:
        raise FormInvalid([FieldError(str(k), "保留字段名 (reserved field name)") for k in reserved])
    if schema_text is None:
        return dict(data)
    needed = _reachable(schema_text, files or {})
    validator = _validator(schema_text, tuple(sorted(needed.items())))
    try:
        errors = sorted(validator.iter_errors(dict(data)), key=lambda e: (list(e.absolute_path), e.message))
    except Unresolvable as exc:  # deploy refuses such a $ref; a version deployed before that check may have one
        raise FormInvalid([FieldError("(form)", f"表单定义引用了部署之外的内容 (unresolvable $ref): {exc}")]) from None
    if errors:
        raise FormInvalid([FieldError(_field(e), _message(e, validator.schema)) for e in errors])
    return dict(data)


def _reachable(schema_text: str, files: Mapping[str, str]) -> dict[str, str]:
    """Return the form files the schema reaches through `$ref` (a small cache key, not every file)."""
    if not files or "$ref" not in schema_text:
        return {}
    names = inert.referenced_forms("\0", {**files, "\0": schema_text})
    return {n: files[n] for n in names if n in files}
