"""待办 / 已办 / 我发起的 / 抄送我的: filtered, keyset-paginated lists; saved filters; bulk actions."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("inbox", __name__)

from web.inbox import actions, lists  # noqa: E402,F401  (they add their routes to bp)
