"""engine.files.place_new: a finished file takes a name only if no other file has it."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from engine.files import place_new


def _made(folder: Path, content: bytes) -> Path:
    made = folder / ".made"
    made.write_bytes(content)
    return made


def test_a_free_name_is_taken_whole(tmp_path: Path) -> None:
    assert place_new(_made(tmp_path, b"new"), tmp_path / "key")
    assert (tmp_path / "key").read_bytes() == b"new"


@pytest.mark.parametrize("hard_links", [True, False], ids=["hard-links", "no-hard-links"])
def test_a_taken_name_is_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hard_links: bool) -> None:
    if not hard_links:
        monkeypatch.setattr(os, "link", _no_hard_links)
    (tmp_path / "key").write_bytes(b"first")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert not place_new(_made(tmp_path, b"second"), tmp_path / "key")
    assert not place_new(_made(tmp_path, b"second"), tmp_path / "dangling")
    assert (tmp_path / "key").read_bytes() == b"first" and not (tmp_path / "nowhere").exists()


def test_a_filesystem_without_hard_links_gets_a_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "link", _no_hard_links)
    made = _made(tmp_path, b"new")
    assert place_new(made, tmp_path / "key")
    assert (tmp_path / "key").read_bytes() == b"new"


def _no_hard_links(_src: object, _dst: object) -> None:
    raise OSError(errno.EPERM, "Operation not permitted")
