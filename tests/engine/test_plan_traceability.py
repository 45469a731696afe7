"""Every target number of the plan's sections 二, 三 and 四 is in the seed data, traceable to its lines.

The seed data quotes the plan: each indicator has its `plan_line` and `plan_text` (the line's words,
verbatim) and, for a target the plan states more than once, its further quotes in `also_quoted`; each
industry its heading line, direction and target text. The checks in two layers:

- From the repository alone (always run): each quote carries its indicator's own target and unit, every
  target number in a quote is an indicator of that line, a restated target is one indicator, a range
  keeps both ends, an indicator counted over parts has as many parts as it counts, industry indicators
  quote their industry's lines, and the industries' categories, lines and scale targets agree.
- Against the plan's own text, which is not part of the repository: set JZFLOW_PLAN_FILE to the plan
  (a *.txt with sections 二、目标路径 … 四、重点工程 …) and every quote is checked against its line and every
  number from section 二 to the plan's end against the seed data: each target is exactly one indicator
  (parts of a count aside). Without the variable those tests are skipped with that reason; a
  JZFLOW_PLAN_FILE that names no such file is a failure.
"""
from __future__ import annotations

import functools
import os
import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from plan.data.seed import SEED_DIR

START, END = "二、目标路径", "四、重点工程"
NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# A number with its unit; a range like 3—5家 is one target.
UNITS = "%|万人|万吨|亿元|万元|个|家|条|列|项|人|吨|元|天"
TARGET = re.compile(rf"(?P<low>{NUMBER})(?:[—–~-](?P<high>{NUMBER}))?(?P<unit>{UNITS})")
YEARS = {"2025", "2027"}
# Numbers of the plan that are names, not targets: each with the reason.
NOT_TARGETS = {"“1+4+N”": "the name of the 一核四区N个配套项目 layout of 智能家电, not a quantity",
               "“1515”": "the name of an investment-promotion system (line 110), not a quantity",
               "“1355”": "the name of the system “1515” is embedded in (line 110), not a quantity",
               "1的招商工具箱": "the 1 of the toolbox's name 5个1 (five times one item): 5个 is the target",
               "即1部宣传片、1个招商阵地、1本实用手册、1个微信小程序、1组考察动线图":
                   "the five items of the 5个1 toolbox, counted by indicator investment_toolbox",
               "等4个项目库": "the four project libraries, which are libraries.yaml's entries (test below)",
               "“10+1”": "the name of the innovative industry system (lines 189–190), not a quantity"}
LIBRARIES_LINE = 123  # 建立重点项目、招商引资项目、政府投资项目、土地资源集约利用类项目等4个项目库
SUBSECTIONS = {"focus": "(一)聚焦突破类", "key": "(二)重点实施类", "layout": "(三)加快布局类"}
CATEGORY_COUNTS = {"focus": 5, "key": 11, "layout": 6}  # 22 industries (docs/decisions/0003)
NO_PLAN = ("JZFLOW_PLAN_FILE is not set: the plan's text is not part of the repository, so the seed data's "
           "quotes are checked against themselves only; set JZFLOW_PLAN_FILE to the plan's *.txt to check "
           "them line by line")


def plan_file() -> Path:
    """The plan's text file named by JZFLOW_PLAN_FILE; skip when it is not set, fail when it names no file."""
    configured = os.environ.get("JZFLOW_PLAN_FILE")
    if not configured:
        pytest.skip(NO_PLAN)
    path = Path(configured)
    if not path.is_file():
        pytest.fail(f"JZFLOW_PLAN_FILE={configured} is not a file")
    return path


@dataclass(frozen=True)
class Target:
    line: int  # 1-based
    text: str  # as written, e.g. "3—5家"
    value: Decimal  # the lower bound of a range
    unit: str
    high: Decimal | None = None  # the upper bound of a range


def quotes(e: dict[str, Any]) -> list[tuple[int, str]]:
    """Every (line, words) an indicator quotes: its own line first, then the restatements."""
    return [(e["plan_line"], e["plan_text"])] + [(q["plan_line"], q["plan_text"]) for q in e.get("also_quoted") or []]


def read_plan() -> tuple[list[str], range]:
    """The plan's lines and the 1-based line numbers from section 二 to its end (not a fixture: a test fails)."""
    return _read_plan(plan_file())


@functools.cache
def _read_plan(path: Path) -> tuple[list[str], range]:
    plan = path.read_text(encoding="utf-8").splitlines()
    starts = [i for i, t in enumerate(plan, 1) if t.strip() == START]
    ends = [i for i, t in enumerate(plan, 1) if t.strip() == END]
    assert len(starts) == 1 and len(ends) == 1 and starts[0] < ends[0], f"cannot find {START} … {END} in the plan"
    return plan, range(starts[0], len(plan) + 1)


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
        named = [(m.start(), m.end()) for phrase in NOT_TARGETS for m in re.finditer(re.escape(phrase), line)]
        matches = [m for m in TARGET.finditer(line) if not any(a <= m.start() < b for a, b in named)]
        covered = [m.span() for m in matches]
        found += [Target(n, m.group(), Decimal(m["low"]), m["unit"], Decimal(m["high"]) if m["high"] else None)
                  for m in matches]
        for m in re.finditer(NUMBER, line):
            inside = any(a <= m.start() < b for a, b in covered + named)
            if not (inside or m.group() in YEARS or _is_list_number(line, m.start())):
                unexplained.append(f"第{n}行 (line {n}): {m.group()!r} in {line!r}")
    return found, unexplained


# --- from the repository alone -----------------------------------------------------------------------

def _amounts_in_100m_yuan(text: str) -> list[Decimal]:
    """The 亿元/万元 amounts a text names, in 亿元 (the unit of `scale_target`)."""
    return [Decimal(m["low"]) / (10_000 if m["unit"] == "万元" else 1) for m in TARGET.finditer(text)
            if m["unit"] in ("亿元", "万元")]


def test_every_indicator_quote_carries_its_own_target_and_unit() -> None:
    wrong = [f"{e['code']}: plan_text {text!r} (line {line}) names no {e['target']} {e['unit']} (it names "
             f"{[m.group() for m in TARGET.finditer(text)]})"
             for e in _seed("indicators.yaml", "indicators") for line, text in quotes(e)
             if not any(Decimal(m["low"]) == Decimal(str(e["target"])) and m["unit"] == e["unit"]
                        for m in TARGET.finditer(text))]
    assert not wrong, "\n".join(wrong)


def test_every_target_in_a_quote_is_an_indicator_of_that_line() -> None:
    indicators = _seed("indicators.yaml", "indicators")
    have = {(line, Decimal(str(e["target"])), e["unit"]) for e in indicators for line, _ in quotes(e)}
    missing = sorted({f"第{line}行的 {m.group()} 不在种子数据中 (quoted by {e['code']}, no indicator of line "
                      f"{line} has target {m['low']} {m['unit']})"
                      for e in indicators for line, text in quotes(e) for m in TARGET.finditer(text)
                      if (line, Decimal(m["low"]), m["unit"]) not in have})
    assert not missing, "\n".join(missing)


def test_a_target_the_plan_restates_is_one_indicator() -> None:
    """26/91 (创投风投机构20家), 14/146 (研发投入强度2.4%), 27/147 (创新平台20家): one indicator each."""
    indicators = _seed("indicators.yaml", "indicators")
    restated = {(q["plan_line"], Decimal(str(e["target"])), e["unit"]): e["code"]
                for e in indicators for q in e.get("also_quoted") or []}
    assert len(restated) >= 3
    twice = [f"{e['code']} (line {e['plan_line']}) repeats {restated[key]}'s target {key[1]} {key[2]}: quote it there"
             for e in indicators if e.get("parent") is None
             and (key := (e["plan_line"], Decimal(str(e["target"])), e["unit"])) in restated]
    assert not twice, "\n".join(twice)
    assert next(e for e in indicators if e["code"] == "vc_institutions_new")["also_quoted"] == [
        {"plan_line": 91, "plan_text": "创投风投机构新增落户20家"}]


def test_a_range_keeps_both_ends() -> None:
    wrong = []
    for e in _seed("indicators.yaml", "indicators"):
        ranges = [m for m in TARGET.finditer(e["plan_text"]) if m["high"] and m["unit"] == e["unit"]
                  and Decimal(m["low"]) == Decimal(str(e["target"]))]
        high = None if e.get("target_high") is None else Decimal(str(e["target_high"]))
        if ranges and high != Decimal(ranges[0]["high"]):
            wrong.append(f"{e['code']}: {ranges[0].group()} but target_high {e.get('target_high')}")
        if not ranges and high is not None:
            wrong.append(f"{e['code']}: target_high {high} but {e['plan_text']!r} states no range")
    assert not wrong, "\n".join(wrong)
    aerospace = next(e for e in _seed("indicators.yaml", "indicators") if e["code"] == "aerospace_leading_firms")
    assert (aerospace["target"], aerospace["target_high"]) == (3, 5)


def test_a_count_over_parts_has_as_many_parts_as_it_counts() -> None:
    """5条产业链产值增长20%: the count of chains keeps its five chains linked, each quoting the same line."""
    indicators = {e["code"]: e for e in _seed("indicators.yaml", "indicators")}
    parts: dict[str, list[dict[str, Any]]] = {}
    for e in indicators.values():
        if e.get("parent"):
            parts.setdefault(e["parent"], []).append(e)
    assert "agri_chains_on_target" in parts
    for code, members in parts.items():
        whole = indicators[code]
        assert whole["kind"] == "count" and len(members) == whole["target"], \
            f"{code} counts {whole['target']} {whole['unit']} but has {len(members)} parts"
        assert all(m["plan_line"] == whole["plan_line"] and m["plan_text"] == whole["plan_text"]
                   and m.get("industry") == whole.get("industry") for m in members), f"{code}: parts quote elsewhere"
    assert {m["name"] for m in parts["agri_chains_on_target"]} == {
        "“红”产业链产值增速", "“黄”产业链产值增速", "“黑”产业链产值增速", "“白”产业链产值增速", "粮油产业链产值增速"}


def test_section_four_targets_are_indicators_of_the_works_group() -> None:
    works = [e for e in _seed("indicators.yaml", "indicators") if e["group"] == "works"]
    assert {e["plan_line"] for e in works} >= {111, 112, 118, 137, 138, 142, 145, 159, 160, 162, 165, 182}
    assert {e["code"]: e["target"] for e in works if e["plan_line"] == 182} == {"new_city_bases": 16,
                                                                                 "new_city_clusters": 40}


def test_indicator_codes_are_unique_and_lines_are_positive() -> None:
    indicators = _seed("indicators.yaml", "indicators")
    twice = [code for code, n in Counter(e["code"] for e in indicators).items() if n > 1]
    assert not twice, f"indicator codes used twice: {twice}"
    assert all(isinstance(e["plan_line"], int) and e["plan_line"] > 0 for e in indicators)
    assert len(indicators) >= 60  # sections 二 and 三 have 48 target numbers, section 四 another 16


def test_industry_indicators_quote_their_industrys_target_lines() -> None:
    industries = {x["code"]: x for x in _seed("industries.yaml", "industries")}
    wrong = []
    for e in _seed("indicators.yaml", "indicators"):
        if not e.get("industry"):
            continue
        industry = industries.get(e["industry"])
        if industry is None:
            wrong.append(f"{e['code']}: unknown industry {e['industry']!r}")
        elif not (industry["plan_line"] < e["plan_line"] <= industry["plan_line"] + 2
                  and any(e["plan_text"] in industry[key] for key in ("direction", "target_text"))):
            wrong.append(f"{e['code']}: line {e['plan_line']} {e['plan_text']!r} is not from the direction or "
                         f"target of {industry['code']} (heading on line {industry['plan_line']})")
    assert not wrong, "\n".join(wrong)


def test_industries_have_their_categories_in_the_plans_order() -> None:
    industries = _seed("industries.yaml", "industries")
    assert Counter(x["category"] for x in industries) == CATEGORY_COUNTS
    assert len({x["name"] for x in industries}) == len({x["code"] for x in industries}) == len(industries)
    lines = [x["plan_line"] for x in industries]
    assert lines == sorted(set(lines)), "industries are listed in the plan's order, one heading line each"
    order = list(CATEGORY_COUNTS)
    assert [order.index(x["category"]) for x in industries] == sorted(order.index(x["category"]) for x in industries)


def test_industry_scale_targets_match_their_text_and_indicators() -> None:
    indicators = _seed("indicators.yaml", "indicators")
    for industry in _seed("industries.yaml", "industries"):
        scale = [Decimal(str(e["target"])) / (10_000 if e["unit"] == "万元" else 1) for e in indicators
                 if e.get("industry") == industry["code"] and e["kind"] == "amount" and e["unit"] in ("亿元", "万元")
                 and "规模" in e["plan_text"]]
        expected = [] if industry["scale_target"] is None else [Decimal(str(industry["scale_target"]))]
        assert scale == expected, f"{industry['code']}: scale_target {industry['scale_target']} vs indicators {scale}"
        if expected:
            assert expected[0] in _amounts_in_100m_yuan(industry["target_text"]), \
                f"{industry['code']}: scale_target {expected[0]} 亿元 is not in {industry['target_text']!r}"


# --- against the plan's text (JZFLOW_PLAN_FILE) ---------------------------------------------------------

def test_a_plan_file_that_is_named_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JZFLOW_PLAN_FILE", str(tmp_path / "missing.txt"))
    with pytest.raises(pytest.fail.Exception, match="is not a file"):
        plan_file()
    monkeypatch.delenv("JZFLOW_PLAN_FILE")
    with pytest.raises(pytest.skip.Exception, match="JZFLOW_PLAN_FILE is not set"):
        plan_file()


def test_the_plan_file_is_found_and_has_its_sections() -> None:
    plan, section_lines = read_plan()
    assert plan[section_lines.start - 1].strip() == START and len(section_lines) > 50


def test_every_number_from_section_2_on_is_a_target_or_explained() -> None:
    plan, section_lines = read_plan()
    found, unexplained = targets(plan, section_lines)
    assert not unexplained, "numbers without a known unit (add the unit to TARGET or the phrase to NOT_TARGETS):\n" + \
        "\n".join(unexplained)
    assert len(found) >= 60  # sections 二 and 三 have 48 target numbers, section 四 another 16


def test_every_target_from_section_2_on_is_exactly_one_indicator() -> None:
    plan, section_lines = read_plan()
    indicators = [e for e in _seed("indicators.yaml", "indicators") if e.get("parent") is None]  # parts apart
    found, _ = targets(plan, section_lines)
    wrong = []
    for t in found:
        line = plan[t.line - 1]
        holders = [e["code"] for e in indicators for n, text in quotes(e)
                   if n == t.line and text in line and t.text in text
                   and Decimal(str(e["target"])) == t.value and e["unit"] == t.unit]
        if len(holders) != 1:
            wrong.append(f"第{t.line}行的 {t.text}: {len(holders)} 条指标 {holders} (plan line {t.line}: {t.text!r} must be "
                         f"exactly one indicator's target {t.value} {t.unit} quoting that line): {line}")
        elif t.high is not None and next(Decimal(str(e.get("target_high") or 0)) for e in indicators
                                         if e["code"] == holders[0]) != t.high:
            wrong.append(f"第{t.line}行的 {t.text}: {holders[0]} has no target_high {t.high}")
    assert not wrong, "\n".join(wrong)


def test_every_indicator_quotes_its_plan_lines() -> None:
    plan, section_lines = read_plan()
    wrong = [f"{e['code']}: plan_text {text!r} is not in line {line}"
             for e in _seed("indicators.yaml", "indicators") for line, text in quotes(e)
             if line not in section_lines or text not in plan[line - 1]]
    assert not wrong, "\n".join(wrong)


def test_the_plans_four_project_libraries_are_the_seeds() -> None:
    plan, _ = read_plan()
    names = [x["name"] for x in _seed("libraries.yaml", "libraries")]
    assert len(names) == 4 and all(name in plan[LIBRARIES_LINE - 1] for name in names), (names, plan[LIBRARIES_LINE - 1])


def test_industries_match_their_headings_categories_and_targets() -> None:
    plan, section_lines = read_plan()
    bounds = {c: next(i for i in section_lines if plan[i - 1].strip() == h) for c, h in SUBSECTIONS.items()}
    four = next(i for i in section_lines if plan[i - 1].strip() == END)
    ends = {"focus": bounds["key"], "key": bounds["layout"], "layout": four}
    industries = _seed("industries.yaml", "industries")
    for industry in industries:
        n, category = industry["plan_line"], industry["category"]
        assert plan[n - 1].strip() == industry["name"], f"{industry['code']}: line {n} is {plan[n - 1]!r}"
        assert bounds[category] < n < ends[category], f"{industry['code']} is not under {SUBSECTIONS[category]}"
        following = "\n".join(plan[n:n + 2])
        for key in ("direction", "target_text"):
            assert industry[key] in following, f"{industry['code']}: {key} is not in lines {n + 1}–{n + 2}"
    names = {x["name"] for x in industries}
    headings = [i for i in section_lines if plan[i - 1].strip() in names]
    assert len(headings) == len(industries) == 22  # 5 聚焦突破 + 11 重点实施 + 6 加快布局
