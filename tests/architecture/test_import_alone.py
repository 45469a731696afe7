"""Each package imports first in a fresh interpreter: an import cycle shows only in the order that enters it.

The test session imports everything in one order; the CLI, the worker and the web app each begin elsewhere
(`jzflow` loads plan.app, which reaches engine.deadlines before engine.runtime). A cycle entered from one of those
broke `jzflow init-db` while every test passed.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRSTS = sorted({"plan.app", "web", "engine.cli", "engine.celery_app"} | {
    f"engine.{p.parent.name}" for p in (REPO / "engine").glob("*/__init__.py")})


@pytest.mark.parametrize("module", FIRSTS)
def test_imports_first_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
