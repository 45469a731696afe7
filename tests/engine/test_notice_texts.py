"""Every notice is built from a text of engine.notify.texts, and every text has its English line in the catalogue.

Read from the source (engine/, plan/, web/): a Note is made only by engine.notify.core.worded, and each text id a
notice names (`worded`, `notice`, `notify`, `note_owners`) is one of the texts; each text's Chinese title and body is a
msgid of web/translations/en with an English msgstr using the same placeholders. A new notice without a text, or a
text without its English, fails here (as a new inbox kind without its settings line fails test_notify_settings).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

import plan  # noqa: F401 # its notice texts, registered with the engine's
from engine.notify import core, texts

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "web" / "translations" / "en" / "LC_MESSAGES" / "messages.po"
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff01-\uff60]")
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# where the text id is among a call's positional arguments (after the session, user and kind where they come first)
TEXT_AT = {"worded": 2, "notice": 2, "notify": 3, "note_owners": 3}


def _english() -> dict[str, str]:
    with CATALOGUE.open("rb") as handle:
        return {str(m.id): str(m.string) for m in read_po(handle) if m.id}


def untranslated(table: dict[str, tuple[str, str]], english: dict[str, str]) -> list[str]:
    """The Chinese titles and bodies of `table` without a fitting English line: none, Chinese left in it, or other
    placeholders than the msgid's."""
    wrong = []
    for title, body in table.values():
        for msgid in (title, body):
            if not msgid or not CJK.search(msgid):
                continue  # "%(note)s": what a person typed, the same in every language
            msgstr = english.get(msgid, "")
            if not msgstr or CJK.search(msgstr) or set(PLACEHOLDER.findall(msgstr)) != set(PLACEHOLDER.findall(msgid)):
                wrong.append(msgid)
    return wrong


def test_every_text_has_its_english_line() -> None:
    assert untranslated(texts.TEXTS, _english()) == []


def test_a_text_without_english_is_caught() -> None:
    english = _english()
    assert untranslated({"new": ("新的通知: %(task)s", "")}, english) == ["新的通知: %(task)s"]
    title = texts.TEXTS["transferred"][0]
    assert untranslated({"x": (title, "")}, {**english, title: "%(actor)s transferred"}) == [title]  # lost %(task)s


def _calls(path: Path) -> tuple[set[str], list[str], list[str]]:
    """(functions that make a Note, text ids named, text ids named by an f-string: their literal start)."""
    makers: set[str] = set()
    named: list[str] = []
    started: list[str] = []

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            where = node.name
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "Note":
                makers.add(where)
            at = TEXT_AT.get(name)
            if at is not None and len(node.args) > at:
                text = node.args[at]
                if isinstance(text, ast.Constant) and isinstance(text.value, str):
                    named.append(text.value)
                elif isinstance(text, ast.JoinedStr):
                    first = text.values[0] if text.values else None
                    started.append(first.value if isinstance(first, ast.Constant) else "")
                elif isinstance(text, ast.IfExp):
                    named.extend(b.value for b in (text.body, text.orelse) if isinstance(b, ast.Constant))
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    visit(ast.parse(path.read_text(encoding="utf-8")), "<module>")
    return makers, named, started


def test_every_notice_is_worded_by_a_text() -> None:
    makers: set[tuple[str, str]] = set()
    named: list[str] = []
    started: list[str] = []
    for package in ("engine", "plan", "web"):
        for path in sorted((ROOT / package).rglob("*.py")):
            made, said, begun = _calls(path)
            makers |= {(path.relative_to(ROOT).as_posix(), f) for f in made}
            named += said
            started += begun
    assert makers == {("engine/notify/core.py", "worded")}
    assert len(named) >= 25 and set(named) - set(texts.TEXTS) == set()
    assert started and all(any(t.startswith(s) for t in texts.TEXTS) for s in started if s)


@pytest.mark.parametrize("name", ["%(x)s", "{0} {task}", "%s %d %%", "%(actor)s", "100%"])
def test_arguments_are_data_never_a_format_string(name: str) -> None:
    note = core.worded(1, "task_assigned", "transferred", {"actor": "张三%(task)s", "task": name, "note": name})
    assert note.title == f"张三%(task)s转办给您: {name}" and note.body == name
    assert note.params == {"text": "transferred", "args": {"actor": "张三%(task)s", "task": name, "note": name}}


def test_an_unknown_text_or_a_missing_argument_is_refused_when_queued() -> None:
    with pytest.raises(KeyError):
        core.worded(1, "cc", "no_such_text", {})
    with pytest.raises(KeyError):
        core.worded(1, "cc", "cc", {})


@pytest.mark.parametrize("text", ["supervised", "reassigned", "extension_granted", "cc"])
def test_a_note_typed_at_length_is_cut_in_every_notice(text: str) -> None:
    """督办, 改派 and the extension answers carried a note whole into mail, webhooks and the in-app list (the inbox
    operations cut theirs at 2,000 characters): every notice now does."""
    args = {"actor": "张三", "title": "事项", "task": "任务", "note": "长" * 10_000}
    note = core.worded(1, "urge", text, args)
    assert len(note.body) <= core.NOTE_ROOM + 1 and note.body.endswith("…")
    assert len(note.params["args"]["note"]) == core.NOTE_ROOM + 1  # the stored argument too
