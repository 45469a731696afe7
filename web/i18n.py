"""Translations: Chinese is the source language; English is compiled from web/translations at start."""
from __future__ import annotations

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

SOURCE_DIR = Path(__file__).parent / "translations"
BUILD_DIR = Path(__file__).parent / "static" / "dist" / "translations"


def compile_catalogs() -> None:
    """Compile every .po under web/translations into BUILD_DIR when it is newer than its .mo."""
    for po in SOURCE_DIR.glob("*/LC_MESSAGES/*.po"):
        mo = BUILD_DIR / po.relative_to(SOURCE_DIR).with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        mo.parent.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as source:
            catalog = read_po(source)
        tmp = mo.with_suffix(".tmp")
        with tmp.open("wb") as target:
            write_mo(target, catalog)
        tmp.replace(mo)  # atomic: several workers may start at once
