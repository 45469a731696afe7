"""Every refusal the engine and the plan word for people carries its English half, so English readers and API callers
who chose English never read Chinese (web.wording.split: "中文 (English)" or "中文 (English): detail").

The scan reads the code, as test_layers does: each call of an error class (EngineError and its subclasses, wherever
they are defined in engine/ or plan/, and FieldError) whose message is a literal or an f-string with Chinese in it must
split into a Chinese and an English half. A message built elsewhere (a variable, a helper) is not seen here.
"""
from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from web.wording import split

REPO = Path(__file__).resolve().parents[2]
CHINESE = re.compile(r"[\u4e00-\u9fff]")
# Operator-only text: configuration checked when a worker or the CLI starts, read in logs by whoever runs the
# service (path:line is not used, the text's start is, so a moved line stays allowed); and text that is no refusal.
NOT_SHOWN_SPLIT = {
    ("engine/documents/numbering.py", "JZFLOW_NUMBER_RULES 不是JSON"),  # settings, at startup
    ("engine/org/ldap_read.py", "JZFLOW_LDAP_PAGE_SIZE"),  # settings of the directory sync job
    ("engine/org/ldap_read.py", "JZFLOW_LDAP_MAX_DEACTIVATE_FRACTION"),  # settings of the directory sync job
    # Not a refusal: 揭榜挂帅's services (loop_open_calls, loop_appoint) keep these in the process data the form
    # shows again, where no split is made (tests/processes/test_investment_loop.py reads them whole).
    ("plan/projects/calls.py", "产业“"), ("plan/projects/calls.py", "产业链“"), ("plan/projects/calls.py", "项目“"),
    ("plan/projects/calls.py", "单位“"), ("plan/projects/calls.py", "项目 x 已过线索阶段"),
}


def _trees() -> dict[str, ast.Module]:
    return {str(p.relative_to(REPO)): ast.parse(p.read_text(encoding="utf-8"))
            for package in ("engine", "plan") for p in sorted((REPO / package).rglob("*.py"))}


def _error_classes(trees: dict[str, ast.Module]) -> set[str]:
    """Return the names of EngineError, its subclasses in engine/ and plan/, and FieldError."""
    names = {"EngineError", "FieldError"}
    grown = True
    while grown:
        grown = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names and any(
                        (b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", None)) in names
                        for b in node.bases):
                    names.add(node.name)
                    grown = True
    return names


def _value(node: ast.expr) -> str:
    """Return what an f-string's value stands for: another error's `.message` is bilingual (checked where it is
    raised), anything else is data ("x")."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.FormattedValue) and isinstance(node.value, ast.Attribute) and node.value.attr == "message":
        return "错误 (wrong)"
    return "x"


def _text(node: ast.expr) -> str | None:
    """Return a literal's text, an f-string's with its values filled in (_value), None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_value(v) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        return None if left is None or right is None else left + right
    return None


def _messages(trees: dict[str, ast.Module]) -> Iterator[tuple[str, int, str]]:
    names = _error_classes(trees)
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name not in names:
                continue
            for arg in [*node.args, *(k.value for k in node.keywords if k.arg == "message")]:
                text = _text(arg)
                if text is not None and CHINESE.search(text):
                    yield path, node.lineno, text


def test_the_scan_finds_the_refusals() -> None:
    found = list(_messages(_trees()))
    assert len(found) > 300
    assert any(path == "engine/tasks/lookup.py" and "任务不存在" in text for path, _, text in found)


def test_every_refusal_has_its_english_half() -> None:
    missing = [f"{path}:{line}: {text}" for path, line, text in _messages(_trees())
               if split(text)[1] is None and not any(path == p and text.startswith(start)
                                                     for p, start in NOT_SHOWN_SPLIT)]
    assert not missing, "no English half (web.wording.split):\n" + "\n".join(missing)


def test_a_chinese_only_refusal_is_caught() -> None:
    tree = ast.parse('from engine.errors import InvalidInput\nraise InvalidInput(f"事项 {x} 不存在")\n')
    found = _messages({**_trees(), "engine/_new.py": tree})
    assert [text for path, _, text in found if path == "engine/_new.py"] == ["事项 x 不存在"]
    assert split("事项 x 不存在")[1] is None
