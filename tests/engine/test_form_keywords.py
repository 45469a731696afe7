"""Form keywords a process owner writes check what anyone submits exactly, in time linear in the answer, and never
fail with anything but FormInvalid.

`multipleOf`: the web and the API read numbers as Decimal (never float). jsonschema divided them by the schema's
step: a step written with a decimal point (`0.01`, money to the fen) is a float, and Decimal / float raised TypeError,
so every submission of such a field answered 500; an answer of 1e100 against an integer step raised decimal's
DivisionImpossible, also 500. Float arithmetic was wrong besides: 0.3 was "not a multiple of" 0.1.

`uniqueItems`: jsonschema compares every item with every other when the items cannot be sorted (objects, numbers
and text mixed), in Python: quadratic in an answer the API lets hold 50,000 items.
"""
from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest

from engine.errors import FormInvalid
from engine.runtime import forms


def _form(step: Any, kind: str = "number") -> str:
    return json.dumps({"type": "object", "properties": {"amount": {"type": kind, "multipleOf": step}}})


@pytest.mark.parametrize(("step", "answer"), [
    (0.01, Decimal("1.5")), (0.01, Decimal("12345678.91")), (0.1, Decimal("0.3")), (0.1, 0.3), (7, Decimal("1e100") * 7),
    (7, Decimal("14")), (1e-5, Decimal("1e-5")), (0.5, 3), (3, 10**500 * 3),
])
def test_a_multiple_is_accepted(step: Any, answer: Any) -> None:
    assert forms.validate(_form(step), {"amount": answer}, {}) == {"amount": answer}


@pytest.mark.parametrize(("step", "answer"), [
    (0.01, Decimal("1.505")), (7, Decimal("1e100")), (7, Decimal("1e-1000")), (1e-5, Decimal("1e-1000")),
    (0.1, Decimal("0.35")), (3, 10**500 + 1), (1e-300, Decimal("1e-301")),
])
def test_a_number_that_is_not_a_multiple_is_refused_naming_the_field(step: Any, answer: Any) -> None:
    with pytest.raises(FormInvalid) as refused:
        forms.validate(_form(step), {"amount": answer}, {})
    [error] = refused.value.errors
    assert error.field == "amount" and "multiple of" in error.message


def test_an_integer_field_s_step_holds_too() -> None:
    with pytest.raises(FormInvalid):
        forms.validate(_form(5, "integer"), {"amount": 12}, {})
    assert forms.validate(_form(5, "integer"), {"amount": 15}, {}) == {"amount": 15}


def _list_form() -> str:
    return json.dumps({"type": "object", "properties": {"x": {"type": "array", "uniqueItems": True}}})


@pytest.mark.parametrize("items", [
    [{"row": i} for i in range(30_000)],  # objects cannot be sorted: jsonschema compared each with every other
    [i if i % 2 else str(i) for i in range(40_000)],  # nor can numbers and text mixed
])
def test_unique_items_are_checked_in_linear_time(items: list[object]) -> None:
    """2,000 objects took jsonschema 20 s, and the 50,000 an API body may hold some hours of a web process."""
    started = time.monotonic()
    assert forms.validate(_list_form(), {"x": items}, {}) == {"x": items}
    with pytest.raises(FormInvalid) as refused:
        forms.validate(_list_form(), {"x": [*items, items[-1]]}, {})
    assert time.monotonic() - started < 3
    [error] = refused.value.errors
    assert error.field == "x"


@pytest.mark.parametrize(("items", "unique"), [
    ([1, 1.0], False), ([1, True], True), ([0, False], True), ([Decimal("1.0"), 1], False), ([None, None], False),
    ([{"a": [1, 2]}, {"a": [1, 2]}], False), ([{"a": [1, 2]}, {"a": [2, 1]}], True), ([[1], [True]], True),
    ([{"a": 1, "b": 2}, {"b": 2, "a": 1}], False), (["1", 1], True), ([[], {}], True), ([{"a": None}, {}], True),
])
def test_unique_items_keeps_json_schema_s_equality(items: list[object], unique: bool) -> None:
    """As JSON Schema (and jsonschema) have it: 1 and 1.0 are one number, true is no number, key order counts for
    nothing, item order does."""
    if unique:
        assert forms.validate(_list_form(), {"x": items}, {}) == {"x": items}
    else:
        with pytest.raises(FormInvalid):
            forms.validate(_list_form(), {"x": items}, {})


def _field(**where: Any) -> str:
    return json.dumps({"type": "object", "properties": {"x": where}})


@pytest.mark.parametrize(("where", "answer"), [
    ({"enum": [0.1, 0.2, 0.5]}, Decimal("0.1")), ({"enum": [0.1, 0.2, 0.5]}, Decimal("0.50")),
    ({"enum": [1, 2]}, Decimal("1.0")), ({"enum": [1.0]}, Decimal("1")), ({"const": 0.3}, Decimal("0.3")),
    ({"const": 1e-7}, Decimal("1E-7")), ({"enum": [[0.1, {"a": 2.5}]]}, [Decimal("0.1"), {"a": Decimal("2.5")}]),
    ({"const": {"rate": 0.07}}, {"rate": Decimal("0.07")}), ({"enum": [0.1]}, 0.1), ({"enum": ["0.1", 0.1]}, "0.1"),
    ({"minimum": 0.1}, Decimal("0.1")), ({"maximum": 0.3}, Decimal("0.3")), ({"exclusiveMinimum": 0.1}, Decimal(
        "0.1000000000000000000001")), ({"exclusiveMaximum": 0.3}, Decimal("0.2999999999999999999999")),
    ({"minimum": 1}, True),  # a boolean is no number: minimum says nothing of it
])
def test_an_answer_s_number_equals_the_schema_s_number_as_written(where: dict[str, Any], answer: Any) -> None:
    """The API and the web read numbers as Decimal, a schema's 0.1 is a float: jsonschema found Decimal('0.1') no
    choice of [0.1] and below a minimum of 0.1. JSON Schema means the number as written."""
    assert forms.validate(_field(**where), {"x": answer}, {}) == {"x": answer}


@pytest.mark.parametrize(("where", "answer"), [
    ({"enum": [0.1, 0.2]}, Decimal("0.10000000000000001")), ({"enum": [1, 2]}, True), ({"enum": [0, 1]}, False),
    ({"const": 1}, True), ({"const": False}, 0), ({"enum": [True]}, Decimal("1")), ({"enum": [0.1]}, "0.1"),
    ({"const": [0.1, 0.2]}, [Decimal("0.2"), Decimal("0.1")]), ({"const": {"a": 1}}, {"a": True}),
    ({"minimum": 0.1}, Decimal("0.0999999999999999999")), ({"maximum": 0.3}, Decimal("0.3000000000000000001")),
    ({"exclusiveMinimum": 0.1}, Decimal("0.1")), ({"exclusiveMaximum": 0.3}, Decimal("0.3")),
    ({"enum": [1e308]}, Decimal("1e309")),
])
def test_a_different_answer_is_refused_naming_the_field(where: dict[str, Any], answer: Any) -> None:
    with pytest.raises(FormInvalid) as refused:
        forms.validate(_field(**where), {"x": answer}, {})
    [error] = refused.value.errors
    assert error.field == "x"


def test_unique_items_takes_numbers_as_written_too() -> None:
    with pytest.raises(FormInvalid):
        forms.validate(_list_form(), {"x": [Decimal("0.1"), 0.1]}, {})


@pytest.mark.parametrize(("draft", "where", "answer", "fits"), [
    ("http://json-schema.org/draft-04/schema#", {"minimum": 0.1, "exclusiveMinimum": True}, Decimal("0.1"), False),
    ("http://json-schema.org/draft-04/schema#", {"minimum": 0.1}, Decimal("0.1"), True),
    ("http://json-schema.org/draft-04/schema#", {"maximum": 0.3, "exclusiveMaximum": True}, Decimal("0.3"), False),
    ("http://json-schema.org/draft-04/schema#", {"enum": [0.1]}, Decimal("0.1"), True),
    ("https://json-schema.org/draft/2019-09/schema", {"const": 0.1}, Decimal("0.1"), True),
    ("http://json-schema.org/draft-07/schema#", {"exclusiveMaximum": 0.3}, Decimal("0.3"), False),
])
def test_each_draft_keeps_its_own_keywords(draft: str, where: dict[str, Any], answer: Any, fits: bool) -> None:
    form = json.dumps({"$schema": draft, "type": "object", "properties": {"x": where}})
    if fits:
        assert forms.validate(form, {"x": answer}, {}) == {"x": answer}
    else:
        with pytest.raises(FormInvalid):
            forms.validate(form, {"x": answer}, {})


def test_a_number_choice_shows_its_title_whatever_the_number_s_type() -> None:
    """The API's Decimal('0.1') is the schema's choice 0.1: shown as its title on the task page and the 审批单."""
    from engine.runtime import formtext
    schema = {"type": "object", "properties": {"rate": {"type": "number", "enum": [0.1, 0.2]},
                                               "flag": {"enum": [1, True]}}}
    ui = {"rate": {"ui:enumNames": ["低", "高"]}, "flag": {"ui:enumNames": ["一", "是"]}}
    shown = {f.key: f.text for f in formtext.describe(schema, ui, {"rate": Decimal("0.1"), "flag": True})}
    assert shown == {"rate": "低", "flag": "是"}
