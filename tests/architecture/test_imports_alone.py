"""Every package of the product imports on its own, in a fresh interpreter.

`import plan.ledger` alone failed with a circular import (plan.ledger → plan.projects → plan.projects.acting →
plan.projects.views → plan.dashboard → … → plan.ledger, half initialised), while the test suite and the app, which
import other modules first, never saw it: a worker task, a script or a shell importing that package first would.
"""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def packages() -> list[str]:
    found = []
    for top in ("engine", "plan", "web"):
        for init in sorted((ROOT / top).rglob("__init__.py")):
            parts = init.parent.relative_to(ROOT).parts
            if "static" not in parts and "templates" not in parts:
                found.append(".".join(parts))
    return found


def _import_alone(name: str) -> str | None:
    done = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    return None if done.returncode == 0 else f"{name}: {done.stderr.strip().splitlines()[-1]}"


def test_every_package_imports_on_its_own() -> None:
    names = packages()
    assert "plan.ledger" in names and "engine.runtime" in names
    with ThreadPoolExecutor(max_workers=2) as pool:
        failed = [problem for problem in pool.map(_import_alone, names) if problem]
    assert not failed, failed
