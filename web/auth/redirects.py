"""Where a login may send the browser afterwards: same-site relative paths only (no open redirect)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import url_for

# Longer paths are not kept: a pending single sign-on login carries `next` in the session cookie, which the browser
# drops past 4 KB (that login then cannot finish); no page of ours needs more.
MAX_NEXT = 1000


def safe_next(target: str | None) -> str:
    """Return a same-site relative path of at most MAX_NEXT characters, never an absolute URL (no open redirect)."""
    if not target or len(target) > MAX_NEXT:
        return url_for("inbox.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ch < " " or ch == "\x7f" for ch in target):  # CR/LF would split the Location header
        return url_for("inbox.index")
    return target
