"""Notices are made in one place: engine.notify.core.send_many, which counts each against the cap (engine.notify.quota).

Read from the source (engine/, plan/, web/): an outbox row is built only by send_many and by outbox.enqueue, whose
kind is never a notice's channel (in_app, email, webhook); an in-app Notification only by the deliverer of a queued
one (engine.jobs); neither is inserted in bulk or by SQL text; and the notices not counted (`capped=False`) are the
cap's own note to the process owners and a person's summary of what they were not sent. A module that queued a
notice by another way went around the cap (the inbox operations did: 转办, 委派, 加签, 催办, 抄送, 退回).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "plan", "web")
CHANNELS = {"in_app", "email", "webhook"}
MODELS = {"OutboxMessage", "Notification"}
RAW_SQL = re.compile(r"\b(insert\s+into|copy)\s+\"?(outbox_message|notification)\b", re.IGNORECASE)
ALLOWED = {
    ("engine/notify/core.py", "send_many", "OutboxMessage(…)"),  # the one way: counted against the caps
    ("engine/notify/outbox.py", "enqueue", "OutboxMessage(…)"),  # side effects that are no notice (kind checked)
    ("engine/jobs.py", "_deliver_in_app", "Notification(…)"),  # a queued (counted) notice delivered
    ("engine/notify/quota.py", "_tell_owners", "capped=False"),  # the cap's own note, once per full counter
    ("engine/notify/quota.py", "_tell_person", "capped=False"),  # a person's summary, once per person and hour
}


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _made(path: Path, root: Path = ROOT) -> set[tuple[str, str, str]]:
    """Return (file, enclosing function, what) for each way a notice could be made in the file."""
    rel = path.relative_to(root).as_posix()
    found: set[tuple[str, str, str]] = set()

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            where = node.name
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name in MODELS:
                found.add((rel, where, f"{name}(…)"))
            if name in ("insert", "bulk_insert_mappings", "bulk_save_objects") and any(
                    isinstance(a, ast.Name) and a.id in MODELS for a in node.args):
                found.add((rel, where, f"{name}(model)"))
            if name == "enqueue" and isinstance(node.func, ast.Attribute) and _name(node.func.value) == "outbox":
                kind = node.args[1] if len(node.args) > 1 else next(
                    (k.value for k in node.keywords if k.arg == "kind"), None)
                if not (isinstance(kind, ast.Constant) and isinstance(kind.value, str)) or kind.value in CHANNELS:
                    found.add((rel, where, "outbox.enqueue(notice)"))
            if any(k.arg == "capped" and not (isinstance(k.value, ast.Constant) and k.value.value is True)
                   for k in node.keywords):
                found.add((rel, where, "capped=False"))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and RAW_SQL.search(node.value):
            found.add((rel, where, "SQL text"))
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    visit(ast.parse(path.read_text(encoding="utf-8")), "<module>")
    return found


def made_anywhere() -> set[tuple[str, str, str]]:
    return {m for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py")) for m in _made(path)}


def test_notices_are_made_only_through_send_many() -> None:
    assert made_anywhere() == ALLOWED


def test_the_check_sees_a_notice_made_around_the_cap(tmp_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text('from engine.notify import outbox\n\n\ndef tell(session, user_id):\n'
                      '    outbox.enqueue(session, "in_app", {"user_id": user_id, "title": "x"})\n'
                      '    outbox.enqueue(session, kind, {})\n'
                      '    session.add(OutboxMessage(kind="email", payload={}))\n'
                      '    session.execute(insert(Notification).values(user_id=user_id))\n'
                      '    notify.send_many(session, [], capped=False)\n'
                      '    session.execute(text("INSERT INTO notification (user_id) VALUES (1)"))\n', encoding="utf-8")
    assert {what for _, _, what in _made(sneaky, tmp_path)} == {
        "outbox.enqueue(notice)", "OutboxMessage(…)", "insert(model)", "capped=False", "SQL text"}
