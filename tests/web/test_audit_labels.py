"""Every audit action the code records has a Chinese label (and its English), so the audit pages and an
instance's history never show a raw code such as `project.stage_back` to a reader of the Chinese UI.

The actions are read from the code itself: each `audit.record(…)` or `new_event(…)` call whose action is a literal.
"""
from __future__ import annotations

import ast
from pathlib import Path

from babel.messages.pofile import read_po

from web.instances.labels import ACTIONS

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "web" / "translations" / "en" / "LC_MESSAGES" / "messages.po"


def recorded_actions() -> dict[str, str]:
    """Each literal action passed to audit.record / new_event in engine/, plan/ and web/, with a file that does."""
    found: dict[str, str] = {}
    for package in ("engine", "plan", "web"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name not in ("record", "new_event"):
                    continue
                for arg in node.args[:4]:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and "." in arg.value \
                            and arg.value.replace(".", "").replace("_", "").isalpha() and arg.value.islower():
                        found.setdefault(arg.value, str(path.relative_to(ROOT)))
    return found


def test_every_recorded_action_has_a_label_and_its_english() -> None:
    found = recorded_actions()
    assert len(found) > 50  # the scan finds the code's actions (it broke if this drops)
    assert {a: f for a, f in found.items() if a not in ACTIONS} == {}
    with CATALOGUE.open("rb") as handle:
        english = {m.id: m.string for m in read_po(handle) if m.id}
    assert [ACTIONS[a] for a in sorted(found) if not english.get(ACTIONS[a])] == []
