"""Steps that walk nested values in C (comparison, hashing, sorting, text) are refused before they run when a
value holds too many, counted with sharing expanded: ``a = [a, a]`` forty times holds 2⁴⁰ values.

Each hostile case runs in a child process with a timeout: without the guard the step takes hours in one C
call that nothing in this process could interrupt, and the suite must fail rather than hang.
"""
from __future__ import annotations

import json
import subprocess  # nosec B404 # runs this interpreter on a fixed script
import sys
from typing import Any

import pytest

from engine.spiff.sandbox import BudgetExceeded, SandboxEnvironment

_LISTS = ("def f():\n    a = [0]\n    b = [0]\n    for i in range(40):\n        a = [a, a]\n        b = [b, b]\n"
          "    {}\nx = f()")
_TUPLES = _LISTS.replace("[0]", "(0,)").replace("[a, a]", "(a, a)").replace("[b, b]", "(b, b)")
_CHILD = """
import json, sys, time
from engine.spiff.sandbox import SandboxEnvironment
env = SandboxEnvironment(time_limit=2.0, fuel=1_000_000)
began = time.monotonic()
try:
    env.execute(sys.argv[1], {})
    outcome = "ran"
except Exception as err:
    outcome = type(err).__name__ + ": " + str(err)[:200] + " | " + str(err.__context__)[:200]
print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - began}))
"""


def run_alone(script: str) -> dict[str, Any]:
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, script], capture_output=True, text=True,  # nosec B603
                              timeout=20, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("the script held its process past 20 s: a C step walked the nested values unguarded")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(("build", "step"), [
    (_LISTS, "return a == b"),
    (_LISTS, "return a != b"),
    (_LISTS, "return a < b"),
    (_LISTS, "return 0 < 1 < a <= b"),
    (_LISTS, "return a in [b]"),
    (_LISTS, "return [a] not in [[b]]"),
    (_LISTS, "return a in (x for x in [b])"),
    (_LISTS, "return [a].count(b)"),
    (_LISTS, "return [a].index(b)"),
    (_LISTS, "return list.count([a], b)"),
    (_LISTS, "return sorted([a, b])"),
    (_LISTS, "return sorted([1, 2], key=lambda i: a if i == 1 else b)"),
    (_LISTS, "c = [a, b]\n    c.sort()"),
    (_LISTS, "return max(a, b)"),
    (_LISTS, "return min([a, b])"),
    (_LISTS, "return {1: a}.items() == {1: b}.items()"),
    (_LISTS, "return slice(a) == slice(b)"),
    (_TUPLES, "return hash(a)"),
    (_TUPLES, "return {a}"),
    (_TUPLES, "return {*[a]}"),
    (_TUPLES, "return {a: 1}"),
    (_TUPLES, "return {x for x in [a]}"),
    (_TUPLES, "return {x: 1 for x in [a]}"),
    (_TUPLES, "return a in {1, 2}"),
    (_TUPLES, "return {1: 2}[a]"),
    (_TUPLES, "d = {}\n    d[a] = 1"),
    (_TUPLES, "d = {1: 0}\n    d[a] += 1"),
    (_TUPLES, "return {}.get(a)"),
    (_TUPLES, "return set([a])"),
    (_TUPLES, "return dict.fromkeys([a])"),
    (_TUPLES, "s = set()\n    s.add(a)"),
    (_TUPLES, "return {1: 2}.keys() - [a]"),
    (_LISTS, "return repr(a)"),
    (_LISTS, "return str(a)"),
    (_LISTS, "return f'{a}'"),
    (_LISTS, "return f'{a!r:>5}'"),
    (_LISTS, "return '%s' % (a,)"),
    (_LISTS, "print(a)"),
])
def test_a_step_walking_shared_nested_values_is_refused_before_it_runs(build: str, step: str) -> None:
    result = run_alone(build.format(step))
    assert result["outcome"].startswith("BudgetExceeded"), result
    assert "嵌套的值过多" in result["outcome"]
    assert result["seconds"] < 1.0, result


@pytest.mark.parametrize("step", [
    "raise ValueError(a)",
    "try:\n        raise ValueError(a)\n    except ValueError:\n        raise KeyError(1)",
])
def test_an_error_holding_a_huge_value_is_shown_without_it(step: str) -> None:
    result = run_alone(_LISTS.format(step))
    assert "值过大" in result["outcome"], result
    assert result["seconds"] < 1.0, result


@pytest.fixture
def env() -> SandboxEnvironment:
    return SandboxEnvironment(time_limit=2.0, fuel=1_000_000)


@pytest.mark.parametrize(("expression", "expected"), [
    ("[1, [2, (3,)], {'k': {4}}] == [1, [2, (3,)], {'k': {4}}]", True),
    ("[1, 2] < [1, 3] <= [1, 3] != [0]", True),
    ("((1, 2) in {(1, 2): 'x'}) and ([1] in [[0], [1]]) and ('a' in 'cat') and (3 not in (1, 2))", True),
    ("{(1, 2): 'x'}[(1, 2)] + {(1, 2): 'y'}.get((1, 2)) + {'k': 'z'}['k']", "xyz"),
    ("[[2, 1], [1, 2]].index([1, 2]) + [(1,), (1,)].count((1,)) + [{'a': 1}].index({'a': 1})", 3),
    ("sorted([[2], [1], [3]]) + sorted([3, 1, 2], key=lambda i: -i, reverse=True)", [[1], [2], [3], 1, 2, 3]),
    ("[max([1, 5], [2]), min([3, 1, 2]), max(['aa', 'b'], key=len), min([], default=7), max(4, 9)]",
     [[2], 1, "aa", 7, 9]),
    ("[hash((1, 'a')) == hash((1, 'a')), len({(1, 2), (1, 2), frozenset({3})}), len(set(x for x in 'aab'))]",
     [True, 2, 2]),
    ("[isinstance({}, dict), isinstance(set(), set), isinstance(frozenset(), frozenset), isinstance('', str)]",
     [True, True, True, True]),
    ("[dict([('a', 1)], b=2), dict.fromkeys('ab', 0), set([1, 1]), frozenset((i for i in [2]))]",
     [{"a": 1, "b": 2}, {"a": 0, "b": 0}, {1}, frozenset({2})]),
    ("[repr([1, 'a']), str({'k': (1,)}), f'{[1]}|{(2,)!r:>6}', '%s-%r' % ([1], {'a': 2})]",
     ["[1, 'a']", "{'k': (1,)}", "[1]|  (2,)", "[1]-{'a': 2}"]),
    ("[{1: 2}.keys() - {1}, {1: 2}.keys() | [3], {1} & {1, 2}, {1, 2} ^ {2}, 7 - 2, 6 & 3, 4 | 1, 5 ^ 1]",
     [set(), {1, 3}, {1}, {1}, 5, 2, 5, 4]),
])
def test_ordinary_comparisons_keys_and_text_still_work(env: SandboxEnvironment, expression: str,
                                                       expected: Any) -> None:
    assert env.evaluate(expression, {}) == expected


def test_ordinary_scripts_sort_print_and_count_rows(env: SandboxEnvironment) -> None:
    data: dict[str, Any] = {"rows": [{"name": n, "score": s} for n, s in [("b", 2), ("a", 1), ("b", 2)]]}
    env.execute("seen = []\nfor r in rows:\n    if r not in seen:\n        seen.append(r)\n"
                "rows.sort(key=lambda r: r['score'])\nprint(seen)\nout = printed\n"
                "totals = {}\nfor r in rows:\n    totals[(r['name'], 1)] = totals.get((r['name'], 1), 0) + 1\n"
                "keys = sorted(k[0] for k in totals)\nn = rows.count(rows[0])\ndel totals", data)
    assert [r["name"] for r in data["seen"]] == ["b", "a"]
    assert [r["score"] for r in data["rows"]] == [1, 2, 2]
    assert data["out"].startswith("[{'name': 'b'")
    assert data["keys"] == ["a", "b"] and data["n"] == 1


def test_many_refs_to_one_long_string_are_refused_as_text(env: SandboxEnvironment) -> None:
    with pytest.raises(BudgetExceeded, match="嵌套的值过多"):
        env.evaluate("str(['x' * 100000] * 100)", {})
