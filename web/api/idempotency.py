"""`Idempotency-Key` on the API's POSTs: a retried request gets the first answer, and the work runs once.

A POST with the header is looked up before its view: a stored answer is returned as it was (with
`Idempotent-Replayed: true`); the same key with another body is refused (422). Otherwise the view runs
and answers through `finish`, which stores the answer in the same transaction as the work and commits.
"""
from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, request
from flask.typing import ResponseReturnValue

from engine.org import idempotency
from web.api.blueprint import bp
from web.common import commit, commit_remembered, current_actor, db_session

HEADER = "Idempotency-Key"


def _response(answer: idempotency.Answer, *, replayed: bool = False) -> Response:
    response = Response(answer.body, status=answer.status, mimetype="application/json")
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.before_request
def _replay() -> ResponseReturnValue | None:
    if request.method != "POST" or HEADER not in request.headers:
        return None
    key = idempotency.check_key(request.headers[HEADER])
    fingerprint = idempotency.fingerprint(request.method, request.path, request.get_data(cache=True))
    user_id = current_actor().user_id
    assert user_id is not None  # an API caller is a user, never the system
    answer = idempotency.find(db_session(), user_id=user_id, key=key, fingerprint=fingerprint)
    if answer is not None:
        return _response(answer, replayed=True)
    g.idempotency = (user_id, key, fingerprint)
    return None


def finish(payload: Any, status: int = 200) -> Response:
    """Commit the request's work with its answer (and the answer's key, if one came); return the answer."""
    answer = idempotency.Answer(status=status, body=current_app.json.dumps(payload))
    pending = g.pop("idempotency", None)
    if pending is None:
        commit()
        return _response(answer)
    first = commit_remembered(pending, answer)
    return _response(answer) if first is None else _response(first, replayed=True)
