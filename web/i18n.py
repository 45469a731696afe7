"""Translations: Chinese is the source language; English is compiled from web/translations at start."""
from __future__ import annotations

import os
import tempfile
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
        # A temporary file of this call's own: several workers start at once and each compiles (a shared name let one
        # rename the file another was still writing, and the other's rename then found none: that worker died).
        fd, tmp = tempfile.mkstemp(dir=mo.parent, prefix=f".{mo.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as target:
                write_mo(target, catalog)
                os.fchmod(target.fileno(), 0o644)  # as a file written the usual way (mkstemp makes it 0600)
            os.replace(tmp, mo)  # atomic: a reader sees the old catalogue or the new one, whole
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
