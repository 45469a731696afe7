"""Content from outside the script sandbox is bounded where it comes in: form files at deploy, data before the engine.

A process owner's form with 200,000 choices took 7 s to show each time a task page or the modeller's preview drew it;
a client's start data, form or message payload of any size or depth went into the workflow, where the save then
refused the state (incident `state_too_large`) after the step had run — or the JSON encoder hit its recursion
limit (a 500). Each is now refused where it arrives, naming the file and field, and nothing changes.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import cli, content_limits, deploy
from engine.errors import DeployInvalid, FormInvalid, InvalidInput
from engine.org.actors import SYSTEM
from engine.runtime import forms, message_rules
from engine.runtime.models import ProcessVersion

BAD = Path(__file__).resolve().parent.parent / "fixtures" / "bad"
TOO_MANY = content_limits.MAX_CHOICES + 1


def _field(**schema: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"name": {"type": "string"}, "kind": schema}}


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


# --- form files, at deploy -------------------------------------------------------------------------------------

FORMS = {
    "enum": ("broken.schema.json", _field(type="string", enum=[f"v{i}" for i in range(TOO_MANY)]),
             "properties/kind/enum"),
    "oneOf": ("broken.schema.json", _field(oneOf=[{"const": i, "title": f"第{i}项"} for i in range(TOO_MANY)]),
              "properties/kind/oneOf"),
    "enumNames": ("x.uischema.json", {"kind": {"ui:enumNames": [f"n{i}" for i in range(TOO_MANY)]}},
                  "kind/ui:enumNames"),
    "fields": ("broken.schema.json", {"type": "object", "properties": {
        f"f{i}": {"type": "string"} for i in range(content_limits.MAX_FIELDS + 1)}}, "properties"),
    "depth": ("broken.schema.json", {"type": "object", "properties": {"name": {"type": "string"},
                                                                       "deep": _deep(content_limits.MAX_FORM_DEPTH)}},
              "properties/deep/a/a/a"),
    "values": ("broken.schema.json", _field(type="string", examples=list(range(content_limits.MAX_FORM_VALUES))),
               "properties/kind/examples"),
}


@pytest.mark.parametrize("case", sorted(FORMS))
def test_a_form_past_the_limits_is_refused_at_deploy_naming_the_file_and_field(session: Session, case: str) -> None:
    name, doc, where = FORMS[case]
    files = deploy.read_directory(BAD / "invalid_form")
    files["broken.schema.json"] = json.dumps(_field(type="string"), ensure_ascii=False).encode()
    files[name] = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    started = time.monotonic()
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    assert time.monotonic() - started < 5
    found = [p for p in err.value.problems if p.file == name]
    assert found and found[0].message.startswith(where), err.value.problems
    assert session.scalar(select(func.count()).select_from(ProcessVersion)) == 0


def test_a_form_at_the_limits_deploys(session: Session) -> None:
    files = deploy.read_directory(BAD / "invalid_form")
    files["broken.schema.json"] = json.dumps(_field(type="string", enum=[f"v{i}" for i in range(
        content_limits.MAX_CHOICES)]), ensure_ascii=False).encode()
    [result] = deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    assert result.created


def test_a_self_referencing_all_of_is_refused_not_expanded(session: Session) -> None:
    """`allOf` of `$ref`s each naming the next twice walks 2ⁿ schemas wherever the form's fields are listed."""
    defs = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(40)}
    defs["d40"] = {"properties": {"x": {"type": "string"}}}
    files = deploy.read_directory(BAD / "invalid_form")
    files["broken.schema.json"] = json.dumps({"type": "object", "$defs": defs, "allOf": [{"$ref": "#/$defs/d0"}]},
                                             ensure_ascii=False).encode()
    started = time.monotonic()
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    assert time.monotonic() - started < 5
    assert any(p.file == "broken.schema.json" and "allOf" in p.message for p in err.value.problems), err.value.problems


def test_fields_that_contain_themselves_through_a_ref_are_refused(session: Session) -> None:
    """A form draws every field of an object, whatever the data: a field holding its own schema never ends.

    Such a form (a linked list, a tree) passed deploy; each task page, start page and submission then hit the
    recursion limit (a 500), the modeller's preview said "maximum recursion depth exceeded".
    """
    node = {"type": "object", "properties": {"name": {"type": "string"}, "next": {"$ref": "#/$defs/node"}}}
    rows = {"type": "object", "properties": {"rows": {"type": "array", "items": {"$ref": "#/$defs/row"}}}}
    for doc in ({"type": "object", "$defs": {"node": node}, "properties": {"head": {"$ref": "#/$defs/node"}}},
                {"type": "object", "$defs": {"row": rows}, "allOf": [{"$ref": "#/$defs/row"}]}):
        files = deploy.read_directory(BAD / "invalid_form")
        files["broken.schema.json"] = json.dumps(doc, ensure_ascii=False, indent=1).encode()
        with pytest.raises(DeployInvalid) as err:
            deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
        found = [p for p in err.value.problems if p.file == "broken.schema.json"]
        assert found and "$ref" in found[0].message and str(content_limits.MAX_FORM_DEPTH) in found[0].message, \
            err.value.problems
        session.rollback()


def _across_files() -> dict[str, dict[str, Any]]:
    """`allOf` through another form file: 2⁴⁰ schemas down a chain there, and two files naming each other."""
    defs = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(40)}
    defs["d40"] = {"properties": {"x": {"type": "string"}}}
    return {"fan": {"broken.schema.json": {"type": "object", "allOf": [{"$ref": "parts.schema.json#/$defs/d0"}]},
                    "parts.schema.json": {"$defs": defs}},
            "cycle": {"broken.schema.json": {"type": "object", "allOf": [{"$ref": "parts.schema.json"}]},
                      "parts.schema.json": {"allOf": [{"$ref": "broken.schema.json"}]}}}


@pytest.mark.parametrize("case", ["cycle", "fan"])
def test_branches_through_another_form_file_are_counted_at_deploy(session: Session, case: str) -> None:
    """Each file alone expands to little; jsonschema follows the `$ref` into the other file on every submission."""
    files = deploy.read_directory(BAD / "invalid_form")
    files.update({n: json.dumps(d).encode() for n, d in _across_files()[case].items()})
    started = time.monotonic()
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    assert time.monotonic() - started < 5
    assert any(p.file == "broken.schema.json" and "allOf" in p.message for p in err.value.problems), err.value.problems


@pytest.mark.parametrize("case", ["cycle", "fan"])
def test_a_stored_form_branching_through_another_file_refuses_submissions(case: str) -> None:
    """A version deployed before the count: a submission was a RecursionError (500) or ran for hours."""
    texts = {n: json.dumps(d) for n, d in _across_files()[case].items()}
    started = time.monotonic()
    with pytest.raises(FormInvalid) as refused:
        forms.validate(texts["broken.schema.json"], {"x": "1"}, texts, name="broken.schema.json")
    assert time.monotonic() - started < 5
    [error] = refused.value.errors
    assert error.field == "(form)" and "broken.schema.json" in error.message and "allOf" in error.message, error


def test_a_stored_file_the_caller_refused_already_is_not_checked_again_but_the_data_is(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """tasks.complete refuses the stored file before it reads it (choices from task data); validate then checks the
    data against it without checking the file a second time. Any other caller's file is checked as before."""
    schema = json.dumps({"type": "object", "properties": {"amount": {"type": "integer"}}})
    checked: list[str] = []
    monkeypatch.setattr(content_limits, "stored_form_problem", lambda name, text: checked.append(name))
    with pytest.raises(FormInvalid) as refused:
        forms.validate(schema, {"amount": "很多"}, {}, name="fill.schema.json", stored_checked=True)
    assert [e.field for e in refused.value.errors] == ["amount"] and checked == []
    assert forms.validate(schema, {"amount": 3}, {}, name="fill.schema.json") == {"amount": 3}
    assert checked == ["fill.schema.json"]


def test_a_reference_the_count_does_not_follow_is_refused_not_a_500() -> None:
    """`$dynamicRef` is not counted (its target depends on where the check came from): jsonschema recursed without
    end on it, the submission was a RecursionError."""
    schema = json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", "$dynamicAnchor": "x",
                         "type": "object", "allOf": [{"$dynamicRef": "#x"}]})
    with pytest.raises(FormInvalid) as refused:
        forms.validate(schema, {"x": "1"}, {}, name="broken.schema.json")
    [error] = refused.value.errors
    assert error.field == "(form)" and "broken.schema.json" in error.message, error


# --- workflow data, before the engine -----------------------------------------------------------------------------

DATA = {
    "deep": ({"name": "x", "visits": [_deep(content_limits.MAX_DATA_DEPTH)]}, "visits/0/a"),
    "values": ({"name": "x", "visits": list(range(content_limits.MAX_DATA_VALUES))}, "visits"),
    "size": ({"name": "x", "note": "字" * (content_limits.data_limit() + 1)}, "note"),
}


@pytest.mark.parametrize("case", sorted(DATA))
def test_oversized_form_data_is_refused_naming_the_field(case: str) -> None:
    data, where = DATA[case]
    with pytest.raises(FormInvalid) as refused:
        forms.validate(None, data)
    [error] = refused.value.errors
    assert error.field.startswith(where), error
    with pytest.raises(FormInvalid):
        forms.validate(json.dumps({"type": "object"}), data)


def test_data_within_the_limits_passes() -> None:
    data = {"visits": [{"n": i, "who": "企业"} for i in range(5_000)], "deep": _deep(content_limits.MAX_DATA_DEPTH - 2)}
    assert forms.validate(None, data) == data


@pytest.mark.parametrize("case", sorted(DATA))
def test_an_oversized_message_payload_is_refused_naming_the_field(case: str) -> None:
    data, _where = DATA[case]
    with pytest.raises(InvalidInput) as refused:
        message_rules.check_input("m", {}, {"deep": _deep(100_000)} if case == "deep" else data, None, None)
    assert refused.value.details["field"].startswith("data"), refused.value.details


def test_the_cli_refuses_deep_start_data_naming_the_option(db_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text("[" * 100_000 + "]" * 100_000)
    result = CliRunner().invoke(cli.main, ["start", "nothing", "--as", "admin", "--data", f"@{data}"],
                                env={"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(tmp_path)})
    assert result.exit_code != 0 and "--data" in result.output, result.output
    assert not isinstance(result.exception, RecursionError)


def test_a_number_too_large_to_write_is_refused_at_once_naming_the_field() -> None:
    """The API reads 1e999999999 as a Decimal; writing it as JSON (a correlation value, a payload) built a
    billion-digit integer, holding the web process. In a child process with a deadline: here it would hold the test."""
    code = ("from decimal import Decimal\nfrom engine.runtime import forms, message_rules\n"
            "from engine.errors import FormInvalid, InvalidInput\nhuge = Decimal('1e999999999')\n"
            "for corr, data in (({'k': huge}, {}), ({}, {'n': [huge]})):\n"
            "    try:\n        message_rules.check_input('m', corr, data, None, None)\n"
            "    except InvalidInput as exc:\n        print(exc.details['field'])\n"
            "try:\n    forms.validate(None, {'n': huge})\nexcept FormInvalid as exc:\n    print(exc.errors[0].field)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.stdout.split() == ["correlations/k", "data/n/0", "n"], done.stdout + done.stderr[-2000:]


def test_a_huge_number_an_instance_throws_is_written_as_text_not_as_a_billion_digits() -> None:
    """A script may hold Decimal('1e999999999') (cheap: a digit and an exponent) and throw it in a message's payload
    or correlation: queueing the message wrote it through `plain`, which made it an int — the run never ended."""
    code = ("from decimal import Decimal\nfrom engine.runtime import message_rules\n"
            "print(message_rules.plain(Decimal('1e999999999')), message_rules.canonical({'k': Decimal('-1e-999999')}))\n"
            "print(message_rules.plain(Decimal('12')), message_rules.plain(Decimal('1.5')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    words = done.stdout.split()
    assert words[0] == "1E+999999999" and "-1E-999999" in words[1] and words[2:] == ["12", "1.5"], done.stdout + done.stderr
