"""extensions.load() runs the registrations once, and a thread asking while they run waits for them.

A web process's first requests come at once (gunicorn's threads): the second one found the registration flagged as
done while the first was still running it, and read escalation.yaml without the plan's sections: every task it
created had its deadline refused ("reports.weekly: unknown key(s) …").
"""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from engine import extensions


class _Entry:
    name = "slow"

    def __init__(self, registered: list[str]) -> None:
        self.registered = registered

    def load(self) -> Any:
        def register() -> None:
            extensions.load()  # a registration that needs load() again goes on, it does not wait for itself
            time.sleep(0.3)
            self.registered.append("plan")
        return register


def test_a_thread_asking_while_the_registrations_run_waits_for_them(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list[str] = []
    monkeypatch.setattr(extensions, "_loaded", False)
    monkeypatch.setattr(extensions, "entry_points", lambda group: [_Entry(registered)])
    seen: list[list[str]] = []
    first = threading.Thread(target=extensions.load)
    first.start()
    time.sleep(0.05)  # the first is inside its registration now

    def second() -> None:
        extensions.load()
        seen.append(list(registered))

    other = threading.Thread(target=second)
    other.start()
    first.join(5)
    other.join(5)
    assert seen == [["plan"]] and registered == ["plan"]
    extensions.load()
    assert registered == ["plan"]  # once
