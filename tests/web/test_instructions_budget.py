"""Trust I hole 4: an instructions template that loops or allocates is stopped, never spins a web worker."""
from __future__ import annotations

import resource
import time

import pytest

from web.tasks import instructions

NESTED = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}done"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_hole4_instructions_nested_loops_without_output_stop_within_budget() -> None:
    began = time.monotonic()
    shown = instructions.render_text(NESTED, {})
    assert time.monotonic() - began < 2.0
    assert shown == NESTED  # refused: the source is shown as text


def test_hole4_instructions_loop_over_data_is_metered() -> None:
    template = "{% for a in xs %}{% for b in xs %}{% for c in xs %}{% endfor %}{% endfor %}{% endfor %}ok"
    began = time.monotonic()
    assert instructions.render_text(template, {"xs": list(range(1000))}) == template
    assert time.monotonic() - began < 2.0


@pytest.mark.parametrize("template", [
    "{{ 'x' * 400000000 }}",
    "{{ 'x'.ljust(400000000) }}",
    "{{ '%0*d' % (400000000, 1) }}",
    "{{ '%0400000000d' % 1 }}",
    "{{ '{:>400000000}'.format(1) }}",
    "{{ '{:>{w}}'.format(1, w=400000000) }}",
    "{{ 'x'|center(400000000) }}",
    "{{ '%0400000000d'|format(1) }}",
    "{{ ('x' * 1000)|replace('x', 'y' * 1001) }}",
    "{{ ('x\\n' * 1000)|indent(2000) }}",
    "{{ [0]|batch(400000000, 0)|list }}",
    "{{ 10 ** 100000000 }}",
    "{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(s='x') %}{% for i in range(30) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
    "{% macro f(s, n) %}{{ f(s ~ s, n + 1) if n < 30 else s|length }}{% endmacro %}{{ f('x', 0) }}",
])
def test_hole4_instructions_allocations_are_refused(template: str) -> None:
    before, began = _peak_mb(), time.monotonic()
    assert instructions.render_text(template, {}) == template
    assert time.monotonic() - began < 2.0
    assert _peak_mb() - before < 50


@pytest.mark.parametrize(("template", "shown"), [
    ("{{ name }}: {% for x in items %}{{ loop.index }}.{{ x }} {% endfor %}", "张三: 1.a 2.b "),
    ("{{ '%.1f'|format(3.14159) }} {{ '%05d' % 42 }} {{ '{:>4}'.format(7) }}", "3.1 00042    7"),
    ("{{ 'a' ~ 'b' }} {{ 'x' * 3 }} {{ 2 ** 10 }} {{ [1] + [2] }}", "ab xxx 1024 [1, 2]"),
    ("{{ 'ab'.ljust(4, '.') }}|{{ 'ab'|center(6) }}|{{ ['a', 'b']|join('-') }}", "ab..|  ab  |a-b"),
])
def test_ordinary_instructions_still_render(template: str, shown: str) -> None:
    assert instructions.render_text(template, {"name": "张三", "items": ["a", "b"]}) == shown
