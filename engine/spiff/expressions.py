"""Check every condition, script, timer, multi-instance expression and DMN cell at deploy.

All of them are Python run under the sandbox (docs/architecture.md), so each is compiled here with the
sandbox's compiler and refused with its element id and line if it does not compile. UNIQUE
decision tables are searched for inputs that two rules both match. A literal loopCardinality must be a
whole number, and it and a loopMaximum no larger than JZFLOW_MAX_MULTI_INSTANCE (engine.spiff.fanout counts the
rest when they run).
"""
from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Collection, Iterator
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from engine import config, task_properties
from engine.errors import DeployProblem
from engine.spiff import sandbox, timers

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
ISO_LITERAL = re.compile(r"^(R\d*/)?P(\d+(\.\d+)?[YMWD])*(T(\d+(\.\d+)?[HMS])+)?$")
DMN_INPUT = "dmninputexpr"
# Outside quotes, like SpiffWorkflow's DMNEngine does it.
QUESTION = re.compile(r"(\?)(?=(?:[^'\"]|['\"][^'\"]*['\"])*$)")
MAX_COMBINATIONS = 20_000


def _local(el: etree._Element) -> str:
    """Return an element's local name ('' for comments and processing instructions)."""
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _owner(el: etree._Element) -> etree._Element:
    """Return the nearest element with an id that is not a spiff extension (whose `id` means other things)."""
    node: etree._Element | None = el
    while node is not None and (not node.get("id") or str(node.tag).startswith(f"{{{SPIFF_NS}}}")):
        node = node.getparent()
    return node if node is not None else el


def _line(el: etree._Element, offset: int | None) -> int | None:
    base: int | None = el.sourceline
    if base is None:
        return None
    return base + (offset - 1 if offset and offset > 1 else 0)


def _compile(file: str, el: etree._Element, text: str, kind: str, what: str,
             owner: etree._Element | None = None) -> DeployProblem | None:
    owner = owner if owner is not None else _owner(el)
    try:
        if kind == "script":
            sandbox.compile_script(text)
        else:
            sandbox.compile_expression(text)
    except sandbox.SandboxViolation as exc:
        return DeployProblem(file, f"{what} refused: {exc.message}", element_id=owner.get("id"),
                             line=_line(el, exc.lineno))
    return None


def check_document(file: str, kind: str, root: etree._Element,
                   services: Collection[str] | None = None) -> list[DeployProblem]:
    """Compile every expression and script of a BPMN or DMN document; return the problems."""
    if kind == "bpmn":
        return list(_check_bpmn(file, root, services))
    if kind == "dmn":
        return list(_check_dmn(file, root))
    return []


def _text(el: etree._Element) -> str:
    return (el.text or "").strip()


EXPRESSION_PROPERTIES = ("candidates", "assignee", "due", "escalationUnit")


def literal_names(text: str) -> list[str] | None:
    """Return the names a property expression gives whatever the data: a quoted name or a list (tuple) of them.

    None for anything that depends on the data (a variable, a call) or is not text: only a run tells what it gives.
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    items = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    if not all(isinstance(i, ast.Constant) and isinstance(i.value, str) for i in items):
        return None
    return list(dict.fromkeys(str(i.value) for i in items if isinstance(i, ast.Constant) and str(i.value).strip()))


def _check_bpmn(file: str, root: etree._Element, services: Collection[str] | None) -> Iterator[DeployProblem]:
    for prop in root.iter(f"{{{SPIFF_NS}}}property"):
        if prop.get("name") in EXPRESSION_PROPERTIES and (prop.get("value") or "").strip():
            text = str(prop.get("value")).strip()
            if (p := _compile(file, prop, text, "expression", f"property {prop.get('name')} '{text}'")) is not None:
                yield p
        elif (wrong := task_properties.problem(str(prop.get("name")), prop.get("value") or "")) is not None:
            owner, name = _owner(prop).get("id"), prop.get("name")
            yield DeployProblem(file, f"任务 {owner} 的 {name} 超出范围或格式不对 (task '{owner}': {name} is out of "
                                f"range or malformed): {wrong}", element_id=owner, line=prop.sourceline)
    for op in root.iter(f"{{{SPIFF_NS}}}serviceTaskOperator"):
        name = op.get("id") or ""
        if services is not None and name not in services:
            known = ", ".join(sorted(services)) or "none"
            yield DeployProblem(file, f"unknown service '{name}' (known: {known})", element_id=_owner(op).get("id"),
                                line=op.sourceline)
        for param in op.iter(f"{{{SPIFF_NS}}}parameter"):
            text = (param.get("value") or "").strip()
            if not text:
                yield DeployProblem(file, f"service parameter '{param.get('id')}' has no value",
                                    element_id=_owner(op).get("id"), line=param.sourceline)
            elif (p := _compile(file, param, text, "expression", f"service parameter '{param.get('id')}'",
                                _owner(op))) is not None:
                yield p
    for el in root.iter(f"{{{BPMN_NS}}}conditionExpression"):
        text = _text(el)
        if not text:
            yield DeployProblem(file, "empty condition", element_id=_owner(el).get("id"), line=el.sourceline)
        elif (p := _compile(file, el, text, "expression", f"condition '{text}'")) is not None:
            yield p
    for el in root.iter(f"{{{BPMN_NS}}}script"):
        text = el.text or ""
        if text.strip() and (p := _compile(file, el, text, "script", "script")) is not None:
            yield p
    for tag in ("preScript", "postScript"):
        for el in root.iter(f"{{{SPIFF_NS}}}{tag}"):
            text = el.text or ""
            if text.strip() and (p := _compile(file, el, text, "script", tag)) is not None:
                yield p
    for timer in root.iter(f"{{{BPMN_NS}}}timerEventDefinition"):
        event = timer.getparent()
        for el in timer:
            if _local(el) in ("timeDuration", "timeDate", "timeCycle"):
                problem = _check_timer(file, el, _text(el), event if event is not None else timer)
                if problem is not None:
                    yield problem
    for mi in root.iter(f"{{{BPMN_NS}}}multiInstanceLoopCharacteristics"):
        for el in mi:
            name = _local(el)
            if name in ("loopCardinality", "completionCondition") and _text(el):
                p = _compile(file, el, _text(el), "expression", name)
                if p is None and name == "loopCardinality":
                    p = _check_cardinality(file, el, _text(el))
                if p is not None:
                    yield p
            elif name in ("loopDataInputRef", "loopDataOutputRef") and _text(el) and not _text(el).isidentifier():
                yield DeployProblem(file, f"{name} '{_text(el)}' is not a variable name",
                                    element_id=_owner(el).get("id"), line=el.sourceline)
    for loop in root.iter(f"{{{BPMN_NS}}}standardLoopCharacteristics"):
        maximum, limit = (loop.get("loopMaximum") or "").strip(), config.load().max_multi_instance
        if maximum.isdigit() and int(maximum) > limit:  # the XSD refused what is not an integer
            owner = _owner(loop).get("id")
            yield DeployProblem(file, f"循环任务 {owner} 的 loopMaximum {int(maximum)} 超过上限 {limit} (loopMaximum "
                                f"{int(maximum)} of loop {owner} is over the limit {limit}: JZFLOW_MAX_MULTI_INSTANCE)",
                                element_id=owner, line=loop.sourceline)


def _check_cardinality(file: str, el: etree._Element, text: str) -> DeployProblem | None:
    """Refuse a literal cardinality that is not a whole number or is over JZFLOW_MAX_MULTI_INSTANCE."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None  # an expression over task data: counted when it runs (engine.spiff.fanout)
    owner = _owner(el).get("id")
    if not isinstance(value, int) or isinstance(value, bool):
        return DeployProblem(file, f"多实例任务 {owner} 的 loopCardinality {text} 不是整数 "
                             f"(loopCardinality {text} of {owner} must be a whole number)",
                             element_id=owner, line=el.sourceline)
    limit = config.load().max_multi_instance
    if value > limit:
        return DeployProblem(file, f"多实例任务 {owner} 的 loopCardinality {value} 超过上限 {limit} "
                             f"(loopCardinality {value} of multi-instance {owner} is over the limit {limit}: "
                             "JZFLOW_MAX_MULTI_INSTANCE)", element_id=owner, line=el.sourceline)
    return None


def _check_timer(file: str, el: etree._Element, text: str, event: etree._Element) -> DeployProblem | None:
    where = dict(element_id=_owner(event).get("id"), line=el.sourceline)
    if not text:
        return DeployProblem(file, "empty timer expression", **where)
    if ISO_LITERAL.match(text) or re.match(r"^\d{4}-\d{2}-\d{2}", text):
        return DeployProblem(file, f"timer literal {text} must be quoted: write \"{text}\" "
                             "(timer expressions are Python)", **where)
    if (p := _compile(file, el, text, "expression", f"timer '{text}'", owner=event)) is not None:
        return p
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None  # an expression over task data: checked when it runs
    if not isinstance(value, str):
        return DeployProblem(file, f"timer '{text}' must give an ISO 8601 string", **where)
    try:
        kind = _local(el)
        if kind == "timeCycle":
            TimerEventDefinition.parse_iso_recurring_interval(value)
        else:
            TimerEventDefinition.parse_time_or_duration(value)
    except timers.TimerOutOfRange as exc:
        owner = where["element_id"]
        return DeployProblem(file, f"定时器 {owner} 超出范围 (timer '{value}' of {owner} is out of range): {exc}",
                             **where)
    except Exception as exc:  # SpiffWorkflow raises bare exceptions from its ISO parsing
        return DeployProblem(file, f"timer '{value}' is not a valid ISO 8601 value: {exc}", **where)
    return None


def _dmn_children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if _local(c) == name]


def _cell_text(entry: etree._Element) -> str:
    texts = _dmn_children(entry, "text")
    return (texts[0].text or "").strip() if texts else ""


def match_expression(cell: str) -> str:
    """Turn a DMN input cell into the Python test SpiffWorkflow's DMNEngine evaluates."""
    if QUESTION.search(cell):
        return QUESTION.sub(DMN_INPUT, cell)
    try:
        ast.parse(cell, mode="eval")
        return f"({DMN_INPUT}) == ({cell})"
    except SyntaxError:
        return f"{DMN_INPUT} {cell}"


def _check_dmn(file: str, root: etree._Element) -> Iterator[DeployProblem]:
    for table in root.iter():
        if _local(table) != "decisionTable":
            continue
        for inp in _dmn_children(table, "input"):
            for expr in _dmn_children(inp, "inputExpression"):
                text = _cell_text(expr)
                if text and (p := _compile(file, expr, text, "expression", f"input expression '{text}'", inp)):
                    yield p
        cells_ok = True
        for rule in _dmn_children(table, "rule"):
            for entry in _dmn_children(rule, "inputEntry"):
                cell = _cell_text(entry)
                if cell and cell != "-":
                    p = _compile(file, entry, match_expression(cell), "expression", f"input cell '{cell}'", rule)
                    if p is not None:
                        cells_ok = False
                        yield p
            for entry in _dmn_children(rule, "outputEntry"):
                cell = _cell_text(entry)
                if cell and (p := _compile(file, entry, cell, "expression", f"output cell '{cell}'", rule)):
                    cells_ok = False
                    yield p
        if cells_ok and table.get("hitPolicy", "UNIQUE").upper() == "UNIQUE":
            yield from _unique_overlaps(file, table)


def _literals(cell: str) -> list[Any]:
    values: list[Any] = []
    try:
        tree = ast.parse(match_expression(cell), mode="eval")
    except SyntaxError:
        return values
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and not isinstance(node.value, bool) and node.value is not None:
            v = node.value
            if isinstance(v, (int, float)):
                values.extend([v - 1, v - 0.5, v, v + 0.5, v + 1])
            elif isinstance(v, str):
                values.append(v)
    return values


def _unique_overlaps(file: str, table: etree._Element) -> Iterator[DeployProblem]:
    """Find an input that two rules of a UNIQUE table both match (a witness, never a guess)."""
    inputs = _dmn_children(table, "input")
    rules = _dmn_children(table, "rule")
    if len(rules) < 2 or not inputs:
        return
    columns: list[list[Any]] = [[] for _ in inputs]
    tests: list[list[str | None]] = []
    for rule in rules:
        row: list[str | None] = []
        for i, entry in enumerate(_dmn_children(rule, "inputEntry")[:len(inputs)]):
            cell = _cell_text(entry)
            if cell and cell != "-":
                row.append(match_expression(cell))
                columns[i].extend(_literals(cell))
            else:
                row.append(None)
        row.extend([None] * (len(inputs) - len(row)))
        tests.append(row)
    candidates = [list(dict.fromkeys([*(c or ["__jz_any__"]), "__jz_other__"])) for c in columns]
    total = 1
    for c in candidates:
        total *= len(c)
    if total > MAX_COMBINATIONS:
        return  # too many to enumerate; documented limitation of the overlap search
    env = sandbox.SandboxEnvironment()
    reported: set[tuple[int, int]] = set()
    for combo in itertools.product(*candidates):
        matched = [r for r, row in enumerate(tests) if _rule_matches(env, row, combo)]
        if len(matched) > 1 and (matched[0], matched[1]) not in reported:
            first, second = matched[0], matched[1]
            reported.add((first, second))
            shown = ", ".join(f"{_label(inp)}={_show(v)}" for inp, v in zip(inputs, combo, strict=True))
            yield DeployProblem(file, f"UNIQUE decision table: rules '{rules[first].get('id')}' and "
                                f"'{rules[second].get('id')}' both match {shown}",
                                element_id=rules[second].get("id"), line=rules[second].sourceline)


def _label(inp: etree._Element) -> str:
    return inp.get("label") or next((_cell_text(e) for e in _dmn_children(inp, "inputExpression")), "?")


def _show(value: Any) -> str:
    return "(any)" if value in ("__jz_any__", "__jz_other__") else repr(value)


def _rule_matches(env: sandbox.SandboxEnvironment, row: list[str | None], combo: tuple[Any, ...]) -> bool:
    for test, value in zip(row, combo, strict=True):
        if test is None:
            continue
        try:
            if not env.evaluate(test, {DMN_INPUT: value}):
                return False
        except Exception:
            # A type mismatch (comparing a string with a number) or a cell over task data: no match.
            return False
    return True

