"""Validate submitted task data against the task's JSON Schema on the server."""
from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, validators

from engine.errors import FieldError, FormInvalid

RESERVED_PREFIX = "_"


@lru_cache(maxsize=512)
def _validator(schema_text: str) -> Any:
    schema = json.loads(schema_text)
    cls = validators.validator_for(schema, default=Draft202012Validator)
    return cls(schema, format_checker=FormatChecker())


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


def validate(schema_text: str | None, data: Mapping[str, Any]) -> dict[str, Any]:
    """Return the submitted data as a dict if it satisfies the schema.

    Raises: FormInvalid (each error names its field; nothing is changed)
    """
    if not isinstance(data, Mapping):
        raise FormInvalid([FieldError("(form)", "表单数据必须是对象 (must be an object)")])
    reserved = [k for k in data if not isinstance(k, str) or k.startswith(RESERVED_PREFIX) or not k]
    if reserved:
        raise FormInvalid([FieldError(str(k), "保留字段名 (reserved field name)") for k in reserved])
    if schema_text is None:
        return dict(data)
    validator = _validator(schema_text)
    errors = sorted(validator.iter_errors(dict(data)), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        raise FormInvalid([FieldError(_field(e), _message(e, validator.schema)) for e in errors])
    return dict(data)
