"""待办 / 已办 / 我发起的 / 抄送我的: filtered, keyset-paginated lists; saved filters; bulk actions."""
from __future__ import annotations

from web.inbox import actions, lists  # noqa: F401  (they add their routes to bp)
from web.inbox.blueprint import bp

__all__ = ["bp"]
