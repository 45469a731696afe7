"""Load the plan's domain data from data/seed (being written: see the issue "The plan's processes")."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from engine.errors import EngineError


def load_seed(session: Session, path: Path | None = None) -> str:
    """Load seed data (not available yet)."""
    raise EngineError("种子数据尚未提供 (seed data is not available yet)")
