"""Input that no view may see: NUL bytes, lone surrogates, JSON nested too deep or holding NaN, ids beyond any column,
CRLF in redirects.

Checked once, before every view, so a new route is covered without remembering to: each refusal is a
400 naming the field (the database cannot store NUL in text, and deep JSON exhausts the stack later, in
the audit serialisation or the hash — as a 500, after work has been done).
"""
from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable
from typing import IO, Any, TypeVar

import flask
from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from engine.errors import InvalidInput

MAX_JSON_DEPTH = 64
# Half a surrogate pair, which JSON can escape ("\\ud800") and json.loads keeps: UTF-8 cannot encode it (a pair is one
# character once parsed, so only a lone half matches).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_ID = 2**31 - 1  # ids are INTEGER columns; a larger one cannot name a row (404, not a database error)


class BoundedInt(IntegerConverter):
    """`<int:…>` that matches only what an INTEGER column can hold."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


View = TypeVar("View", bound=Callable[..., Any])
BODY_LIMIT = "jzflow_body_limit"


class Request(flask.Request):
    """The app's request: the files of a view marked `small_body` are read into memory, never spooled to disk."""

    in_memory = False

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        if self.in_memory:  # bounded by the view's limit, which werkzeug enforces while it reads
            return io.BytesIO()
        return super()._get_file_stream(total_content_length, content_type, filename, content_length)


class BodyTooLarge(InvalidInput):
    """A body past the limit its view set (`small_body`)."""

    http_status = 413


def small_body(limit: int) -> Callable[[View], View]:
    """Bound a view's request body to `limit` bytes, files kept in memory (werkzeug spools those past 500 KB to a
    temporary file): an upload that is only read, never kept, touches no disk."""
    def mark(view: View) -> View:
        setattr(view, BODY_LIMIT, limit)
        return view
    return mark


def _bound_body() -> None:
    """Set the limit of a view marked `small_body` before anything (the form checks below, CSRF) reads the body."""
    limit = getattr(current_app.view_functions.get(request.endpoint or ""), BODY_LIMIT, None)
    if limit is None or not isinstance(request, Request):
        return
    request.max_content_length = limit
    request.in_memory = True
    try:
        request.form  # noqa: B018 (parsed here, where the limit's refusal can name itself)
    except RequestEntityTooLarge as exc:
        megabytes = max(1, limit // (1024 * 1024))
        raise BodyTooLarge(f"提交的文件过大：不能超过 {megabytes} MB (the file is larger than {megabytes} MB)",
                           field="file") from exc


class BadInput(InvalidInput):
    """Malformed request input, refused before any view ran."""

    code = "bad_input"
    http_status = 400


def depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Return how deep a parsed JSON value nests (stops counting past `limit`), without recursion.

    Raises: BadInput (a string holding NUL or a lone surrogate; NaN or ±Infinity, named by the key that holds it)
    """
    deepest, stack = 0, [(value, 1, "(body)")]
    while stack:
        item, level, name = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            if isinstance(item, dict):
                stack.extend((child, level + 1, str(key)) for key, child in item.items()
                             if isinstance(child, (dict, list, str, float)))
                stack.extend((key, level + 1, name) for key in item)
            else:
                stack.extend((child, level + 1, name) for child in item if isinstance(child, (dict, list, str, float)))
        elif isinstance(item, str):
            if "\x00" in item:
                raise BadInput("JSON 文本不能含 NUL 字符 (NUL byte in a JSON string)", field="(body)")
            if _LONE_SURROGATE.search(item):
                raise BadInput("JSON 文本不能含不成对的代理字符 (a lone surrogate escape in a JSON string)",
                               field="(body)")
        elif isinstance(item, float) and not math.isfinite(item):  # Python's json takes them; JSON has no such number
            shown = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
            raise BadInput(f"{name} 须为有限数值，不能是 {shown} (must be a finite number, not {shown})", field=name)
    return deepest


def check_json(raw: str) -> None:
    """Refuse a JSON body nested deeper than MAX_JSON_DEPTH or holding NUL, a lone surrogate, NaN or ±Infinity; syntax
    errors: the view.

    Raises: BadInput
    """
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise BadInput(f"JSON 嵌套超过 {MAX_JSON_DEPTH} 层 (nested deeper than {MAX_JSON_DEPTH})",
                       field="(body)") from exc
    except ValueError:
        return
    if depth(value) > MAX_JSON_DEPTH:
        raise BadInput(f"JSON 嵌套超过 {MAX_JSON_DEPTH} 层 (nested deeper than {MAX_JSON_DEPTH})", field="(body)")


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def check_request() -> None:
    """Refuse NUL (and, in the path, control characters) in the path, query, form fields and JSON body.

    Raises: BadInput
    """
    if any(ch < " " for ch in request.path):
        raise BadInput("地址含控制字符 (control character in the path)", field="(path)")
    _bound_body()
    # Only these two types have form fields or files (werkzeug parses no other): a JSON call does not build them.
    has_form = request.mimetype in _FORM_TYPES
    sources = (("query", request.args), ("form", request.form)) if has_form else (("query", request.args),)
    for where, values in sources:
        for name, value in values.items(multi=True):
            if "\x00" in name or "\x00" in value:
                shown = name.replace("\x00", "\\0")
                raise BadInput(f"{shown} 不能含 NUL 字符 (NUL byte in {where} field {shown})", field=shown)
    if has_form:
        for name, upload in request.files.items(multi=True):
            if "\x00" in (upload.filename or ""):
                raise BadInput(f"{name} 文件名不能含 NUL 字符 (NUL byte in a file name)", field=name)
    # Checked whether or not it came with a length: a chunked body has none, and it reaches the view all the same.
    if request.is_json and request.content_length != 0:
        raw = request.get_data(cache=True)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput("请求体不是 UTF-8 (the body is not UTF-8)", field="(body)") from exc
        check_json(text)


def id_arg(name: str) -> int | None:
    """Return an id query argument (None when absent).

    Raises: InvalidInput (not a whole number within an id's range)
    """
    raw = request.args.get(name)
    if not raw:
        return None
    if not raw.strip().isdigit() or int(raw) > MAX_ID:
        raise InvalidInput(f"{name} 须为有效编号 (must be an id, 0–{MAX_ID})", field=name)
    return int(raw)


def init_app(app: Flask) -> None:
    """Bound `<int:…>` path ids and check every request's input before its view."""
    app.url_map.converters["int"] = BoundedInt
    app.request_class = Request
    app.before_request(check_request)


def bearer_token() -> str | None:
    """Return the token of an `Authorization: Bearer <token>` header: None without the header, "" for another scheme."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _sep, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
