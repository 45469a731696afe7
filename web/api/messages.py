"""The API's messages and signals: publish a message (补正 material from a portal), broadcast a signal, look one up."""
from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

from engine.errors import InvalidInput, NotFound
from engine.runtime import messages, signals
from web.api import openapi
from web.api.blueprint import body, bp, text_field
from web.api.idempotency import finish
from web.common import current_actor, db_session


def _object(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} 必须是 JSON 对象 ({name} must be an object)", field=name)
    return value


def _ttl(data: dict[str, Any]) -> int | None:
    value = data.get("ttl")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("ttl 须为整数秒 (ttl: whole seconds)", field="ttl")
    return value


@bp.post("/messages")
def message_publish() -> ResponseReturnValue:
    data = body()
    out = messages.publish(db_session(), name=text_field(data, "name", required=True, max_length=messages.MAX_NAME),
                           actor=current_actor(), correlations=_object(data, "correlations"),
                           business_key=text_field(data, "business_key", max_length=200) or None,
                           payload=_object(data, "data"), ttl=_ttl(data),
                           message_id=text_field(data, "message_id", max_length=200) or None)
    return finish(out.to_dict(), 202 if out.status in ("buffered", "pending") else 200)


@bp.get("/messages/<int:message_id>")
def message_show(message_id: int) -> ResponseReturnValue:
    session = db_session()
    actor = current_actor()
    out = messages.describe(session, message_id)
    if not (actor.is_admin or messages.published_by(session, message_id) == actor.user_id):
        raise NotFound(f"消息不存在: {message_id}", message_id=message_id)  # another's message: not even its id
    return jsonify(out.to_dict())


@bp.post("/signals")
def signal_broadcast() -> ResponseReturnValue:
    data = body()
    out = signals.broadcast(db_session(), name=text_field(data, "name", required=True, max_length=messages.MAX_NAME),
                            actor=current_actor(), payload=_object(data, "data"))
    return finish(out.to_dict(), 202)


openapi.SCHEMAS.update({
    "MessageRequest": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "description": "The BPMN message's name"},
        "correlations": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]},
                         "description": "Correlation property id → value (compared as text)"},
        "business_key": {"type": "string", "maxLength": 200, "description": "Correlate by the instance's business key"},
        "data": {"type": "object", "description": "The payload; checked by the catch's messageSchema, if any"},
        "ttl": {"type": "integer", "minimum": 0,
                "description": "Seconds to keep it if nobody waits yet (default JZFLOW_MESSAGE_TTL_SECONDS); 0: "
                               "refuse (404 message_unmatched) instead, and, the waiting instance busy at every try, "
                               "409 message_busy instead of pending"},
        "message_id": {"type": "string", "maxLength": 200,
                       "description": "The sender's own id: the same sender's second message with it is answered "
                                      "as a duplicate of its first; other senders' ids are theirs"}}},
    "SignalRequest": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200}, "data": {"type": "object"}}},
    "MessageOutcome": {"type": "object", "required": ["id", "kind", "name", "status"], "properties": {
        "id": {"type": ["integer", "null"]}, "kind": {"type": "string", "enum": ["message", "signal"]},
        "name": {"type": "string"},
        "status": {"type": "string", "enum": ["delivered", "started", "buffered", "duplicate", "broadcast",
                                              "expired", "pending", "refused"]},
        "instance_id": {"type": ["integer", "null"]}, "expires_at": openapi.TIME,
        "waiting": {"type": "integer", "description": "Signals: instances it is delivered to by the worker"},
        "started": {"type": "array", "items": {"type": "integer"}},
        "reason": {"type": ["string", "null"],
                   "description": "Why the worker refused or expired a pending message: its payload, its sender, its "
                                  "time to live, or given up after its last try with the waiting instance busy at "
                                  "every one (an admin may route a refused one again)"}}},
})
openapi.PARAMETERS["MessageId"] = {"name": "message_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_publish = openapi._post(openapi._op(
    "Publish a message: delivered to the waiting instance it correlates with (200), starts a message start "
    "event's process (200), is kept until its time to live (202, buffered; 429 message_quota when the sender or the "
    "name keeps too many already), or, the waiting instance busy at every try, is delivered by the worker shortly "
    "(202, pending; ttl 0: 409 message_busy, nothing kept)", "MessageOutcome", request="MessageRequest",
    errors=("403", "404", "409", "422"), op_id="message_publish"))
_publish["responses"]["202"] = {"description": "Buffered, or pending for the worker", "content": {openapi.JSON: {
    "schema": openapi._ref("MessageOutcome")}}}
openapi.PATHS.update({
    "/api/messages": {"post": _publish},
    "/api/messages/{message_id}": {"get": openapi._op("What became of a message the caller sent", "MessageOutcome",
                                                      params=("MessageId",), errors=("404",), op_id="message_show")},
    "/api/signals": {"post": openapi._post(openapi._op(
        "Broadcast a signal: every waiting instance is resumed by the worker; signal start events start",
        "MessageOutcome", status="202", request="SignalRequest", errors=("403", "404", "422"),
        op_id="signal_broadcast"))},
})
