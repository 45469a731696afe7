"""Steps no tick interrupts (big-number conversions, codecs, translate, Decimal formatting, shared lists)
are refused before they run; ordinary uses of the same operations still work."""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from engine.spiff.sandbox import BudgetExceeded, SandboxEnvironment


@pytest.fixture
def env() -> SandboxEnvironment:
    return SandboxEnvironment(time_limit=2.0, fuel=1_000_000)


@pytest.mark.parametrize("expression", [
    # three-argument pow: time grows with bits(exp) × bits(mod)²
    "pow(7, 1 << 20000, (1 << 20000) - 1)",
    "pow(7, 5, 1 << 5000)",
    # a Decimal (or a base-16 string, or bytes) turned into an int past MAX_INT_BITS
    "int(Decimal('1e600000'))",
    "int(Decimal('-9e600000'))",
    "round(Decimal('1e600000'))",
    "Decimal('1e600000').as_integer_ratio()",
    "Decimal.as_integer_ratio(Decimal('1e-600000'))",
    "'%d' % Decimal('1e600000')",
    "'%(a)i' % {'a': Decimal('1e600000')}",
    "round(5, -10 ** 6)",
    "int('f' * 1000000, 16)",
    "int('0x' + 'f' * 999000, 0)",
    "int.from_bytes(b'x' * 1000000, 'big')",
    "(0).from_bytes(b'x' * 1000000, 'big')",
    "bool.from_bytes(b'x' * 1000000, 'big')",
    # one C step allocating past MAX_ITEMS
    "(0).to_bytes(10 ** 9, 'big')",
    "int.to_bytes(0, 10 ** 9, 'big')",
    "('a' * 1000).translate({97: 'b' * 1000000})",
    "('a' * 1000).translate(['b' * 1000000] * 128)",
    "str.translate('a' * 1000, {97: 'b' * 1000000})",
    "f\"{Decimal('1e30000000'):f}\"",
    "f\"{Decimal('1e-30000000'):f}\"",
    "f\"{Decimal('1e30000000'):%}\"",
    "f\"{Decimal('-1e30000000'):>20,.2F}\"",
    "('a' * 400000).encode('utf-32')",
    "(b'x' * 600000).hex()",
    "sum([[0] * 1000] * 1001, [])",
    "sum([(0,) * 1000] * 1001, ())",
    # pure-Python codecs (punycode is quadratic), growing error handlers
    "'a'.encode('punycode')",
    "str.encode('a', 'idna')",
    "b'a'.decode('punycode')",
    "str(b'a', 'punycode')",
    "str(b'a', encoding='raw_unicode_escape')",
    "'\\u4e00'.encode('ascii', 'namereplace')",
])
def test_a_step_no_tick_can_interrupt_is_refused_before_it_runs(env: SandboxEnvironment, expression: str) -> None:
    began = time.thread_time()  # CPU of this thread: what running the step would cost, whatever the machine's load
    with pytest.raises(BudgetExceeded):
        env.evaluate(expression, {})
    assert time.thread_time() - began < 0.5


@pytest.mark.parametrize("script", [
    "a = [0]\nfor i in range(22):\n    a = [a, a]",
    "row = [0] * 1000\nt = [row] * 1001",
    "a = [0] * 600000\nb = a",
    "d = {'k': [1]}\nfor i in range(21):\n    d = {'a': d, 'b': d}",
])
def test_data_that_expands_past_max_items_when_written_back_is_refused(env: SandboxEnvironment, script: str) -> None:
    data: dict[str, Any] = {}
    began = time.thread_time()  # CPU of this thread: what running the step would cost, whatever the machine's load
    with pytest.raises(BudgetExceeded):
        env.execute(script, data)
    assert time.thread_time() - began < 0.5
    assert data == {}


@pytest.mark.parametrize(("expression", "expected"), [
    ("isinstance(5, int) and isinstance('a', str) and not isinstance(5.0, int) and isinstance(True, (int, str))",
     True),
    ("issubclass(bool, int) and issubclass(str, str)", True),
    ("int('42') + int('ff', 16) + int(b'7') + int(3.9) + int(Decimal('12.5')) + int()", 319),
    ("int('0x10', 0) + int('11', base=2)", 19),
    ("int.from_bytes(b'\\x01\\x00', 'big') + (0).from_bytes(b'\\x02', 'little')", 258),
    ("(256).to_bytes(2, 'big')", b"\x01\x00"),
    ("[round(2.675, 2), round(Decimal('2.5')), round(1234, -2), round(Decimal('1.25'), 1)]",
     [2.67, 2, 1200, Decimal("1.2")]),
    ("pow(3, 200, 10 ** 9 + 7) == 3 ** 200 % (10 ** 9 + 7)", True),
    ("str(b'abc', 'utf-8') + str(5) + str() + str(b'\\xe4\\xb8\\xad', encoding='utf8')", "abc5中"),
    ("'中文'.encode('gbk').decode('GBK') + 'é'.encode('latin1').decode('iso-8859-1')", "中文é"),
    ("['abc'.encode(), 'ab'.encode('utf-16'), '\\u4e00'.encode('ascii', 'replace')]",
     [b"abc", "ab".encode("utf-16"), b"?"]),
    ("'abc'.translate({97: 'xy', 98: None}) + 'abc'.translate(str.maketrans('c', 'z'))", "xycabz"),
    ("f\"{Decimal('1234.5'):,.2f}|{Decimal('0.125'):.1%}|{Decimal('1e30000000')}|{Decimal('1e-3'):f}\"",
     "1,234.50|12.5%|1E+30000000|0.001"),
    ("Decimal('1.5').as_integer_ratio()", (3, 2)),
    ("'%d|%s' % (Decimal('42.7'), 'x') + '%s' % Decimal('1e600000')", "42|x1E+600000"),
    ("b'ab'.hex()", "6162"),
    ("sorted([3, 10, 2], key=str)", [10, 2, 3]),
    ("len(sum([[0]] * 100000, []))", 100000),  # joined in linear time: sum() itself copies 5×10⁹ items
    ("[sum([1, 2.5]), sum([[1], [2]], [0]), sum([(1,), ()], ()), sum([Decimal('0.1')] * 3)]",
     [3.5, [0, 1, 2], (1,), Decimal("0.3")]),
    ("str.upper('a') + str.ljust('b', 2, '.')", "Ab."),
])
def test_ordinary_conversions_still_work(env: SandboxEnvironment, expression: str, expected: Any) -> None:
    assert env.evaluate(expression, {}) == expected


def test_sum_of_mixed_sequences_is_refused_like_python_refuses_it(env: SandboxEnvironment) -> None:
    with pytest.raises(TypeError, match='can only concatenate list \\(not "tuple"\\) to list'):
        env.evaluate("sum([[1], (2,)], [])", {})


def test_a_list_held_twice_is_still_written_back_twice(env: SandboxEnvironment) -> None:
    data: dict[str, Any] = {}
    env.execute("row = [1, 2]\nt = [row, row]\nu = t", data)
    assert data == {"row": [1, 2], "t": [[1, 2], [1, 2]], "u": [[1, 2], [1, 2]]}
