"""The seed files' schema: which YAML file holds which entries, each field's type and limits, and validation.

Files: org.yaml (roles; org units with their heads and city leaders), users.yaml, libraries.yaml,
industries.yaml, indicators.yaml. `validate` reads and checks them all without touching the database
and names every problem by file, line, entry and field: a missing or unreadable file, YAML syntax,
duplicate keys, unknown keys or fields, a value of the wrong type or size, a reference to an entry
that does not exist, a duplicate code or name, a loop of parent units.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from engine.org.models import OrgUnit, Role, User
from engine.orm import Base
from plan.indicators.models import Indicator, Industry
from plan.projects.models import ProjectLibrary

CODE = re.compile(r"[a-z][a-z0-9_]*\Z")
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


@dataclass(frozen=True)
class Field:
    """One field of a seed entry: its type, limits, and the model column it fills ("" = handled apart)."""

    kind: str  # text | code | username | choice | number | int | bool | ref | refs | quotes
    size: int = 0  # max length of text; digits of a number
    minimum: int = 0  # of an int
    required: bool = True
    default: Any = None
    options: tuple[str, ...] = ()
    places: int = 0  # decimal places of a number
    ref: str = ""  # the section a ref(s) value must name an entry of
    column: str | None = None  # None: same as the field name
    empty: bool = False  # text may be ""


@dataclass(frozen=True)
class Section:
    """A list of entries in one file, loaded into one model."""

    file: str
    key: str
    ident: str
    model: type[Base]
    object_type: str
    action: str
    fields: dict[str, Field]


SECTIONS = {s.key: s for s in (
    Section("org.yaml", "roles", "code", Role, "role", "org.role", {"code": Field("code", 80), "name": Field("text", 120)}),
    Section("org.yaml", "units", "code", OrgUnit, "org_unit", "org.unit", {
        "code": Field("code", 80), "name": Field("text", 120),
        "kind": Field("choice", options=("department", "town", "street", "zone")),
        "parent": Field("ref", 80, required=False, ref="units", column="parent_id"),
        "head": Field("ref", 80, required=False, ref="users", column=""),
        "city_leader": Field("ref", 80, required=False, ref="users", column="")}),
    Section("users.yaml", "users", "username", User, "app_user", "org.user", {
        "username": Field("username", 80), "name": Field("text", 120, column="display_name"),
        "units": Field("refs", required=False, ref="units", column=""),
        "roles": Field("refs", required=False, ref="roles", column=""),
        "email": Field("text", 200, required=False), "admin": Field("bool", default=False, column="is_admin"),
        "password": Field("text", 200, required=False, column="")}),
    Section("libraries.yaml", "libraries", "code", ProjectLibrary, "project_library", "project.library",
            {"code": Field("code", 40), "name": Field("text", 60)}),
    Section("industries.yaml", "industries", "code", Industry, "industry", "plan.industry", {
        "code": Field("code", 60), "name": Field("text", 60),
        "category": Field("choice", options=("focus", "key", "layout")),  # 聚焦突破 / 重点实施 / 加快布局
        "direction": Field("text", 2000, required=False, default="", empty=True),
        "target_text": Field("text", 2000, required=False, default="", empty=True),
        "scale_target": Field("number", 14, required=False, places=2), "plan_line": Field("int", minimum=1),
        "lead_unit": Field("ref", 80, required=False, ref="units", column="lead_unit_id")}),
    Section("indicators.yaml", "indicators", "code", Indicator, "indicator", "plan.indicator", {
        "code": Field("code", 80), "name": Field("text", 200),
        "group": Field("choice", options=("industry_development", "investment", "operations", "industry", "works")),
        "industry": Field("ref", 60, required=False, ref="industries", column="industry_id"),
        "kind": Field("choice", options=("growth_rate", "share", "count", "amount")), "unit": Field("text", 20),
        "target": Field("number", 16, places=4), "target_high": Field("number", 16, required=False, places=4),
        "comparison": Field("choice", default=">=", options=(">=", ">", "<=", "<", "==")),
        "cumulative": Field("bool"), "year": Field("int", minimum=2000, default=2025),
        "responsible_unit": Field("ref", 80, required=False, ref="units", column="responsible_unit_id"),
        "source": Field("text", 100, required=False, default="", empty=True),
        "plan_text": Field("text", 2000), "plan_line": Field("int", minimum=1),
        "also_quoted": Field("quotes", 2000, required=False),
        "parent": Field("ref", 80, required=False, ref="indicators", column="parent_id")}),
)}
FILE_KEYS = {"org.yaml": ("roles", "units"), "users.yaml": ("default_password", "users"),
             "libraries.yaml": ("libraries",), "industries.yaml": ("industries",), "indicators.yaml": ("indicators",)}


# --------------------------------------------------------------------------- reading and validating

@dataclass(frozen=True)
class SeedProblem:
    """One reason the seed data was refused, pinned to file, line, entry and field."""

    file: str
    line: int | None
    entry: str
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        what = " ".join(p for p in (self.entry, f"字段 (field) {self.field}" if self.field else "") if p)
        return f"{where} {what}: {self.message}" if what else f"{where}: {self.message}"


class _Map(dict[str, Any]):
    """A YAML mapping that remembers the line it starts on and the line of each key."""

    def __init__(self, line: int | None = None) -> None:
        super().__init__()
        self.line = line
        self.lines: dict[str, int] = {}

    def line_of(self, key: str) -> int | None:
        return self.lines.get(key, self.line)


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps line numbers and refuses duplicate keys (plain YAML keeps the last one silently)."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[_Map]:
    data = _Map(node.start_mark.line + 1)
    yield data
    for key_node, _ in node.value:
        key = str(loader.construct_object(key_node))
        if key in data.lines:
            raise yaml.constructor.ConstructorError(None, None, f"重复的键 (duplicate key) {key!r}", key_node.start_mark)
        data.lines[key] = key_node.start_mark.line + 1
    data.update({str(k): v for k, v in loader.construct_mapping(node).items()})


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def _read(path: Path, name: str, problems: list[SeedProblem]) -> _Map:
    def fail(message: str, line: int | None = None) -> _Map:
        problems.append(SeedProblem(name, line, "", "", message))
        return _Map()
    file = path / name
    if not file.is_file():
        return fail(f"文件不存在 (file missing): {file}")
    try:
        loader = _Loader(file.read_text(encoding="utf-8"))
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except UnicodeDecodeError:
        return fail("文件不是 UTF-8 编码 (file is not UTF-8)")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return fail(f"YAML 格式错误 (syntax error): {exc.problem or exc.context}", mark.line + 1 if mark else None)
    except yaml.YAMLError as exc:
        return fail(f"YAML 格式错误 (syntax error): {exc}")
    if not isinstance(data, _Map):
        return fail("顶层必须是 键: 值 (the top level must be a mapping)")
    for key in data:
        if key not in FILE_KEYS[name]:
            problems.append(SeedProblem(name, data.line_of(key), "", key, f"未知的键 (unknown key); 可用 (allowed): "
                                                                   f"{', '.join(FILE_KEYS[name])}"))
    return data


def _absent(key: str) -> str:
    return f"{SECTIONS[key].file} 的 {key} 中没有 (not among the {key} of {SECTIONS[key].file})"


def _check(f: Field, raw: Any, known: dict[str, set[Any]]) -> tuple[Any, str | None]:
    """Return the field's value and an error message, or None when the value is good."""
    if raw is None:
        if f.required and f.default is None:
            return None, "必填 (required)"
        return ([] if f.kind == "refs" else f.default), None
    if f.kind in ("text", "code", "username", "ref"):
        if not isinstance(raw, str):
            return None, f"必须是文字 (must be text), 不是 {raw!r}; 可加引号 (quote it)"
        if not raw.strip() and not f.empty:
            return None, "不能为空 (must not be empty)"
        if len(raw) > f.size:
            return None, f"不能超过{f.size}个字符 (at most {f.size} characters)"
        pattern = {"code": CODE, "username": USERNAME}.get(f.kind)
        if pattern and not pattern.match(raw):
            return None, f"格式不对 (bad format) {raw!r}: 应匹配 (must match) {pattern.pattern}"
        if f.kind == "ref" and raw not in known[f.ref]:
            return None, f"{_absent(f.ref)}: {raw!r}"
        return raw, None
    if f.kind == "refs":
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            return None, f"必须是代码列表 (must be a list of codes) 如 [fgj], 不是 {raw!r}"
        missing = [v for v in raw if v not in known[f.ref]]
        if missing:
            return None, f"{_absent(f.ref)}: {missing}"
        return list(dict.fromkeys(raw)), None
    if f.kind == "quotes":
        return _quotes(f, raw)
    if f.kind == "choice":
        return (raw, None) if raw in f.options else (None, f"必须是 (must be one of) {' | '.join(f.options)}: {raw!r}")
    if f.kind == "bool":
        return (raw, None) if isinstance(raw, bool) else (None, f"必须是 true 或 false (must be true or false): {raw!r}")
    if f.kind == "int":
        ok = isinstance(raw, int) and not isinstance(raw, bool) and raw >= f.minimum
        return (raw, None) if ok else (None, f"必须是不小于{f.minimum}的整数 (a whole number >= {f.minimum}), 不是 {raw!r}")
    try:  # number
        number = None if isinstance(raw, bool) else Decimal(str(raw).strip())
    except InvalidOperation:
        number = None
    exponent = number.as_tuple().exponent if number is not None else None
    if number is None or not isinstance(exponent, int):
        return None, f"必须是数字 (must be a number), 不是 {raw!r}"
    if -exponent > f.places or abs(number) >= Decimal(10) ** (f.size - f.places):
        return None, (f"最多{f.size - f.places}位整数、{f.places}位小数 "
                      f"(at most {f.size - f.places} digits before the point and {f.places} after)")
    return number, None


def _quotes(f: Field, raw: Any) -> tuple[Any, str | None]:
    """Further plan lines quoting the same target: a list of {plan_line: int, plan_text: text}."""
    shape = "必须是列表，每项为 {plan_line: 行号, plan_text: 原文} (a list of {plan_line, plan_text})"
    if not isinstance(raw, list) or not raw:
        return None, shape
    out = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"plan_line", "plan_text"}:
            return None, f"{shape}, 不是 {item!r}"
        line, quoted = item["plan_line"], item["plan_text"]
        if not isinstance(line, int) or isinstance(line, bool) or line < 1:
            return None, f"plan_line 必须是正整数 (a whole number >= 1), 不是 {line!r}"
        if not isinstance(quoted, str) or not quoted.strip() or len(quoted) > f.size:
            return None, f"plan_text 必须是不超过{f.size}个字符的文字 (text of at most {f.size} characters)"
        out.append({"plan_line": line, "plan_text": quoted})
    return out, None


def _indicator_problems(spec: dict[str, Any], parents: dict[Any, Any]) -> list[tuple[str, str]]:
    """Rules across an indicator's fields: rate units, a range's order, one level of parts."""
    errors = []
    if spec["kind"] in ("growth_rate", "share"):
        if spec["unit"] not in (None, "%"):
            errors.append(("unit", f"增速和占比的单位是 % (a {spec['kind']} is in %), 不是 {spec['unit']!r}"))
        if spec["cumulative"]:
            errors.append(("cumulative", "增速和占比不逐期累加，应为 false (a rate or share is never cumulative)"))
    if spec["target_high"] is not None and spec["target"] is not None and spec["target_high"] <= spec["target"]:
        errors.append(("target_high", f"区间上限必须大于下限 target {spec['target']} "
                                      f"(the upper end of a range must exceed its lower end)"))
    parent = spec["parent"]
    if parent is not None and (parent == spec["code"] or parents.get(parent) is not None):
        errors.append(("parent", f"上级指标 {parent!r} 不能是自身，也不能本身还有上级 "
                                 f"(a part's parent is neither itself nor a part of another indicator)"))
    return errors


@dataclass
class Seed:
    """The checked entries of every section (field values; references still as codes)."""

    entries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    default_password: str = ""


def validate(path: Path) -> tuple[Seed, list[SeedProblem]]:
    """Read and check the seed files of a directory; return their entries and every problem found."""
    problems: list[SeedProblem] = []
    docs = {name: _read(path, name, problems) for name in FILE_KEYS}
    lists: dict[str, list[tuple[str, _Map]]] = {}
    for key, section in SECTIONS.items():
        doc, lists[key] = docs[section.file], []
        items = doc.get(key)
        if not isinstance(items, list):
            if doc:  # an empty document is a missing or unreadable file, reported already
                problems.append(SeedProblem(section.file, doc.line_of(key), "", key,
                                            "必须是列表 (must be a list of entries)"))
            continue
        for index, data in enumerate(items, 1):
            if not isinstance(data, _Map):
                problems.append(SeedProblem(section.file, None, f"{key} #{index}", "",
                                            "每一项必须是 键: 值 (each entry must be a mapping)"))
                continue
            ident = data.get(section.ident)
            lists[key].append((f"{key} #{index}" + (f" ({ident})" if isinstance(ident, str) else ""), data))
    known = {key: {data.get(SECTIONS[key].ident) for _, data in items} for key, items in lists.items()}

    parents = {data.get("code"): data.get("parent") for _, data in lists["units"]}
    indicator_parents = {data.get("code"): data.get("parent") for _, data in lists["indicators"]}
    seed = Seed()
    for key, section in SECTIONS.items():
        seen: dict[str, set[Any]] = {section.ident: set(), "name": set()}
        seed.entries[key] = []
        for entry, data in lists[key]:
            errors = [(name, f"未知字段 (unknown field); 可用字段 (allowed): {', '.join(section.fields)}")
                      for name in data if name not in section.fields]
            spec: dict[str, Any] = {}
            for name, f in section.fields.items():
                spec[name], error = _check(f, data.get(name), known)
                if error:
                    errors.append((name, error))
            for name in seen if key != "users" else (section.ident,):  # two people may share a name
                if spec[name] is not None and spec[name] in seen[name]:
                    errors.append((name, f"重复 (duplicate): {spec[name]!r}"))
                seen[name].add(spec[name])
            if key == "indicators":
                errors += _indicator_problems(spec, indicator_parents)
            if key == "units" and spec["parent"] is not None and depth(parents, spec["code"]) is None:
                errors.append(("parent", "上级单位形成循环 (the parent chain loops)"))
            problems += [SeedProblem(section.file, data.line_of(name), entry, name, message) for name, message in errors]
            seed.entries[key].append(spec)
    password = docs["users.yaml"].get("default_password", "")
    if isinstance(password, str):
        seed.default_password = password
    else:
        problems.append(SeedProblem("users.yaml", docs["users.yaml"].line_of("default_password"), "", "default_password",
                                    "必须是文字 (must be text)"))
    heads = {u["code"]: u["head"] for u in seed.entries["units"] if u["head"]}
    for user in seed.entries["users"]:  # a unit's head is a member of it, listed there or not
        user["units"] = (user["units"] or []) + [c for c, h in heads.items()
                                                 if h == user["username"] and c not in (user["units"] or [])]
    return seed, problems


def depth(parents: dict[Any, Any], code: str) -> int | None:
    """How many ancestors a unit has; None when its parent chain loops."""
    seen, current = [code], parents.get(code)
    while current is not None and current in parents:
        if current in seen:
            return None
        seen.append(current)
        current = parents[current]
    return len(seen) - 1


__all__ = ["FILE_KEYS", "SECTIONS", "Field", "Section", "Seed", "SeedProblem", "depth", "validate"]
