"""Settings from the environment: cached, yet following every change that matters (a JZFLOW_* variable, the cwd)."""
from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import config
from engine.org import oidc
from engine.runtime import message_rules


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


def test_every_variable_the_settings_read_is_read_again_when_changed(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    # load() is cached on the values of config._KEYS: a variable it reads that is not among them is never read again
    source = inspect.getsource(config)
    read = set(re.findall(r'"(JZFLOW_[A-Z0-9_]+)"', source[source.index("def load()"):]))
    assert read - set(config._KEYS) == set()
    monkeypatch.setenv("JZFLOW_INSTANCE_DIR", str(tmp_path))
    monkeypatch.setenv("JZFLOW_OUTBOX_LEASE_SECONDS", "120")
    assert config.load().outbox_lease_seconds == 120
    monkeypatch.setenv("JZFLOW_OUTBOX_LEASE_SECONDS", "240")
    assert config.load().outbox_lease_seconds == 240


@pytest.mark.parametrize(("name", "value", "says"), [
    ("JZFLOW_SCRIPT_FUEL", "lots", "whole number"),
    ("JZFLOW_SWEEP_BATCH", "0", "at least 1"),
    ("JZFLOW_LOGIN_WINDOW_SECONDS", "-5", "at least 1"),
    ("JZFLOW_MAX_STATE_KB", "2.5", "whole number"),
    ("JZFLOW_INSTANCE_CACHE_SIZE", "-1", "at least 0"),
    ("JZFLOW_TOKEN_MAX_DAYS", "0", "at least 1"),
    ("JZFLOW_SCRIPT_TIME_LIMIT", "0", "greater than 0"),
    ("JZFLOW_OUTBOX_SECONDS", "nan", "greater than 0"),
    ("JZFLOW_AUDIT_SEAL_SECONDS", "soon", "a number"),
    ("JZFLOW_PUBLIC_URL", "jzflow.jiaozhou.gov.cn", "JZFLOW_PUBLIC_URL"),
    ("JZFLOW_PUBLIC_URL", "ftp://jzflow.jiaozhou.gov.cn", "scheme and host"),
    ("JZFLOW_PUBLIC_URL", "https://user:pw@jzflow.jiaozhou.gov.cn", "no query or user"),
    ("JZFLOW_PUBLIC_URL", "https://jzflow.jiaozhou.gov.cn/a\"b", "JZFLOW_PUBLIC_URL"),
    ("JZFLOW_PUBLIC_URL", "https://jzflow.jiaozhou.gov.cn/?x=1", "query"),
    ("JZFLOW_PUBLIC_URL", "https://jz flow.gov.cn", "JZFLOW_PUBLIC_URL"),
    ("JZFLOW_PUBLIC_URL", "https://jzflow.gov.cn:99999", "JZFLOW_PUBLIC_URL"),
])
def test_a_setting_it_cannot_take_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                                                   value: str, says: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(config.SettingInvalid) as refused:
        config.load()
    assert name in str(refused.value) and says in str(refused.value)


@pytest.mark.parametrize(("name", "value", "field", "expected"), [
    ("JZFLOW_SWEEP_BATCH", " 25 ", "sweep_batch", 25),
    ("JZFLOW_SWEEP_BATCH", "", "sweep_batch", 100),  # empty: the default
    ("JZFLOW_INSTANCE_CACHE_MB", "0", "instance_cache_mb", 0),  # 0: the cache off
    ("JZFLOW_TOKEN_MAX_DAYS", "30", "token_max_days", 30),
    ("JZFLOW_TOKEN_MAX_DAYS", "", "token_max_days", 365),
    ("JZFLOW_SCRIPT_TIME_LIMIT", "0.5", "script_time_limit", 0.5),
    ("JZFLOW_PUBLIC_URL", "https://jzflow.jiaozhou.gov.cn/", "public_url", "https://jzflow.jiaozhou.gov.cn"),
    ("JZFLOW_PUBLIC_URL", "http://10.1.2.3:8000", "public_url", "http://10.1.2.3:8000"),
    ("JZFLOW_PUBLIC_URL", "https://www.jiaozhou.gov.cn/jzflow/", "public_url", "https://www.jiaozhou.gov.cn/jzflow"),
    ("JZFLOW_PUBLIC_URL", "", "public_url", ""),
])
def test_settings_read_as_given(monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str,
                                expected: object) -> None:
    monkeypatch.setenv(name, value)
    assert getattr(config.load(), field) == expected


@pytest.mark.parametrize(("name", "value", "read"), [
    ("JZFLOW_MESSAGE_TTL_SECONDS", "an hour", lambda: message_rules.default_ttl()),
    ("JZFLOW_MESSAGE_MAX_TTL_SECONDS", "0", lambda: message_rules.max_ttl()),
    ("JZFLOW_OIDC_TIMEOUT", "-1", lambda: oidc.load_settings()),
])
def test_settings_read_outside_the_settings_object_are_refused_by_name_too(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str, read: Callable[[], object]) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(config.SettingInvalid, match=name):
        read()


def test_the_oidc_timeout_is_read_from_the_mapping_it_is_given() -> None:
    assert oidc.load_settings({"JZFLOW_OIDC_TIMEOUT": "2.5"}).timeout == 2.5
