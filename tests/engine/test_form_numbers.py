"""A form's `multipleOf` checks the numbers people submit exactly, and never fails with anything but FormInvalid.

The web and the API read numbers as Decimal (never float). jsonschema divides them by the schema's step: a step
written with a decimal point (`0.01`, money to the fen) is a float, and Decimal / float raised TypeError, so every
submission of such a field answered 500; an answer of 1e100 against an integer step raised decimal's
DivisionImpossible, also 500. Float arithmetic was wrong besides: 0.3 was "not a multiple of" 0.1.
"""
from __future__ import annotations

import json
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
