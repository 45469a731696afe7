"""A form file holds at most MAX_PATTERNS patterns, MAX_PATTERN_CHARS characters together: refused at deploy (and by
the modeller's preview) naming the file and the keyword, so no form deploy accepts is refused, or slow, when submitted
for the size of its patterns. jsonschema joined a schema's `patternProperties` into one pattern for
`additionalProperties` (refused past 1,000 characters at submission although deploy accepted each) and tried every
pattern on every key for `unevaluatedProperties`."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import content_limits, deploy
from engine.errors import DeployInvalid, FormInvalid
from engine.org.actors import SYSTEM
from engine.runtime import forms
from engine.runtime.models import ProcessVersion

BAD = Path(__file__).resolve().parent.parent / "fixtures" / "bad"
WIDTH = content_limits.MAX_PATTERN_CHARS // content_limits.MAX_PATTERNS  # each pattern as long as the cap allows


def _pattern(i: int, width: int = WIDTH) -> str:
    """A pattern of `width` characters at most (at least width - 9) matching the keys `x{i:03d}_...`."""
    head, fill = f"^x{i:03d}_", "[0-9a-z]?"
    return head + fill * ((width - len(head)) // len(fill))


def _largest(count: int = content_limits.MAX_PATTERNS, width: int = WIDTH) -> dict[str, Any]:
    names = [_pattern(i, width) for i in range(count)]
    assert all(len(n) <= width for n in names) and len(set(names)) == count
    return {"type": "object", "properties": {"title": {"type": "string"}},
            "patternProperties": {n: {"type": "string", "maxLength": 50} for n in names},
            "additionalProperties": False, "allOf": [{"properties": {"title": {"maxLength": 10}}}],
            "unevaluatedProperties": False}


def test_the_largest_accepted_schema_is_accepted_and_submits_fine_and_fast() -> None:
    schema = _largest()
    assert sum(map(len, schema["patternProperties"])) <= content_limits.MAX_PATTERN_CHARS
    assert len("|".join(schema["patternProperties"])) > 1000  # jsonschema's joined pattern: refused at submission
    assert content_limits.form_problems(schema) == []
    text = json.dumps(schema)
    data = {f"x{i % content_limits.MAX_PATTERNS:03d}_{i}": "v" for i in range(20_000)}
    started = time.monotonic()
    assert forms.validate(text, {**data, "title": "t"}, {}) == {**data, "title": "t"}
    with pytest.raises(FormInvalid) as refused:
        forms.validate(text, {**data, "stray": "v"}, {})
    assert time.monotonic() - started < 3
    assert refused.value.errors and all(e.field == "(form)" for e in refused.value.errors)
    assert all("unexpected field" in e.message for e in refused.value.errors)
    with pytest.raises(FormInvalid) as refused:
        forms.validate(text, {**data, "x001_a": "v" * 51}, {})
    assert [e.field for e in refused.value.errors] == ["x001_a"]


@pytest.mark.parametrize(("count", "width", "said"), [
    (content_limits.MAX_PATTERNS + 1, 10, "more than 100 patterns"),
    (content_limits.MAX_PATTERNS // 2, WIDTH * 2 + 40, "characters together"),
])
def test_more_patterns_are_refused_naming_the_keyword(count: int, width: int, said: str) -> None:
    problems = content_limits.form_problems(_largest(count, width))
    assert len(problems) == 1, problems
    path, message = problems[0]
    assert path == "patternProperties" and said in message


def test_patterns_of_fields_count_together() -> None:
    fields = {f"f{i}": {"type": "string", "pattern": f"^{i}[a-z]+$"} for i in range(content_limits.MAX_PATTERNS + 1)}
    [(path, message)] = content_limits.form_problems({"type": "object", "properties": fields})
    assert path.endswith("/pattern") and "patterns" in message
    named = {"type": "object", "properties": {"pattern": {"type": "string"}, "patternProperties": {"type": "string"}}}
    assert content_limits.form_problems(named) == []  # fields so named are no patterns


def test_deploy_refuses_too_many_patterns_naming_the_file_and_keyword(session: Session) -> None:
    files = deploy.read_directory(BAD / "invalid_form")
    files["broken.schema.json"] = json.dumps(_largest(content_limits.MAX_PATTERNS + 1, 10), indent=1).encode()
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    mine = [p for p in err.value.problems if p.file == "broken.schema.json"]
    assert len(mine) == 1 and mine[0].message.startswith("patternProperties: ") and "patterns" in mine[0].message
    assert session.scalar(select(func.count()).select_from(ProcessVersion)) == 0


def test_a_stored_form_past_the_cap_is_refused_when_submitted_naming_the_file() -> None:
    text = json.dumps(_largest(content_limits.MAX_PATTERNS + 1, 10))
    with pytest.raises(FormInvalid) as refused:
        forms.validate(text, {"title": "t"}, {}, name="old.schema.json")
    [error] = refused.value.errors
    assert error.field == "(form)" and "old.schema.json" in error.message and "patternProperties" in error.message


SAME_AS_JSONSCHEMA = [
    {"patternProperties": {"^a": {"type": "string"}}, "unevaluatedProperties": False},
    {"allOf": [{"patternProperties": {"^a": {}}}, {"properties": {"b": {}}}], "unevaluatedProperties": False},
    {"if": {"required": ["kind"]}, "then": {"patternProperties": {"^x": {}}}, "else": {"properties": {"b": {}}},
     "properties": {"kind": {}}, "unevaluatedProperties": False},
    {"$defs": {"p": {"patternProperties": {"[0-9]$": {"type": "integer"}}}}, "$ref": "#/$defs/p",
     "unevaluatedProperties": {"type": "string"}},
    {"anyOf": [{"patternProperties": {"^a": {"type": "integer"}}}, {"properties": {"kind": {}}}],
     "dependentSchemas": {"kind": {"properties": {"b": {}}}}, "unevaluatedProperties": False},
    {"patternProperties": {"^a": {}, "b$": {}}, "additionalProperties": {"type": "integer"}},
    {"properties": {"kind": {}}, "patternProperties": {"^a": {}}, "additionalProperties": False},
]
ANSWERS = [{}, {"a1": "x"}, {"a1": 1, "b": 2}, {"kind": "k", "x1": 3}, {"kind": "k", "b": "s", "zz": 1},
           {"c9": 9, "d": "t"}, {"ab": 1, "zb": "s", "q": 4}, {"q": "s"}]


@pytest.mark.parametrize("schema", SAME_AS_JSONSCHEMA)
def test_additional_and_unevaluated_properties_keep_jsonschema_s_meaning(schema: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator
    for answer in ANSWERS:
        expected = Draft202012Validator(schema).is_valid(answer)
        try:
            forms.validate(json.dumps({"type": "object", **schema}), answer, {})
        except FormInvalid:
            assert not expected, (schema, answer)
        else:
            assert expected, (schema, answer)
