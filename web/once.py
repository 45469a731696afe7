"""A create form sent twice — a double click, a resend after a slow answer — makes one row, not two.

A form that adds a row carries `once`, a key made when the page is drawn (`once_field()` in the template). The view
asks `replayed()` first: when this user's form with that key was answered already, it gets that answer's address
back (the row made then) instead of making a second. Otherwise it does its work and commits through
`commit_once(location)`, which stores the answer in the same transaction as the work, as the API's
`Idempotency-Key` does (`engine.org.idempotency`, the same records): a twin sent at the same moment waits for the
first's commit at its lookup, then finds the answer. A form without the key (a page from before it) works as before.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from flask import Flask, current_app, g, request
from markupsafe import Markup

from engine.errors import Conflict, InvalidInput
from engine.org import idempotency
from web.common import commit, commit_remembered, current_actor, db_session

FIELD = "once"


def once_field() -> Markup:
    """The hidden field a create form carries: a new key each time the page is drawn."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FIELD, secrets.token_hex(16))


def _pending(upload: tuple[str, bytes] | None = None, secret: tuple[str, ...] = ()) -> tuple[int, str, str] | None:
    raw = request.form.get(FIELD, "")
    user_id = current_actor().user_id
    if not raw or user_id is None:
        return None
    if len(raw) > 64 or not all(" " < ch <= "~" for ch in raw):
        raise InvalidInput("表单的 once 字段无效，请刷新页面后重新填写 (the form's once field is malformed; reload)",
                           field=FIELD)
    key = f"form:{raw}"
    sent = sorted((k, _keyed(v) if k in secret else v) for k, v in request.form.items(multi=True) if k != "csrf_token")
    if upload is not None:  # the file is part of the key: another file from the same page is another upload
        name, content = upload
        key += ":" + hashlib.sha256(name.encode("utf-8", "surrogatepass") + b"\0" + content).hexdigest()
    return user_id, key, idempotency.fingerprint(request.method, request.path, json.dumps(sent).encode())


def _keyed(value: str) -> str:
    """A secret field (a password) as it enters the stored fingerprint: keyed with the app's secret, so the record is
    no fast, unkeyed hash of it to guess at beside the user's slow one; the same value still gives the same print."""
    key = str(current_app.secret_key or "").encode()
    return hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def replayed(upload: tuple[str, bytes] | None = None) -> str | None:
    """The address this form was answered with already (nothing to do again), or None: do the work.

    `upload`: the file's name and content, for a form that sends one: the same file sent again is the repeat, another
    file from the same page a new upload (never dropped as a repeat).

    Raises: Conflict (the key came with another form: a page used again after it was sent; reload), InvalidInput
    """
    first = first_answer(upload)
    return None if first is None else str(first["location"])


def first_answer(upload: tuple[str, bytes] | None = None, secret: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """What this form was answered with already (its `location` and what `commit_once` kept besides), or None.

    `secret`: the fields (a password) that enter the stored fingerprint only keyed with the app's secret.

    Raises: Conflict, InvalidInput (as `replayed`)
    """
    pending = _pending(upload, secret)
    if pending is None:
        return None
    user_id, key, fingerprint = pending
    try:
        answer = idempotency.find(db_session(), user_id=user_id, key=key, fingerprint=fingerprint)
    except idempotency.IdempotencyKeyReused:
        raise Conflict("此表单已提交过，请刷新页面后重新填写 (this form was sent already; reload the page)",
                       field=FIELD) from None
    if answer is None:
        g.once = pending
        return None
    return dict(json.loads(answer.body))


def commit_once(location: str, **kept: str | int) -> str:
    """Commit the work with the address it is answered with; return the address to send the user to.

    `kept`: what a second copy is told besides the address (never a secret: it is stored as sent)."""
    first = commit_once_answer(location, **kept)
    return location if first is None else str(first["location"])


def commit_once_answer(location: str, **kept: str | int) -> dict[str, Any] | None:
    """Commit the work as `commit_once`; return None, or the first answer when a twin with the key committed first
    (this request's work is undone then: nothing of it may be shown)."""
    pending = g.pop("once", None)
    if pending is None:
        commit()
        return None
    first = commit_remembered(pending, idempotency.Answer(status=302,
                                                          body=json.dumps({**kept, "location": location})))
    return None if first is None else dict(json.loads(first.body))


def init_app(app: Flask) -> None:
    """Give the templates `once_field()`."""
    app.jinja_env.globals["once_field"] = once_field


__all__ = ["FIELD", "commit_once", "commit_once_answer", "first_answer", "init_app", "once_field", "replayed"]
