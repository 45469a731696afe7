"""Where a login may send the browser afterwards: same-site relative paths only (no open redirect)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import url_for


def safe_next(target: str | None) -> str:
    """Return a same-site relative path, never an absolute URL (no open redirect)."""
    if not target:
        return url_for("inbox.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ch < " " or ch == "\x7f" for ch in target):  # CR/LF would split the Location header
        return url_for("inbox.index")
    return target
