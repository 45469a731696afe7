"""What a translation (engine/spiff/translate.py) changed and what it left for the deploy to refuse."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Translated:
    """One change the translation made, where, and from what to what."""

    file: str
    element_id: str | None
    line: int | None
    what: str
    before: str
    after: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} [{self.element_id or ''}] {self.what}: {self.before} → {self.after}"


@dataclass
class Translation:
    """The bundle after translation (unchanged files as given), what was changed, and what was left as is."""

    files: dict[str, bytes | str]
    report: list[Translated] = field(default_factory=list)
    kept: list[Translated] = field(default_factory=list)  # left for the deploy to refuse, with the reason


__all__ = ["Translated", "Translation"]
