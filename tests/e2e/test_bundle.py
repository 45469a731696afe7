"""Browser tests use the front-end bundle `make setup` built; they never run npm themselves."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BUNDLES, require_bundle


def test_a_missing_bundle_fails_naming_make_assets_and_runs_no_npm(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[Any] = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: ran.append(args))
    monkeypatch.setattr(subprocess, "Popen", lambda *args, **kwargs: ran.append(args))
    (tmp_path / "jzflow.js").write_text("", encoding="utf-8")
    with pytest.raises(pytest.fail.Exception, match=r"make assets") as failed:
        require_bundle(tmp_path)
    assert "modeller.js" in str(failed.value) and "jzflow.js," not in str(failed.value)
    assert ran == []


def test_a_built_bundle_passes(tmp_path: Path) -> None:
    for name in BUNDLES:
        (tmp_path / name).write_text("", encoding="utf-8")
    require_bundle(tmp_path)
