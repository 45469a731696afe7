"""An instructions template cannot hold a web worker with one long C (or pure-Python codec) step."""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from web.tasks.instructions import render_text

CJK = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(8000))


@pytest.mark.parametrize(("template", "data"), [
    ("{{ s.encode('punycode')|length }}", {"s": CJK}),
    ("{{ ('a' * 1500).translate({97: 'b' * 1000000})|length }}", {}),
    ("{{ d|int % 10 }}", {"d": Decimal("1e600000")}),
    ("{{ d|round(method='ceil') }}", {"d": Decimal("1e600000")}),
    ("{{ '%d'|format(d) }}", {"d": Decimal("1e600000")}),
    ("{{ d.as_integer_ratio()[0] % 7 }}", {"d": Decimal("1e600000")}),
    ("{{ ('f' * 1000000)|int(base=16) % 7 }}", {}),
    ("{{ '{:f}'.format(d)|length }}", {"d": Decimal("1e30000000")}),
    ("{{ '{0.real:f}'.format(d)|length }}", {"d": Decimal("1e30000000")}),
    ("{{ '{x:.{p}%}'.format(x=d, p=2)|length }}", {"d": Decimal("1e30000000")}),
    ("{{ (0).to_bytes(10 ** 8, 'big')|length }}", {}),
    ("{{ lipsum(100000)|length }}", {}),
    ("{{ ([[0]] * 100000)|sum(start=[])|length }}", {}),
    ("{{ 2.5|round(100000000, 'ceil') }}", {}),
])
def test_an_instructions_template_step_longer_than_its_budget_is_refused(template: str, data: dict[str, Any]) -> None:
    began = time.monotonic()
    out = render_text(template, data)
    elapsed = time.monotonic() - began
    assert elapsed < 0.5, (elapsed, out[:40])
    assert out == template, out[:40]


@pytest.mark.parametrize(("template", "shown"), [
    ("{{ '{:.2f}'.format(d) }} {{ '{}|{:,}'.format(d, n) }} {{ d|round(1) }}", "3.14 3.14159|1,234 3.1"),
    ("{{ '41'|int + 1 }} {{ 'ff'|int(base=16) }} {{ d|int }} {{ 2.5|round(method='ceil') }}", "42 255 3 3.0"),
    ("{{ s.encode('utf-8')|length }} {{ 'abc'.translate({97: 'xy'}) }} {{ [1, 2]|sum }}", "6 xybc 3"),
])
def test_ordinary_instructions_with_numbers_still_render(template: str, shown: str) -> None:
    assert render_text(template, {"d": Decimal("3.14159"), "n": 1234, "s": "中文"}) == shown
