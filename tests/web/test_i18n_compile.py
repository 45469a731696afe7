"""Compiling the English catalogue at start: several gunicorn workers start at once and each compiles it."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from babel.messages.mofile import read_mo, write_mo

from web import i18n


@pytest.fixture
def catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the English .po in a source folder of its own; returns where its .mo is built."""
    source = tmp_path / "translations"
    po = source / "en" / "LC_MESSAGES" / "messages.po"
    po.parent.mkdir(parents=True)
    po.write_bytes((i18n.SOURCE_DIR / "en" / "LC_MESSAGES" / "messages.po").read_bytes())
    monkeypatch.setattr(i18n, "SOURCE_DIR", source)
    monkeypatch.setattr(i18n, "BUILD_DIR", tmp_path / "dist")
    return tmp_path / "dist" / "en" / "LC_MESSAGES" / "messages.mo"


def test_workers_compiling_at_once_all_start_and_leave_one_whole_catalogue(
        catalogue: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workers = 4
    together = threading.Barrier(workers, timeout=10)

    def write_in_step(target: Any, catalog: Any) -> None:  # every worker writes before any has renamed
        write_mo(target, catalog)
        together.wait()

    monkeypatch.setattr(i18n, "write_mo", write_in_step)
    failures: list[BaseException] = []

    def start() -> None:
        try:
            i18n.compile_catalogs()
        except BaseException as error:  # the test reports what a worker died of
            failures.append(error)

    threads = [threading.Thread(target=start) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert failures == []
    with catalogue.open("rb") as built:
        assert len(read_mo(built)) > 100  # whole: every worker's write was complete before it was renamed
    assert sorted(p.name for p in catalogue.parent.iterdir()) == ["messages.mo"]  # no temporary file left


def test_a_failed_write_leaves_the_old_catalogue_and_no_temporary_file(
        catalogue: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    i18n.compile_catalogs()
    before = catalogue.read_bytes()
    po = i18n.SOURCE_DIR / "en" / "LC_MESSAGES" / "messages.po"
    os.utime(po, (po.stat().st_atime, catalogue.stat().st_mtime + 10))  # the source changed: compile again

    def broken(target: Any, catalog: Any) -> None:
        target.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(i18n, "write_mo", broken)
    with pytest.raises(OSError, match="disk full"):
        i18n.compile_catalogs()
    assert catalogue.read_bytes() == before
    assert sorted(p.name for p in catalogue.parent.iterdir()) == ["messages.mo"]


def test_the_catalogue_is_readable_as_a_file_written_the_usual_way(catalogue: Path) -> None:
    i18n.compile_catalogs()
    assert catalogue.stat().st_mode & 0o777 == 0o644
