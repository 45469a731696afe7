"""`ui:order` places each field once, in time linear in the order (web/formschema.py, engine/runtime/formtext.py).

A process owner's UI schema may hold up to 100,000 values (engine.content_limits). Before, every `*` placed all the
fields the order leaves out again: `"ui:order": ["*", "*", …]` under a form of 1,000 fields drew 90 million inputs on
each view of the task page, the modeller's preview, the 审批单 — a page that never came back and the memory with it;
and a name listed 90,000 times was searched for in lists, once per field (seconds a view).
"""
from __future__ import annotations

import time

from engine.runtime import formtext
from web.formschema import Form

FIELDS = 300
SCHEMA = {"type": "object", "properties": {f"p{i}": {"type": "string", "title": f"字段{i}"} for i in range(FIELDS)}}
DATA = {f"p{i}": "x" for i in range(FIELDS)}


def names(ui: dict[str, object]) -> list[str]:
    form = Form(SCHEMA, ui)
    return [name for name, _sub, _sub_ui in form.fields(form.root, form.ui)]


def test_every_star_after_the_first_places_nothing() -> None:
    ui: dict[str, object] = {"ui:order": ["p5", "*", "p7", *["*"] * 20_000]}
    started = time.monotonic()
    shown, described = names(ui), [f.key for f in formtext.describe(SCHEMA, ui, DATA)]
    assert time.monotonic() - started < 1
    expected = ["p5", *(f"p{i}" for i in range(FIELDS) if i not in (5, 7)), "p7"]
    assert shown == expected and described == expected


def test_a_name_listed_many_times_is_placed_once_in_linear_time() -> None:
    ui: dict[str, object] = {"ui:order": [*[f"p{i % 50}" for i in range(90_000)], "*"]}
    started = time.monotonic()
    shown, described = names(ui), [f.key for f in formtext.describe(SCHEMA, ui, DATA)]
    assert time.monotonic() - started < 1
    expected = [f"p{i}" for i in range(FIELDS)]
    assert shown == expected and described == expected


def test_the_order_still_works_as_before() -> None:
    ui: dict[str, object] = {"ui:order": ["p2", "nope", "p1", 7]}
    assert names(ui)[:3] == ["p2", "p1", "p0"] and len(names(ui)) == FIELDS
    assert names({"ui:order": "p2"})[:2] == ["p0", "p1"]
