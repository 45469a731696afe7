"""JSON API under /api: bearer tokens for machines, the session cookie (with CSRF) for the browser.

`blueprint` authenticates and reads bodies, `routes`, `messages` and `openapi` add the routes, `idempotency` replays
POSTs.
"""
from __future__ import annotations

from web.api import messages, openapi, routes  # noqa: F401  (they add their routes to bp)
from web.api.blueprint import DEFAULT_RATE_LIMIT, body, bp, rate_key, text_field

__all__ = ["DEFAULT_RATE_LIMIT", "body", "bp", "rate_key", "text_field"]
