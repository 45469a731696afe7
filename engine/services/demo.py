"""Load the demo data set (being written: see the issue "The plan's processes")."""
from __future__ import annotations

from sqlalchemy.orm import Session

from engine.errors import EngineError


def load_demo(session: Session) -> str:
    """Load demo data (not available yet)."""
    raise EngineError("演示数据尚未提供 (demo data is not available yet)")
