"""The house keeps its shape: the import contracts of setup.cfg hold, and fail when someone breaks them.

`make lint` runs the same contracts (lint-imports); these tests also show that each contract really
catches a violation, by adding one to a copy of the tree.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# Words of the city's plan that the generic engine must not know (its own "projection" is fine).
PLAN_WORDS = re.compile(r"\b(indicators?|projects?|ledger|investment)\b|项目|台账|指标|招商|揭榜|七步")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "setup.cfg"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the three packages and the contracts, to break on purpose."""
    root = tmp_path_factory.mktemp("house")
    for package in ("engine", "plan", "web"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(REPO / "setup.cfg", root / "setup.cfg")
    return root


def test_the_contracts_hold_on_the_repository() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("engine/_violation.py", "import plan.ledger\n", "web uses the plan, the plan uses the engine"),
    ("plan/_violation.py", "import web.common\n", "web uses the plan, the plan uses the engine"),
    ("engine/runtime/_violation.py", "import SpiffWorkflow.bpmn\n", "only engine.spiff imports SpiffWorkflow"),
    ("plan/_violation.py", "import flask\n", "the engine and the plan never import Flask"),
])
def test_a_deliberate_violation_breaks_its_contract(tree: Path, module: str, line: str, contract: str) -> None:
    path = tree / module
    path.write_text(line, encoding="utf-8")
    try:
        result = _lint(tree)
    finally:
        path.unlink()
    assert result.returncode != 0, result.stdout
    assert re.search(re.escape(contract) + r".*BROKEN", result.stdout), result.stdout


def test_the_engine_knows_nothing_of_the_plan() -> None:
    found = [f"{path.relative_to(REPO)}:{n}: {text.strip()}"
             for path in sorted((REPO / "engine").rglob("*.py"))
             for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if PLAN_WORDS.search(text)]
    assert found == []


def test_no_module_is_much_over_four_hundred_lines() -> None:
    sizes = {str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines())
             for package in ("engine", "plan", "web") for p in (REPO / package).rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 420} == {}
