"""Size limits for what reaches the engine outside scripts: a process owner's form files, a client's workflow data.

A form file (JSON Schema or UI schema) is checked at deploy and by the modeller's preview: the choices of one field
(`enum`, `oneOf`/`anyOf` of `const`, `ui:enumNames`), the fields of one form, its nesting, its values, its regular
expressions (how many, how long together: each answer key is matched against them), and how many
schemas its `allOf`/`anyOf`/`oneOf`/`$ref` branches expand to where a page lists the fields — each is work every task
page, preview and printed 审批单 repeats. Workflow data from a form, the API, the CLI or a message's or signal's
payload is checked where it arrives, before SpiffWorkflow sees it: its depth, its values, and its JSON size (half of
JZFLOW_MAX_STATE_KB, counted in characters). The state the save writes counts a Chinese character as six (an escape),
and several submissions add up: a submission that makes the state too large is refused by the save itself
(engine/runtime/oversize.py). Scripts have their own limits (engine/limits.py, engine/spiff/nesting.py).

A form file already stored (a version deployed before a limit existed, rows an import or a migration wrote around
deploy) is asked again wherever it is read (`stored_form_problem`): what deploy would refuse is shown as a message
naming the file, never walked.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from engine import config

MAX_CHOICES: Final = 2_000  # choices of one field: `enum`, `oneOf`/`anyOf` of `const`, `ui:enumNames`
MAX_FIELDS: Final = 1_000  # `properties` of one form file, nested objects and rows included
MAX_FORM_DEPTH: Final = 32  # JSON nesting of a form file
MAX_FORM_VALUES: Final = 100_000  # JSON values of one form file
MAX_EXPANSION: Final = 10_000  # schemas `allOf`/`anyOf`/`oneOf`/`then`/`else` and `$ref` reach when fields are listed
MAX_DATA_DEPTH: Final = 32  # nesting of workflow data from outside
MAX_DATA_VALUES: Final = 100_000  # JSON values of workflow data from outside
MAX_EXPONENT: Final = 1_000  # of a Decimal (the API reads 1e999999999 as one: as an integer, a billion digits)
MAX_TABLE_ROWS: Final = 500  # rows of one table a form takes (web.formrender) and a printed document shows
MAX_PRINTED_ROWS: Final = 3_000  # rows of a printed document's tables together (fields, opinions)
MAX_PATTERNS: Final = 100  # regular expressions of one form file: `pattern`s and `patternProperties` keys
MAX_PATTERN_CHARS: Final = 10_000  # their characters together (each at most patterns.MAX_PATTERN)
MAX_INSTRUCTIONS: Final = 20_000  # characters of a user task's instructions template, compiled on each view of its page
_BRANCHES: Final = ("allOf", "anyOf", "oneOf")
_SCALAR: Final = 24  # characters counted for a number, a date or another value that is not text


def data_limit() -> int:
    """Return the most characters of JSON a piece of workflow data from outside may take (half the state limit)."""
    return config.load().max_state_kb * 1024 // 2


def _path(path: tuple[Any, ...]) -> str:
    return "/".join(str(p) for p in path)


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() * 30_103 // 100_000 + 2  # decimal digits, without building the text
    return _SCALAR


def data_problem(data: Any) -> tuple[str, str] | None:
    """Return (field, message) where workflow data passes a limit, or None; walks at most MAX_DATA_VALUES values.

    The field is the path of the value that is nested too deep, or the top-level field holding the value that
    passed the count or the size. Every completion asks: a walk that keeps no paths answers first, and only data
    that passes a limit is walked again to name the field.
    """
    limit = data_limit()
    if _within(data, limit):
        return None
    return _named(data, limit)


def _within(data: Any, limit: int) -> bool:
    """Tell whether data stays within every limit (the same counts as _named, without paths)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    values = chars = 0
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DATA_DEPTH:
            return False
        kind = type(value)
        if kind is str:
            chars += len(value) + 2
        elif kind is dict or (kind is not list and kind is not tuple and isinstance(value, Mapping)):
            values += len(value)
            chars += 2
            for key, item in value.items():
                chars += len(key) + 2 if type(key) is str else _size(str(key))
                stack.append((item, depth + 1))
        elif kind is list or kind is tuple or isinstance(value, (list, tuple)):
            values += len(value)
            chars += 2 + len(value)
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, Decimal):
            if not value.is_finite() or abs(value.adjusted()) > MAX_EXPONENT:
                return False
            chars += _SCALAR
        else:
            chars += _size(value)
        if values > MAX_DATA_VALUES or chars > limit:
            return False
    return True


def _named(data: Any, limit: int) -> tuple[str, str] | None:
    """The walk that names the field (see data_problem); None if, after all, nothing passes a limit."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    values = chars = 0
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DATA_DEPTH:
            return _path(path), f"数据嵌套过深，最多 {MAX_DATA_DEPTH} 层 (nested more than {MAX_DATA_DEPTH} levels)"
        children: Any = None
        if isinstance(value, Mapping):
            children = value.items()
        elif isinstance(value, (list, tuple)):
            children = enumerate(value)
        elif isinstance(value, Decimal) and (not value.is_finite() or abs(value.adjusted()) > MAX_EXPONENT):
            return _path(path), f"数值超出范围，指数最多 {MAX_EXPONENT} (a number past 1e±{MAX_EXPONENT})"
        else:
            chars += _size(value)
        if children is not None:
            values += len(value)
            chars += 2
        where = _path(path[:1]) or "(form)"
        if values > MAX_DATA_VALUES:
            return where, f"数据项过多，最多 {MAX_DATA_VALUES:,} 项 (more than {MAX_DATA_VALUES:,} values)"
        if chars > limit:
            return where, f"数据过大，最多 {limit // 1024} KB (more than {limit // 1024} KB of data)"
        for key, item in children or ():
            chars += _size(str(key)) if isinstance(value, Mapping) else 1
            stack.append((item, (*path, key)))
    return None


def _choices(node: Mapping[str, Any]) -> list[str]:
    found = [k for k in ("enum", "ui:enumNames") if isinstance(node.get(k), list) and len(node[k]) > MAX_CHOICES]
    return found + [k for k in _BRANCHES if isinstance(node.get(k), list) and len(node[k]) > MAX_CHOICES]


def _patterns(node: Mapping[str, Any], path: tuple[Any, ...], counted: list[int]) -> tuple[str, str] | None:
    """Count the node's patterns into `counted` (a schema's `pattern`, its `patternProperties`' keys; not a field so
    named): each is matched by RE2 against answers, every key of an answer against every `patternProperties`."""
    if path[-1:] == ("properties",):
        return None
    for keyword in ("pattern", "patternProperties"):
        found = node.get(keyword)
        written = [found] if keyword == "pattern" and isinstance(found, str) else []
        written += [str(k) for k in found] if keyword == "patternProperties" and isinstance(found, Mapping) else []
        counted[0] += len(written)
        counted[1] += sum(len(p) for p in written)
        if counted[0] > MAX_PATTERNS:
            return _path((*path, keyword)), (f"正则表达式过多，每个表单最多 {MAX_PATTERNS:,} 个 (more than "
                                             f"{MAX_PATTERNS:,} patterns)")
        if counted[1] > MAX_PATTERN_CHARS:
            return _path((*path, keyword)), (f"正则表达式总长过大，每个表单最多 {MAX_PATTERN_CHARS:,} 个字符 (patterns "
                                             f"longer than {MAX_PATTERN_CHARS:,} characters together)")
    return None


def form_problems(doc: Any, others: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """Return (path, message) for each place a form file passes a limit (paths as `properties/kind/enum`).

    `others`: the other form files of its deployment by name (parsed), which its `$ref`s may reach.
    """
    problems: list[tuple[str, str]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    values = fields = 0
    counted = [0, 0]  # patterns, their characters
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_FORM_DEPTH:
            return [*problems, (_path(path), f"表单定义嵌套过深，最多 {MAX_FORM_DEPTH} 层 (nested more than "
                                             f"{MAX_FORM_DEPTH} levels)")]
        if not isinstance(value, (Mapping, list)):
            continue
        values += len(value)  # counted before they are walked: a list of a million is refused, not visited
        if values > MAX_FORM_VALUES:
            return [*problems, (_path(path) or "(root)", f"表单定义过大，最多 {MAX_FORM_VALUES:,} 个值 (more than "
                                                         f"{MAX_FORM_VALUES:,} JSON values)")]
        if isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(value))))
            continue
        choices = _choices(value)
        for key in choices:
            problems.append((_path((*path, key)), f"选项过多：{len(value[key]):,} 个，每个字段最多 "
                             f"{MAX_CHOICES:,} 个 ({len(value[key]):,} choices, at most {MAX_CHOICES:,})"))
        too_many = _patterns(value, path, counted)
        if too_many is not None:
            return [*problems, too_many]
        props = value.get("properties")
        if path[-1:] != ("properties",) and isinstance(props, Mapping):
            fields += len(props)
            if fields > MAX_FIELDS:
                return [*problems, (_path((*path, "properties")), f"字段过多，每个表单最多 {MAX_FIELDS:,} 个 "
                                                                  f"(more than {MAX_FIELDS:,} fields)")]
        stack.extend((v, (*path, k)) for k, v in reversed(list(value.items())) if k not in choices)
    if isinstance(doc, Mapping) and not problems:
        problems += _expansion_problems(doc, others or {})
    return problems


def _pointed(doc: Mapping[str, Any], pointer: str, *, whole: bool) -> Any:
    """Return what a `$ref`'s JSON pointer names in its file (`whole`: another file, where no pointer is all of it)."""
    target: Any = doc
    if whole and not pointer.strip("/"):
        return target
    for part in pointer.strip("/").split("/"):  # "#" alone names nothing, as web.formschema reads it
        target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, Mapping) else None
    return target


def _expansion_problems(root: Mapping[str, Any], others: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Count the schemas a listing of the form's fields or a check of one value visits through branches and `$ref`s.

    Branches (`allOf`/`anyOf`/`oneOf`, `if`/`then`/`else`, `not`, `dependentSchemas`) are followed whatever their
    depth: a branch naming itself never ends there either, and the server's check (jsonschema) follows every one
    of them for each value, `$ref`s into the other form files of `others` included. Fields and rows nest at most
    MAX_FORM_DEPTH deep: a page (web.formschema, local `$ref`s only) draws every field of an object and an empty row
    of each table, whatever the data, so a field that holds its own schema (a linked list, a tree) never ends.
    """
    stack: list[tuple[Any, int, Mapping[str, Any], bool]] = [(root, 0, root, True)]  # node, depth, its file, drawn
    seen = choices = 0
    while stack:
        node, depth, doc, drawn = stack.pop()
        hops = 0
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and hops < 20:
            file, _, pointer = node["$ref"].partition("#")
            if file:  # another form file (web.formschema does not follow it: only a check of the values does)
                found = others.get(file.removeprefix("./"))
                doc, drawn = (found if isinstance(found, Mapping) else {}), False
            node, hops = _pointed(doc, pointer, whole=bool(file)), hops + 1
        if not isinstance(node, Mapping):
            continue
        seen += 1
        if seen > MAX_EXPANSION:
            return [("allOf", f"allOf/anyOf/oneOf 与 $ref 展开后的结构过多，最多 {MAX_EXPANSION:,} 个 (branches and "
                              f"$refs expand to more than {MAX_EXPANSION:,} schemas)")]
        # each field drawn or checked through a `$ref` draws its list again: 2,000 choices named by 1,000 fields were
        # two million <option>s a view (30 s for 400 fields); counted as the form written out would hold them
        choices += sum(len(listed) for key in ("enum", "oneOf", "anyOf") if isinstance(listed := node.get(key), list))
        if choices > MAX_FORM_VALUES:
            return [("enum", f"选项经 $ref 展开后过多，最多 {MAX_FORM_VALUES:,} 个 (choices drawn through $refs: more "
                             f"than {MAX_FORM_VALUES:,} choices)")]
        branches = [b for key in _BRANCHES if isinstance(listed := node.get(key), list) for b in listed]
        branches += [node.get(k) for k in ("if", "then", "else", "not") if isinstance(node.get(k), Mapping)]
        dependent = node.get("dependentSchemas")
        branches += list(dependent.values()) if isinstance(dependent, Mapping) else []
        stack.extend((b, depth, doc, drawn) for b in branches)
        props = node.get("properties")
        fields = [*(props.values() if isinstance(props, Mapping) else ()),
                  *([node["items"]] if isinstance(node.get("items"), Mapping) else [])]
        if fields and depth >= MAX_FORM_DEPTH:
            if not drawn:
                continue  # checked only as deep as the data goes (MAX_DATA_DEPTH)
            return [("$ref", f"字段经 $ref 嵌套超过 {MAX_FORM_DEPTH} 层，表单会无休止地展开 (fields nest more than "
                             f"{MAX_FORM_DEPTH} levels through $ref: the form would never end)")]
        stack.extend((f, depth + 1, doc, drawn) for f in fields)
    return []


_STORED: dict[bytes, tuple[str, str] | None] = {}  # a stored form's digest → its first problem (files never change)
_STORED_SIZE: Final = 1_024


def _first_stored_problem(text: str) -> tuple[str, str] | None:
    try:
        doc = json.loads(text)
    except RecursionError:
        return "(root)", f"表单定义嵌套过深，最多 {MAX_FORM_DEPTH} 层 (nested more than {MAX_FORM_DEPTH} levels)"
    except json.JSONDecodeError as exc:
        return "", f"{exc.msg}, line {exc.lineno} column {exc.colno}"  # no path: the text is not JSON
    except ValueError as exc:  # a number too long to convert
        return "", str(exc)[:200]
    found = form_problems(doc)
    return found[0] if found else None


def _remembered(texts: tuple[str, ...], find: Callable[[], tuple[str, str] | None]) -> tuple[str, str] | None:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    key = digest.digest()
    if key in _STORED:
        return _STORED[key]
    found = find()
    if len(_STORED) >= _STORED_SIZE:
        _STORED.clear()
    _STORED[key] = found
    return found


def stored_form_problem(name: str, text: str | None) -> str | None:
    """Return why a stored form file may not be drawn, listed or checked against — naming it — or None.

    The same limits as deploy (`form_problems`), and JSON the decoder reads; remembered by the text's digest.
    """
    if not text:
        return None
    return _said(name, _remembered((text,), lambda: _first_stored_problem(text)))


def first_stored_problem(*files: tuple[str | None, str | None]) -> str | None:
    """Return the first of `stored_form_problem` over (name, text) pairs, those without a name skipped; or None."""
    return next((said for name, text in files if name and (said := stored_form_problem(name, text)) is not None),
                None)


def stored_reach_problem(name: str, text: str, others: Mapping[str, str]) -> str | None:
    """Return why a stored schema may not be checked against when its `$ref`s reach `others` (other stored form
    files, each within the limits alone), naming it, or None: their branches counted together, as deploy does."""
    def find() -> tuple[str, str] | None:
        docs: dict[str, Any] = {}
        for other, other_text in others.items():
            try:
                docs[other] = json.loads(other_text)
            except (ValueError, RecursionError):
                continue
        doc = json.loads(text)
        found = _expansion_problems(doc, docs) if isinstance(doc, Mapping) else []
        return found[0] if found else None
    return _said(name, _remembered((text, *(part for pair in sorted(others.items()) for part in pair)), find))


def _said(name: str, found: tuple[str, str] | None) -> str | None:
    if found is None:
        return None
    path, message = found
    if not path:
        return f"表单 {name} 不是有效的 JSON，无法使用：{message} (form {name} is not valid JSON)"
    zh, _, en = message.rpartition(" (")  # each message is "中文 (English)"
    where = "" if path == "(root)" else f"{path}: "
    return f"表单 {name} 超出限制：{where}{zh} (form {name} is past a limit: {where}{en.rstrip(')')})"


__all__ = ["MAX_CHOICES", "MAX_DATA_DEPTH", "MAX_DATA_VALUES", "MAX_EXPANSION", "MAX_EXPONENT", "MAX_FIELDS",
           "MAX_FORM_DEPTH", "MAX_FORM_VALUES", "MAX_INSTRUCTIONS", "MAX_PATTERNS",
           "MAX_PATTERN_CHARS", "MAX_PRINTED_ROWS", "MAX_TABLE_ROWS", "data_limit",
           "data_problem", "first_stored_problem", "form_problems", "stored_form_problem", "stored_reach_problem"]
