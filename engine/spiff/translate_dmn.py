"""FEEL cells of DMN tables exported by Camunda or Flowable modellers, as SpiffWorkflow's Python cells.

A file is translated when its exporter is a Camunda or Flowable modeller or it declares FEEL; jzflow's own
DMN files (Python cells) are left alone. Input entries are unary tests (comparisons, ranges, lists,
`not(…)`, `-`); input expressions and output entries are FEEL expressions. A cell outside the subset is
kept as it was and listed, so the deploy refuses it (or the owner sees it) with its line.
"""
from __future__ import annotations

import ast

from lxml import etree

from engine.errors import DeployProblem
from engine.spiff import foreign_expr
from engine.spiff.expressions import match_expression
from engine.spiff.foreign_expr import Untranslatable
from engine.spiff.translated import Translated, Translation


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _same_python(text: str, python: str) -> bool:
    """Tell whether the cell already was that Python (only quotes or spaces differ): nothing to report."""
    if text == python:
        return True
    try:
        return ast.dump(ast.parse(text.replace("?", "__q__"), mode="eval")) == \
            ast.dump(ast.parse(python.replace("?", "__q__"), mode="eval"))
    except SyntaxError:
        return False


def _foreign_dmn(root: etree._Element) -> bool:
    """Tell whether a DMN file's cells are FEEL: exported by Camunda or Flowable, or declared FEEL."""
    exporter = (root.get("exporter") or "").lower()
    declared = " ".join((el.get("expressionLanguage") or "").lower() for el in root.iter() if isinstance(el.tag, str))
    return "camunda" in exporter or "flowable" in exporter or "feel" in declared


def translate(file: str, root: etree._Element, out: Translation) -> None:
    if not _foreign_dmn(root):
        return
    for el in root.iter():
        if not isinstance(el.tag, str) or _local(el) not in ("inputEntry", "outputEntry", "inputExpression"):
            continue
        text_el = next((c for c in el if _local(c) == "text"), None)
        if text_el is None:
            continue
        text = (text_el.text or "").strip()
        owner = el if el.get("id") else el.getparent()
        where = (owner.get("id") if owner is not None else None, text_el.sourceline)
        try:
            python = foreign_expr.feel_unary_tests(text) if _local(el) == "inputEntry" else \
                foreign_expr.feel(text) if text else ""
        except Untranslatable as exc:
            out.kept.append(Translated(file, where[0], where[1], _local(el), text, str(exc)))
            continue
        if not _same_python(text, python):
            text_el.text = python
            out.report.append(Translated(file, where[0], where[1], _local(el), text, python))
    for el in root.iter():
        if isinstance(el.tag, str) and "feel" in (el.get("expressionLanguage") or "").lower():
            del el.attrib["expressionLanguage"]


# Catalogue templates (English in web/translations/en/LC_MESSAGES/messages.po).
FEEL_CELL = ("决策表单元格 “%(text)s” 是 FEEL 写法（本文件由 %(source)s 导出），在 jzflow 中按 Python 理解会得出不同结果，"
             "应写作 %(python)s：导入时选择“转换”（建模器）或用 jzflow deploy --translate 可自动转换")
FEEL_CELL_UNTRANSLATABLE = ("决策表单元格 “%(text)s” 是 FEEL 写法（本文件由 %(source)s 导出），无法自动转换为 Python"
                            "（%(reason)s）：请改写为 Python 单元格，如 ? > 5000 或 ? in (\"A\", \"B\")")


def _meaning(cell: str) -> str | None:
    """Return how SpiffWorkflow's DMN engine reads a Python cell (as an AST dump), or None if it is not Python."""
    try:
        return ast.dump(ast.parse(match_expression(cell), mode="eval"))
    except SyntaxError:
        return None


def check(file: str, root: etree._Element) -> list[DeployProblem]:
    """Refuse FEEL input cells that jzflow would read differently as Python (e.g. `"A","B"`, `[1..10]`)."""
    if not _foreign_dmn(root):
        return []
    source = root.get("exporter") or "FEEL"
    problems: list[DeployProblem] = []
    for entry in root.iter():
        if not isinstance(entry.tag, str) or _local(entry) != "inputEntry":
            continue
        text_el = next((c for c in entry if _local(c) == "text"), None)
        cell = (text_el.text or "").strip() if text_el is not None else ""
        if not cell or cell == "-" or text_el is None:
            continue
        where = {"element_id": entry.get("id") or None, "line": text_el.sourceline}
        try:
            python = foreign_expr.feel_unary_tests(cell)
        except Untranslatable as exc:
            if _meaning(cell) is None:  # not Python either: say what FEEL it is
                problems.append(DeployProblem.said(file, FEEL_CELL_UNTRANSLATABLE, **where, text=cell, source=source,
                                                   reason=str(exc)))
            continue  # valid Python that is no FEEL we know: the owner wrote Python
        if _meaning(cell) != _meaning(python):
            problems.append(DeployProblem.said(file, FEEL_CELL, **where, text=cell, source=source, python=python))
    return problems


__all__ = ["FEEL_CELL", "FEEL_CELL_UNTRANSLATABLE", "check", "translate"]
