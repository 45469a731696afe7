"""FEEL cells of DMN tables exported by Camunda or Flowable modellers, as SpiffWorkflow's Python cells.

A file is translated when its exporter is a Camunda or Flowable modeller or it declares FEEL; jzflow's own
DMN files (Python cells) are left alone. Input entries are unary tests (comparisons, ranges, lists,
`not(…)`, `-`); input expressions and output entries are FEEL expressions. A cell outside the subset is
kept as it was and listed, so the deploy refuses it (or the owner sees it) with its line.
"""
from __future__ import annotations

import ast

from lxml import etree

from engine.spiff import foreign_expr
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


__all__ = ["translate"]
