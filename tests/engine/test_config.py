"""Settings from the environment: cached, yet following every change that matters (a JZFLOW_* variable, the cwd)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine import config


def test_absolute_folders_need_no_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # os.getcwd() releases the GIL: a web worker's threads looked settings up eight times a request.
    monkeypatch.setenv("JZFLOW_INSTANCE_DIR", str(tmp_path / "inst"))
    monkeypatch.setenv("JZFLOW_AUDIT_ANCHOR", str(tmp_path / "anchor.log"))
    first = config.load()
    asked: list[str] = []
    real_getcwd = os.getcwd
    with monkeypatch.context() as patch:
        patch.setattr(os, "getcwd", lambda: asked.append("cwd") or real_getcwd())
        again = config.load()
    assert again is first
    assert asked == [], "load() asked for the working directory although no setting depends on it"
    assert first.instance_dir == (tmp_path / "inst").resolve()
    assert first.audit_anchor == (tmp_path / "anchor.log").resolve()


@pytest.mark.parametrize("instance_dir", [None, "relative_inst"])
def test_the_instance_folder_follows_the_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           instance_dir: str | None) -> None:
    if instance_dir is None:
        monkeypatch.delenv("JZFLOW_INSTANCE_DIR", raising=False)
    else:
        monkeypatch.setenv("JZFLOW_INSTANCE_DIR", instance_dir)
    expected = instance_dir or "instance"
    for name in ("a", "b", "a"):
        (tmp_path / name).mkdir(exist_ok=True)
        monkeypatch.chdir(tmp_path / name)
        assert config.load().instance_dir == (tmp_path / name / expected).resolve()


def test_a_relative_anchor_follows_the_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JZFLOW_INSTANCE_DIR", str(tmp_path / "inst"))
    monkeypatch.setenv("JZFLOW_AUDIT_ANCHOR", "anchor.log")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        assert config.load().audit_anchor == (tmp_path / name / "anchor.log").resolve()


def test_a_changed_variable_is_read_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JZFLOW_INSTANCE_DIR", str(tmp_path))
    monkeypatch.setenv("JZFLOW_SWEEP_BATCH", "7")
    assert config.load().sweep_batch == 7
    monkeypatch.setenv("JZFLOW_SWEEP_BATCH", "8")
    assert config.load().sweep_batch == 8
