"""A form's patterns are a process owner's content and the answers are anyone's: matching never backtracks.

Python's `re` backtracks: `^(a+)+$` against 34 a's and a "!" takes minutes, holding the process's GIL, so one
submitted answer stopped a web process. RE2 (engine/patterns.py) matches in time linear in the input.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import content_limits, deploy, patterns
from engine.errors import DeployInvalid, FormInvalid
from engine.org.actors import SYSTEM
from engine.runtime import forms
from engine.runtime.models import ProcessVersion

BAD = Path(__file__).resolve().parent.parent / "fixtures" / "bad"
CATASTROPHIC = ["^(a+)+$", "^(a|aa)+$", "^(a|a?)+$", "^(\\w+\\s?)+$", "^([a-zA-Z0-9])(([\\-.]|[_]+)?([a-zA-Z0-9]+))*$"]


def _schema(**where: object) -> str:
    return json.dumps({"type": "object", **where}, ensure_ascii=False)


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_a_catastrophic_pattern_answers_at_once_in_a_process_of_its_own(pattern: str) -> None:
    """In a child process with a deadline: in this one, a backtracking match would hold the GIL and the test."""
    code = ("import json, sys\nfrom engine.runtime import forms\nfrom engine.errors import FormInvalid\n"
            "schema, answer = json.loads(sys.argv[1]), sys.argv[2]\n"
            "try:\n    forms.validate(json.dumps(schema), {'x': answer}, {})\nexcept FormInvalid:\n    print('refused')\n"
            "else:\n    print('accepted')\n")
    schema = {"type": "object", "properties": {"x": {"type": "string", "pattern": pattern}}}
    answer = "a" * 34 + "!"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code, json.dumps(schema), answer], capture_output=True, text=True,
                          timeout=30, cwd=Path(__file__).resolve().parents[2], check=True)
    assert done.stdout.strip() == "refused"  # no pattern here admits the "!"
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("where", ["pattern", "patternProperties", "additionalProperties", "$defs", "items"])
def test_every_keyword_that_matches_input_matches_it_in_linear_time(where: str) -> None:
    evil = "^(a+)+$"
    schemas = {
        "pattern": _schema(properties={"x": {"type": "string", "pattern": evil}}),
        "patternProperties": _schema(patternProperties={evil: {"type": "string"}}),
        "additionalProperties": _schema(patternProperties={evil: {"type": "string"}}, additionalProperties=False),
        "$defs": _schema(properties={"x": {"$ref": "#/$defs/code"}}, **{"$defs": {"code": {"pattern": evil}}}),
        "items": _schema(properties={"x": {"type": "array", "items": {"type": "string", "pattern": evil}}}),
    }
    long = "a" * 200_000 + "!"
    answers = {"pattern": {"x": long}, "patternProperties": {long: 1}, "additionalProperties": {long: "v"},
               "$defs": {"x": long}, "items": {"x": [long, "aaa"]}}
    started = time.monotonic()
    try:
        forms.validate(schemas[where], answers[where], {})
    except FormInvalid:
        refused = True
    else:
        refused = False
    assert time.monotonic() - started < 2
    assert refused == (where != "patternProperties")  # no property name matches: nothing to check, so accepted


@pytest.mark.parametrize(("pattern", "answer", "matches"), [
    ("^1[3-9]\\d{9}$", "13805320000", True),
    ("^1[3-9]\\d{9}$", "1380532000", False),
    ("^1[3-9]\\d{9}$", "1380532000٣", False),  # an Arabic-Indic digit: \d is ASCII, as ECMA-262 has it
    ("^[\u4e00-\u9fa5]{2,4}$", "张伟", True),
    ("^[\u4e00-\u9fa5]{2,4}$", "Zhang", False),
    ("^[\\u4e00-\\u9fa5]+$", "胶州市", True),  # written with ECMA's escapes
    ("^[\\u4e00-\\u9fa5]+$", "Jiaozhou", False),
    ("\\\\u4e00", "\\u4e00", True),  # an escaped backslash and the letters u4e00: not a character escape
    ("^\\d{6}$", "266300", True),
    ("^[A-Z]{2}-\\d+$", "QD-1", True),
    ("(?i)^jz", "JZ-1", True),
    ("胶审", "胶审〔2025〕1号", True),
    ("^$", "", True),
])
def test_patterns_forms_use_match_as_before(pattern: str, answer: str, matches: bool) -> None:
    schema = _schema(properties={"x": {"type": "string", "pattern": pattern}})
    if matches:
        assert forms.validate(schema, {"x": answer}, {}) == {"x": answer}
    else:
        with pytest.raises(FormInvalid) as refused:
            forms.validate(schema, {"x": answer}, {})
        assert [e.field for e in refused.value.errors] == ["x"]


@pytest.mark.parametrize("pattern", ["^(?=.*\\d).{8,}$", "(a)\\1", "(?<!x)y", "a{1001}{1001}", "x" * 1001,
                                     "(?:.{0,100}){0,10}x"])
def test_a_pattern_that_cannot_be_matched_safely_is_refused_when_submitted_naming_it(pattern: str) -> None:
    """A form deployed before deploy checked its patterns: refused with a message, never run by `re`."""
    schema = _schema(properties={"x": {"type": "string", "pattern": pattern}})
    with pytest.raises(FormInvalid) as refused:
        forms.validate(schema, {"x": "abc"}, {})
    [error] = refused.value.errors
    assert error.field == "(form)" and pattern[:50] in error.message


# RE2 matches in time linear in the text, times the pattern's program: past a few thousand instructions its DFA no
# longer fits its memory and each search falls back to the slow engine — `(?:.{0,100}){0,10}x` (9,014 instructions)
# took 336 ms a search of a 4,000-character answer, so a form of 100 such fields held a web process half a minute
# per submission. At 5,000 (`^.{0,500}$` takes 4,502) the worst crafted here took 8 ms.
SLOW = ["(?:.{0,100}){0,10}x", "^(?:[^a]{1,100}){1,10}$", "[\\s\\S]{0,1000}$"]


@pytest.mark.parametrize("pattern", SLOW)
def test_a_pattern_whose_program_is_too_large_is_refused_naming_its_size(pattern: str) -> None:
    with pytest.raises(patterns.PatternRefused, match="5,000"):
        patterns.compiled(pattern)


@pytest.mark.parametrize("pattern", ["^[\\u4e00-\\u9fa5·]{2,50}$", "^\\d{17}[\\dXx]$", "^1[3-9]\\d{9}$",
                                     "^[0-9A-HJ-NPQRTUWXY]{2}\\d{6}[0-9A-HJ-NPQRTUWXY]{10}$",
                                     "^[\\w.+-]+@[\\w-]+(\\.[\\w-]+)+$", "^.{0,500}$"])
def test_the_patterns_forms_write_fit_the_program_limit(pattern: str) -> None:
    assert patterns.compiled(pattern).programsize <= patterns.MAX_PROGRAM


def test_a_form_of_many_patterns_answered_at_length_is_checked_quickly() -> None:
    """The worst a pattern under the limit does: a hundred fields of 4,000 characters each."""
    worst = "(?:.{0,50}){0,10}x"
    schema = _schema(properties={f"f{i}": {"type": "string", "pattern": worst} for i in range(100)})
    began = time.monotonic()
    with pytest.raises(FormInvalid):
        forms.validate(schema, {f"f{i}": ("b中" * 2000)[:4000] for i in range(100)}, {})
    assert time.monotonic() - began < 10  # 0.8 s here; 34 s with a pattern of 9,014 instructions


def test_deploy_refuses_a_form_whose_pattern_cannot_be_matched_safely(session: Session) -> None:
    files = deploy.read_directory(BAD / "invalid_form")
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "password": {"type": "string", "pattern": "^(?=.*[A-Z]).{8,}$"}},
              "patternProperties": {"^(x)\\1$": {"type": "string"}}}
    files["broken.schema.json"] = json.dumps(schema, ensure_ascii=False, indent=1).encode()
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    found = {p.message.split(":")[0]: p for p in err.value.problems if p.file == "broken.schema.json"}
    assert set(found) == {"properties/password/pattern", "patternProperties/^(x)\\1$"}, err.value.problems
    assert found["properties/password/pattern"].line == 9
    assert session.scalar(select(func.count()).select_from(ProcessVersion)) == 0


def test_refusals_are_not_written_to_the_process_s_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(patterns.PatternRefused):
        patterns.compiled("(?=x)quiet")
    assert capfd.readouterr().err == ""


# Python's `re` *compiles* some short patterns slowly: each case-insensitive class over the whole of Unicode costs it
# some 15 ms, so 600 of them (3,000 characters) held a process for 10 s, and a 5 MB form file or answer for hours.
SLOW_TO_COMPILE = "(?i)" + "[\u0100-\U0010ffff]" * 600


def test_an_answer_to_a_regex_field_is_checked_by_re2_not_compiled_by_re() -> None:
    """`"format": "regex"` made jsonschema `re.compile` the answer: anyone filling the form held the web process."""
    schema = _schema(properties={"x": {"type": "string", "format": "regex"}})
    re.purge()  # a pattern `re` compiled before is in its cache: nothing to measure
    started = time.monotonic()
    with pytest.raises(FormInvalid) as refused:
        forms.validate(schema, {"x": SLOW_TO_COMPILE}, {})
    assert time.monotonic() - started < 2
    [error] = refused.value.errors
    assert error.field == "x" and "regex" in error.message
    assert forms.validate(schema, {"x": "^1[3-9]\\d{9}$"}, {}) == {"x": "^1[3-9]\\d{9}$"}
    with pytest.raises(FormInvalid):
        forms.validate(schema, {"x": "(unclosed"}, {})


@pytest.mark.parametrize("where", ["pattern", "patternProperties"])
def test_deploy_checks_a_form_s_patterns_with_re2_alone(session: Session, where: str) -> None:
    """Deploy (and the modeller's preview) checked the schema against its meta-schema, whose `"format": "regex"`
    `re.compile`d every pattern again, the ones RE2 had just refused included."""
    files = deploy.read_directory(BAD / "invalid_form")
    keyword = ({"properties": {"x": {"type": "string", "pattern": SLOW_TO_COMPILE}}} if where == "pattern"
               else {"patternProperties": {SLOW_TO_COMPILE: {"type": "string"}}})
    files["broken.schema.json"] = json.dumps({"type": "object", **keyword}, ensure_ascii=False).encode()
    re.purge()
    started = time.monotonic()
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    assert time.monotonic() - started < 3
    mine = [p.message for p in err.value.problems if p.file == "broken.schema.json"]
    assert len(mine) == 1 and "pattern longer than 1000" in mine[0], mine
    assert session.scalar(select(func.count()).select_from(ProcessVersion)) == 0


def test_pattern_properties_are_matched_against_each_key_once_whatever_their_number() -> None:
    """jsonschema searched every key of an answer with every pattern: 100 patterns and the 20,000 keys an API body
    may hold took 10 s, 5,000 patterns (deploy had no cap on them then) minutes; RE2's set matches them all in one
    pass. Deploy now takes at most MAX_PATTERNS (test_form_pattern_limits.py)."""
    schema = _schema(patternProperties={f"^k{i}x$": {"type": "string"} for i in range(content_limits.MAX_PATTERNS)})
    answer: dict[str, object] = {f"z{i}": 1 for i in range(50_000)}
    started = time.monotonic()
    assert forms.validate(schema, answer, {}) == answer
    with pytest.raises(FormInvalid) as refused:
        forms.validate(schema, {**answer, "k7x": 1, "k99x": "text", "k42x": 2}, {})
    assert time.monotonic() - started < 3
    assert sorted(e.field for e in refused.value.errors) == ["k42x", "k7x"]


def test_pattern_properties_check_a_key_against_every_pattern_it_matches() -> None:
    schema = _schema(patternProperties={"^a": {"type": "string"}, "b$": {"maxLength": 2}, "^\\u4e00": {"type": "integer"}})
    assert forms.validate(schema, {"ab": "xy", "一": 3, "zz": None}, {})
    with pytest.raises(FormInvalid) as refused:
        forms.validate(schema, {"ab": "xyz", "a": 1, "一二": "x"}, {})
    assert sorted(e.field for e in refused.value.errors) == ["a", "ab", "一二"]
