"""The embedded default's key files (secret.key, audit.key): made once, by whichever process starts first.

`make run` starts the web processes and the worker together on a fresh instance folder, and each asks for the
keys at start. One makes the file; every other must get the same key, never a half-written or empty one.
"""
from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import pytest

from engine import config


def _settings(folder: Path) -> config.Settings:
    return config.Settings(instance_dir=folder, secret_key="", audit_key="")


@pytest.mark.parametrize("which", ["secret", "audit"])
def test_processes_starting_together_get_one_whole_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        which: str) -> None:
    token_hex = secrets.token_hex

    def slow_token_hex(n: int) -> str:  # the maker is still writing when the others look
        value = token_hex(n)
        time.sleep(0.2)
        return value

    monkeypatch.setattr(secrets, "token_hex", slow_token_hex)
    settings = _settings(tmp_path)
    starters = 6
    together = threading.Barrier(starters, timeout=10)
    keys: list[str | bytes] = []

    def start() -> None:
        together.wait()
        keys.append(config.secret_key(settings, "sqlite:///x.db") if which == "secret" else config.audit_key(settings))

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(keys) == starters and len(set(keys)) == 1
    assert len(keys[0]) == 64  # 32 random bytes, hex: never the empty key of a file not yet written
    folder = sorted(p.name for p in tmp_path.iterdir())
    assert folder == [f"{which}.key"]  # no temporary file left behind
    assert (tmp_path / f"{which}.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("content", ["", "\n", "short\n", "x" * 31])
def test_a_damaged_key_file_is_refused_by_name(tmp_path: Path, content: str) -> None:
    (tmp_path / "audit.key").write_text(content, encoding="ascii")
    with pytest.raises(config.InsecureConfiguration, match=r"audit\.key"):
        config.audit_key(_settings(tmp_path))
    assert (tmp_path / "audit.key").read_text(encoding="ascii") == content  # left for the administrator to see


def test_a_key_file_made_by_hand_is_used_as_it_is(tmp_path: Path) -> None:
    made = "一个管理员自己设的密钥".encode().hex()[:40] + "-by-hand"
    (tmp_path / "secret.key").write_text(made + "\n", encoding="ascii")
    assert config.secret_key(_settings(tmp_path), "sqlite:///x.db") == made
