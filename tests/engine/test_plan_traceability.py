"""Every target number of the plan's sections 二 and 三 is in the seed data, traceable to its line.

The plan (Chinese) lives beside the repository in ../shared/seeds/*.txt, or where JZFLOW_PLAN_FILE says.
A missing plan is a failure, never a skip: then nothing would prove the seed data follows the plan.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from plan.data.seed import SEED_DIR

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / ".." / "shared" / "seeds"
START, END = "二、目标路径", "四、重点工程"
NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# A number with its unit; a range like 3—5家 is one target.
UNITS = "%|万人|万吨|亿元|万元|个|家|条|列|项|人|吨|元"
TARGET = re.compile(rf"(?P<low>{NUMBER})(?:[—–~-](?P<high>{NUMBER}))?(?P<unit>{UNITS})")
YEARS = {"2025", "2027"}
# Numbers of the plan that are names, not targets: each with the reason.
NOT_TARGETS = {"“1+4+N”": "the name of the 一核四区N个配套项目 layout of 智能家电, not a quantity"}
SUBSECTIONS = {"focus": "(一)聚焦突破类", "key": "(二)重点实施类", "layout": "(三)加快布局类"}


def plan_file() -> Path:
    """The plan's text file: JZFLOW_PLAN_FILE, else the one in ../shared/seeds with sections 二 to 四."""
    configured = os.environ.get("JZFLOW_PLAN_FILE")
    if configured:
        if not Path(configured).is_file():
            pytest.fail(f"JZFLOW_PLAN_FILE={configured} is not a file")
        return Path(configured)
    candidates = [p for p in sorted(SEEDS.glob("*.txt"))
                  if START in (text := p.read_text(encoding="utf-8")) and END in text]
    if not candidates:
        pytest.fail(f"the plan file is missing: no *.txt with {START!r} and {END!r} in {SEEDS.resolve()} "
                    f"(put the shared folder beside the repository, or set JZFLOW_PLAN_FILE)")
    return candidates[0]


@dataclass(frozen=True)
class Target:
    line: int  # 1-based
    text: str  # as written, e.g. "3—5家"
    value: Decimal  # the lower bound of a range
    unit: str


@functools.cache
def read_plan() -> tuple[list[str], range]:
    """The plan's lines and the 1-based line numbers of its sections 二 and 三 (not a fixture: a test fails)."""
    plan = plan_file().read_text(encoding="utf-8").splitlines()
    starts = [i for i, t in enumerate(plan, 1) if t.strip() == START]
    ends = [i for i, t in enumerate(plan, 1) if t.strip() == END]
    assert len(starts) == 1 and len(ends) == 1 and starts[0] < ends[0], f"cannot find {START} … {END} in the plan"
    return plan, range(starts[0], ends[0])


def _seed(name: str, key: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = yaml.safe_load((SEED_DIR / name).read_text(encoding="utf-8"))[key]
    return entries


def _is_list_number(line: str, start: int) -> bool:
    """1 / 2 / 3 alone on a line, or "1 提升…" at a line's start: the plan's list numbering."""
    return bool(re.fullmatch(r"\s*[0-9]+\s*", line) or (re.match(r"[0-9]+\s", line) and start == 0))


def targets(plan: list[str], lines: range) -> tuple[list[Target], list[str]]:
    """The target numbers with their units, and any other number that is not a year, numbering or a name."""
    found, unexplained = [], []
    for n in lines:
        line = plan[n - 1]
        covered = [m.span() for m in TARGET.finditer(line)]
        found += [Target(n, m.group(), Decimal(m["low"]), m["unit"]) for m in TARGET.finditer(line)]
        named = [(m.start(), m.end()) for phrase in NOT_TARGETS for m in re.finditer(re.escape(phrase), line)]
        for m in re.finditer(NUMBER, line):
            inside = any(a <= m.start() < b for a, b in covered + named)
            if not (inside or m.group() in YEARS or _is_list_number(line, m.start())):
                unexplained.append(f"第{n}行 (line {n}): {m.group()!r} in {line!r}")
    return found, unexplained


def test_the_plan_file_is_found_and_has_its_sections() -> None:
    plan, section_lines = read_plan()
    assert plan[section_lines.start - 1].strip() == START and len(section_lines) > 50


def test_every_number_of_sections_2_and_3_is_a_target_or_explained() -> None:
    plan, section_lines = read_plan()
    found, unexplained = targets(plan, section_lines)
    assert not unexplained, "numbers without a known unit (add the unit to TARGET or the phrase to NOT_TARGETS):\n" + \
        "\n".join(unexplained)
    assert len(found) >= 40  # the plan has 48 target numbers in these sections


def test_every_target_of_sections_2_and_3_is_in_the_seed_data() -> None:
    plan, section_lines = read_plan()
    indicators = _seed("indicators.yaml", "indicators")
    found, _ = targets(plan, section_lines)
    missing = []
    for t in found:
        line = plan[t.line - 1]
        if not any(e["plan_line"] == t.line and e["plan_text"] in line and t.text in e["plan_text"]
                   and Decimal(str(e["target"])) == t.value and e["unit"] == t.unit for e in indicators):
            missing.append(f"第{t.line}行的 {t.text} 不在种子数据中 (plan line {t.line}: {t.text!r} is no indicator's "
                           f"target {t.value} {t.unit} with plan_line {t.line} and a plan_text containing it): {line}")
    assert not missing, "\n".join(missing)


def test_every_indicator_quotes_its_plan_line() -> None:
    plan, section_lines = read_plan()
    wrong = [f"{e['code']}: plan_text {e['plan_text']!r} is not in line {e['plan_line']}"
             for e in _seed("indicators.yaml", "indicators")
             if e["plan_line"] not in section_lines or e["plan_text"] not in plan[e["plan_line"] - 1]]
    assert not wrong, "\n".join(wrong)


def test_industries_match_their_headings_categories_and_targets() -> None:
    plan, section_lines = read_plan()
    bounds = {c: next(i for i in section_lines if plan[i - 1].strip() == h) for c, h in SUBSECTIONS.items()}
    ends = {"focus": bounds["key"], "key": bounds["layout"], "layout": section_lines.stop}
    indicators, industries = _seed("indicators.yaml", "indicators"), _seed("industries.yaml", "industries")
    for industry in industries:
        n, category = industry["plan_line"], industry["category"]
        assert plan[n - 1].strip() == industry["name"], f"{industry['code']}: line {n} is {plan[n - 1]!r}"
        assert bounds[category] < n < ends[category], f"{industry['code']} is not under {SUBSECTIONS[category]}"
        following = "\n".join(plan[n:n + 2])
        for key in ("direction", "target_text"):
            assert industry[key] in following, f"{industry['code']}: {key} is not in lines {n + 1}–{n + 2}"
        scale = [Decimal(str(e["target"])) / (10_000 if e["unit"] == "万元" else 1) for e in indicators
                 if e.get("industry") == industry["code"] and e["kind"] == "amount" and e["unit"] in ("亿元", "万元")
                 and "规模" in e["plan_text"]]
        expected = [] if industry["scale_target"] is None else [Decimal(str(industry["scale_target"]))]
        assert scale == expected, f"{industry['code']}: scale_target {industry['scale_target']} vs indicators {scale}"
    names = {x["name"] for x in industries}
    headings = [i for i in section_lines if plan[i - 1].strip() in names]
    assert len(headings) == len(industries) == 22  # 5 聚焦突破 + 11 重点实施 + 6 加快布局
