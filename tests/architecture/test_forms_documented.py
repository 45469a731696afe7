"""The docs name every form that refuses a stale page (`seen`) or answers a second copy as the first (`once`), and
say that a text past its limit is refused whole, never cut: an operator reading docs/security.md learns which forms
are exactly-once without reading the templates."""
from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start:end if end != -1 else None]


def test_security_lists_seen_and_once_forms() -> None:
    text = " ".join(_section((DOCS / "security.md").read_text(encoding="utf-8"), "### Stale pages, double clicks").split())
    for form in ("审批延期", "竣工", "投产", "发起", "评论", "申请延期", "批量办理", "督办's 催办内容"):
        assert form in text, form
    assert "`seen`" in text and "`once`" in text
    assert "never cut" in text and "CR LF" in text


def test_architecture_lists_them_too() -> None:
    text = _section((DOCS / "architecture.md").read_text(encoding="utf-8"), "### Two people on one plan form")
    for form in ("审批延期", "竣工", "发起", "评论", "申请延期"):
        assert form in text, form
