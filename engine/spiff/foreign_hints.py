"""Hints for expressions written for another engine: what the Python would be, or why it cannot be had.

A hint shows Python only when the translator (foreign_expr) produced it; otherwise it says why the text
cannot be translated and gives an example of the right kind for the element (a duration for a timer,
a condition for a flow), never the foreign text with its prefix cut off.
"""
from __future__ import annotations

from engine.spiff import foreign_expr

WHAT = {"conditionExpression": "条件", "condition": "条件", "completionCondition": "完成条件",
        "loopCardinality": "循环次数", "timeDuration": "定时期限", "timeDate": "定时日期", "timeCycle": "定时周期"}
EXAMPLES = {"timeDuration": "\"P5D\"", "timeDate": "\"2025-06-30T09:00:00+08:00\"", "timeCycle": "\"R3/P1D\"",
            "loopCardinality": "3", "completionCondition": "nr_of_completed_instances >= 2"}
TRANSLATE_HINT = "jzflow deploy --translate"

# Catalogue templates (English in web/translations/en/LC_MESSAGES/messages.po).
LANGUAGE = ("%(what)s使用的语言是 “%(language)s”，jzflow 的表达式是 Python：请删除 language 属性并写 Python，"
            "如 %(example)s")
TRANSLATABLE = ("%(what)s “%(text)s” 是 %(dialect)s 表达式，jzflow 的表达式是 Python，应写作 %(python)s。"
                "导入时选择“转换”（建模器）或用 jzflow deploy --translate 可自动转换")
UNTRANSLATABLE = ("%(what)s “%(text)s” 是 %(dialect)s 表达式，无法自动转换为 Python（%(reason)s）：请改写为 "
                  "Python，如 %(example)s")


def what(element: str) -> str:
    """Return the owner's word for an expression element."""
    return WHAT.get(element, element)


def example(element: str) -> str:
    """Return a Python example of the right kind for an expression element."""
    return EXAMPLES.get(element, "amount > 5000")


def expression_hint(element: str, text: str) -> tuple[str, dict[str, str | int]]:
    """Return (template, fields) for a JUEL or FEEL text found where Python is expected."""
    shown = text.strip()
    dialect = "JUEL" if shown[:2] in ("${", "#{") else "FEEL"
    try:
        _dialect, python = foreign_expr.expression(shown)
    except foreign_expr.Untranslatable as exc:
        return UNTRANSLATABLE, {"what": what(element), "text": shown, "dialect": dialect, "reason": str(exc),
                                "example": example(element)}
    return TRANSLATABLE, {"what": what(element), "text": shown, "dialect": dialect, "python": python}


def templates() -> dict[str, str]:
    """Return every template this module writes, by name (for the translation catalogue's test)."""
    return {"LANGUAGE": LANGUAGE, "TRANSLATABLE": TRANSLATABLE, "UNTRANSLATABLE": UNTRANSLATABLE}


__all__ = ["LANGUAGE", "TRANSLATABLE", "TRANSLATE_HINT", "UNTRANSLATABLE", "example", "expression_hint", "templates",
           "what"]
