"""The JSON Schema keywords a form's answers are checked with where jsonschema's own are wrong or slow for them.

Numbers: the web and the API read answers as Decimal, a schema's `0.1` is a float. JSON Schema means a number as
written, so each is taken as the exact fraction it was written as (a float by its shortest repr: "a float taken as
written"); jsonschema found Decimal('0.1') no choice of `[0.1]`, below a `minimum` of 0.1, and raised on
`multipleOf`. Booleans are no numbers. Patterns: a key is searched once for all of a schema's `patternProperties`
(an RE2 set, engine/patterns.py), where jsonschema searched every key with every pattern, joined them into one pattern
for `additionalProperties`, and for `unevaluatedProperties` also looked each key up in a list.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

from jsonschema import ValidationError

from engine import patterns


def number(value: Any) -> Any:
    """A JSON number as written: a finite float (a schema's `0.01`) by its shortest repr, a Decimal exactly; an int
    and anything else (an infinity) as it is. Equal numbers hash alike (Fraction, int and float agree)."""
    if isinstance(value, float) and value - value == 0:
        return Fraction(repr(value))
    if isinstance(value, Decimal) and value.is_finite():
        return Fraction(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def same(value: Any) -> Any:
    """A hashable stand-in for a JSON value, equal for values JSON Schema calls equal: numbers by value as written (1
    and 1.0, Decimal('0.1') and the schema's 0.1), booleans apart from numbers, objects whatever their key order,
    arrays in order."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, Mapping):
        return ("o", frozenset((key, same(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return ("a", tuple(same(item) for item in value))
    return ("n", number(value))


def _multiple_of(validator: Any, step: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """`multipleOf`, exact: jsonschema's own division raised TypeError for a Decimal answer and a float step (a 500
    on every submission), decimal's DivisionImpossible for 1e100 by 7, and with floats found 0.3 no multiple of 0.1.
    Answers are bounded first (content_limits.data_problem)."""
    if not validator.is_type(instance, "number") or not validator.is_type(step, "number"):
        return
    try:
        fits = Fraction(number(instance)) % Fraction(number(step)) == 0
    except (ArithmeticError, ValueError, TypeError):  # a step of 0, an infinity: deploy refuses such a schema
        fits = False
    if not fits:
        yield ValidationError(f"{instance!r} is not a multiple of {step}")


def _enum(validator: Any, choices: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not isinstance(choices, list) or same(instance) not in {same(choice) for choice in choices}:
        yield ValidationError(f"{instance!r} is not one of {choices!r}")


def _const(validator: Any, const: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if same(instance) != same(const):
        yield ValidationError(f"{const!r} was expected")


def _bound(keyword: str, outside: Any, words: str, exclusive: str = "") -> Any:
    """`minimum` and the like, exact; drafts 3 and 4 said `"exclusiveMinimum": true` beside a `minimum`."""
    def check(validator: Any, bound: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if not _is_number(instance) or not _is_number(bound):
            return
        wrong, said = outside(number(instance), number(bound)), words
        if exclusive and schema.get(exclusive) is True:
            wrong, said = wrong or number(instance) == number(bound), f"{words.replace(' the', ' or equal to the')}"
        if wrong:
            yield ValidationError(f"{instance!r} is {said} {bound!r}")
    check.__name__ = keyword
    return check


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """`uniqueItems` in time linear in the answer: jsonschema compared each item with every other when they cannot be
    sorted (objects; numbers and text mixed), hours of a web process for the 50,000 items an API body may hold."""
    if unique and validator.is_type(instance, "array") and len({same(item) for item in instance}) < len(instance):
        yield ValidationError("has non-unique elements")


def _matched(by_pattern: Any, instance: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(pattern index, key) for each key of the answer and each `patternProperties` pattern it holds a match of, in
    jsonschema's order (patterns, then keys); each key searched once for all the patterns (an RE2 set).

    Raises: patterns.PatternRefused
    """
    if not isinstance(by_pattern, Mapping) or not by_pattern:
        return []
    matcher = patterns.pattern_set(tuple(by_pattern))
    keys = list(instance)
    hits = sorted((index, number) for number, key in enumerate(keys) for index in matcher.Match(key) or ())
    return [(index, keys[number]) for index, number in hits]


def _pattern_properties(validator: Any, by_pattern: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """`patternProperties`: 10 s for 100 patterns and 20,000 keys as jsonschema searched them."""
    if not validator.is_type(instance, "object"):
        return
    names = list(by_pattern) if isinstance(by_pattern, Mapping) else []
    for index, key in _matched(by_pattern, instance):
        yield from validator.descend(instance[key], by_pattern[names[index]], path=key, schema_path=names[index])


def _additional(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """The answer's keys neither `properties` nor `patternProperties` name (jsonschema joined the patterns into one,
    refused past 1,000 characters)."""
    properties = schema.get("properties")
    named = properties if isinstance(properties, Mapping) else {}
    matched = {key for _, key in _matched(schema.get("patternProperties"), instance)}
    return [key for key in instance if key not in named and key not in matched]


def _additional_properties(validator: Any, extra: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = _additional(instance, schema)
    if validator.is_type(extra, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra, path=key)
    elif not extra and extras:
        yield ValidationError(f"Additional properties are not allowed ({', '.join(map(repr, sorted(extras)))} "
                              f"{'was' if len(extras) == 1 else 'were'} unexpected)")


def _valid(validator: Any, instance: Any, schema: Any) -> bool:
    return next(validator.descend(instance, schema), None) is None


def _evaluated(validator: Any, instance: Mapping[str, Any], schema: Any) -> set[str]:
    """The answer's keys `schema` evaluates, as jsonschema's find_evaluated_property_keys_by_schema has them, as a set
    and with each key searched once for all of a schema's patterns."""
    if not isinstance(schema, Mapping):
        return set()
    found: set[str] = set()
    for keyword in ("$ref", "$dynamicRef"):
        if isinstance(schema.get(keyword), str):
            resolved = validator._resolver.lookup(schema[keyword])
            found |= _evaluated(validator.evolve(schema=resolved.contents, _resolver=resolved.resolver), instance,
                                resolved.contents)
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        found |= properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        if (sub := schema.get(keyword)) is not None:
            found |= {key for key, value in instance.items() if _valid(validator, value, sub)}
    found |= {key for _, key in _matched(schema.get("patternProperties"), instance)}
    dependent = schema.get("dependentSchemas")
    for key, sub in (dependent.items() if isinstance(dependent, Mapping) else ()):
        if key in instance:
            found |= _evaluated(validator, instance, sub)
    for keyword in ("allOf", "oneOf", "anyOf"):
        branches = schema.get(keyword)
        for sub in branches if isinstance(branches, list) else ():
            if _valid(validator, instance, sub):
                found |= _evaluated(validator, instance, sub)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            found |= _evaluated(validator, instance, schema["if"]) | _evaluated(validator, instance, schema.get("then"))
        else:
            found |= _evaluated(validator, instance, schema.get("else"))
    return found


def _unevaluated_properties(validator: Any, rest: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated(validator, instance, schema)
    wrong = [key for key in instance if key not in evaluated and not _valid(validator, instance[key], rest)]
    if wrong and rest is False:
        yield ValidationError(f"Unevaluated properties are not allowed ({', '.join(map(repr, sorted(wrong)))} "
                              f"{'was' if len(wrong) == 1 else 'were'} unexpected)")
    elif wrong:
        yield ValidationError(f"Unevaluated properties are not valid under the given schema "
                              f"({', '.join(map(repr, sorted(wrong)))} {'was' if len(wrong) == 1 else 'were'} "
                              "unevaluated and invalid)")


KEYWORDS: dict[str, Any] = {
    "multipleOf": _multiple_of, "enum": _enum, "const": _const, "uniqueItems": _unique_items,
    "minimum": _bound("minimum", lambda a, b: a < b, "less than the minimum of", "exclusiveMinimum"),
    "maximum": _bound("maximum", lambda a, b: a > b, "greater than the maximum of", "exclusiveMaximum"),
    "exclusiveMinimum": _bound("exclusiveMinimum", lambda a, b: a <= b, "less than or equal to the minimum of"),
    "exclusiveMaximum": _bound("exclusiveMaximum", lambda a, b: a >= b, "greater than or equal to the maximum of"),
    "patternProperties": _pattern_properties, "additionalProperties": _additional_properties,
    "unevaluatedProperties": _unevaluated_properties,
}



def for_draft(base: Any) -> dict[str, Any]:
    """The keywords above that the draft's validator has (jsonschema's own, or its draft-4 or draft-2019 variant)."""
    return {keyword: check for keyword, check in KEYWORDS.items()
            if getattr(base.VALIDATORS.get(keyword), "__qualname__", "").partition("_draft")[0] == keyword}


__all__ = ["KEYWORDS", "for_draft", "number", "same"]
