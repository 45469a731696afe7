"""Serve what users uploaded (attachments, deployed BPMN/DMN/form files) as inert downloads.

Nothing a user uploaded is ever executed or rendered active on the app's origin: every such response
is a download (`Content-Disposition: attachment`), carries a type from a short list of inert ones
(anything else becomes application/octet-stream), `X-Content-Type-Options: nosniff`, and a CSP that
sandboxes it and allows nothing, in case a browser shows it anyway. The modeller and the diagram
viewers read model files with fetch(), which ignores the disposition.
"""
from __future__ import annotations

from urllib.parse import quote

from flask import Response, request

from engine.tasks import uploads

SANDBOX = "sandbox; default-src 'none'"


def safe_type(declared: str | None) -> str:
    """Return the declared type if it is inert (engine.tasks.uploads.INERT_TYPES), else application/octet-stream."""
    base = uploads.safe_type(declared)
    return f"{base}; charset=utf-8" if base.startswith("text/") else base


def disposition(name: str) -> str:
    """Return an attachment Content-Disposition with an ASCII fallback and the UTF-8 name."""
    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)[:150] or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def user_file(body: bytes | str, name: str, declared_type: str | None = None, *, etag: str | None = None,
              max_age: int = 0) -> Response:
    """Return a response serving user-supplied content as an inert download."""
    response = Response(body, mimetype=None, content_type=safe_type(declared_type))
    harden(response, name)
    response.cache_control.private = True
    response.cache_control.max_age = max_age
    if etag:
        response.set_etag(etag)
        response.make_conditional(request)
    return response


def harden(response: Response, name: str) -> Response:
    """Put the download headers on a response that serves user-supplied content."""
    response.headers["Content-Disposition"] = disposition(name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = SANDBOX
    return response


__all__ = ["SANDBOX", "disposition", "harden", "safe_type", "user_file"]
