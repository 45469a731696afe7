"""Trust I hole 4: operations that allocate in one C step are refused before they allocate."""
from __future__ import annotations

import resource
import time
from datetime import date
from typing import Any

import pytest

from engine.spiff.sandbox import BudgetExceeded, SandboxEnvironment

FAST = 2.0


@pytest.fixture
def env() -> SandboxEnvironment:
    return SandboxEnvironment(time_limit=2.0, fuel=1_000_000)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("expression", [
    "'x'.ljust(4 * 10 ** 8)",
    "'x'.rjust(4 * 10 ** 8)",
    "'x'.center(4 * 10 ** 8)",
    "'1'.zfill(4 * 10 ** 8)",
    "str.ljust('x', 4 * 10 ** 8)",
    "'%0*d' % (4 * 10 ** 8, 1)",
    "'%0400000000d' % 1",
    "'%(a)0400000000d' % {'a': 1}",
    "'%.400000000f' % 1.5",
    "f'{1:>400000000}'",
    "f'{1:0400000000}'",
    "f'{\"x\"!r:>400000000}'",
    "f'{1:>{w}}'",
    "'x\\t' .expandtabs(4 * 10 ** 8)",
    "('x' * 1000).replace('x', 'y' * 1001)",
    "''.join(['x' * 1000] * 1001)",
    "d.strftime('%0400000000Y')",
    "(10 ** 50000) * (10 ** 50000)",
])
def test_hole4_allocating_operations_are_refused_before_they_allocate(env: SandboxEnvironment,
                                                                     expression: str) -> None:
    before, started = _peak_mb(), time.perf_counter()
    with pytest.raises(BudgetExceeded):
        env.evaluate(expression, {"w": 4 * 10 ** 8, "d": date(2025, 1, 1)})
    assert time.perf_counter() - started < FAST
    assert _peak_mb() - before < 50  # nothing near the 400 MB the operation asked for


@pytest.mark.parametrize("script", [
    "s = 'x'\nfor i in range(28):\n    s += s",
    "s = 'x'\nfor i in range(28):\n    s = s + s",
    "s = ['x']\nfor i in range(28):\n    s += s",
    "s = ['x']\nfor i in range(28):\n    s.extend(s)",
    "s = 'x'\nfor i in range(28):\n    s = s * 2",
])
def test_hole4_doubling_in_a_loop_is_refused(env: SandboxEnvironment, script: str) -> None:
    data: dict[str, Any] = {}
    with pytest.raises(BudgetExceeded):
        env.execute(script, data)
    assert data == {}


@pytest.mark.parametrize(("expression", "expected"), [
    ("'ab'.ljust(5, '.')", "ab..."),
    ("'7'.zfill(3)", "007"),
    ("'%05.1f %s' % (3.14159, 'x')", "003.1 x"),
    ("'%d items of 20000000' % 3", "3 items of 20000000"),
    ("f'{n:>6}|{n:,}|{d:%Y-%m-%d}'", "  1234|1,234|2025-01-01"),
    ("f'{\"a\"!r:>5}'", "  'a'"),
    ("', '.join(str(i) for i in range(3))", "0, 1, 2"),
    ("str.join('-', ['a', 'b'])", "a-b"),
    ("'a-b'.replace('-', '+')", "a+b"),
    ("[1, 2] + [3]", [1, 2, 3]),
    ("'ab' * 3", "ababab"),
    ("2 ** 10 * 3 + 1", 3073),
    ("d.strftime('%Y年%m月')", "2025年01月"),
])
def test_ordinary_formatting_and_concatenation_still_work(env: SandboxEnvironment, expression: str,
                                                          expected: Any) -> None:
    assert env.evaluate(expression, {"n": 1234, "d": date(2025, 1, 1)}) == expected
