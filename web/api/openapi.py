"""The OpenAPI 3.1 document of /api, served at /api/openapi.json (a test checks it covers every route)."""
from __future__ import annotations

from typing import Any

from flask import jsonify, url_for
from flask.typing import ResponseReturnValue

from engine.org import tokens
from web.api.blueprint import DEFAULT_RATE_LIMIT, bp

JSON = "application/json"
PROBLEM = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


TIME = _nullable("string", format="date-time")
SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["type", "title", "status", "detail", "error", "message"],
              "additionalProperties": True,
              "description": "Every error is an RFC 9457 problem (type, title, status, detail, instance) with a "
                             "stable code (`error`), the message (= detail) and details such as ids or the field. "
                             "The message is in the caller's saved language (its Chinese or its English; each "
                             "`fields[].message` too), or Chinese then English for a caller who has not chosen one.",
              "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                             "status": {"type": "integer"}, "detail": {"type": "string"},
                             "instance": {"type": "string"},
                             "error": {"type": "string", "examples": ["not_your_task"]},
                             "message": {"type": "string"}, "field": {"type": "string"}}},
    "FieldError": {"type": "object", "required": ["field", "message"],
                   "properties": {"field": {"type": "string"}, "message": {"type": "string"}}},
    "FormInvalid": {"allOf": [_ref("Error"), {"type": "object", "properties": {
        "fields": {"type": "array", "items": _ref("FieldError"),
                   "description": "form_invalid: each field's problem"},
        "bpmn_id": {"type": "string", "description": "a service task refused the submission: that step (nothing "
                                                     "was kept; correct the field and submit again)"}}}]},
    "Task": {"type": "object", "required": ["id", "instance_id", "name", "state"], "properties": {
        "id": {"type": "integer"}, "instance_id": {"type": "integer"}, "name": {"type": "string"},
        "bpmn_id": {"type": "string"}, "process_key": {"type": "string"}, "lane": _nullable("string"),
        "state": {"type": "string", "enum": ["ready", "suspended", "pending", "completed", "cancelled"]},
        "kind": {"type": "string", "enum": ["bpmn", "cosign"]}, "assignee": _nullable("string"),
        "mine": {"type": "boolean"}, "claimable": {"type": "boolean"}, "priority": {"type": "integer"},
        "sla": _nullable("string"), "created_at": TIME, "due_at": TIME, "warn_at": TIME, "completed_at": TIME,
        "completed_by": _nullable("string"), "form_schema": _nullable("string"), "blocked": {"type": "boolean"},
        "delegation_state": _nullable("string")}},
    "TaskDetail": {"allOf": [_ref("Task"), {"type": "object", "properties": {
        "form": {"description": "The task's JSON Schema, or null", "type": ["object", "null"]},
        "form_ui": {"description": "Its UI schema, or null", "type": ["object", "null"]},
        "form_problem": _nullable("string", description="Why `form` and `form_ui` are null although the task names "
                                                        "form files: a stored file past the form limits (deployed "
                                                        "before them), named; completing the task is refused (422)"),
        "fixed": {"type": "object", "description": "Fields of the form the case fixes (an approval started for a "
                                                   "project: project_code and stage), by name: shown read-only in "
                                                   "`form_ui`; left out they take these values, another value is "
                                                   "refused (422, form_invalid naming the field)"},
        "instance": {"type": "object", "properties": {
            "id": {"type": "integer"}, "title": {"type": "string"}, "status": {"type": "string"},
            "business_key": _nullable("string"), "process_key": {"type": "string"}}},
        "permitted": {"type": "array", "items": {"type": "string"},
                      "description": "Operations the access table allows the caller on this open task"}}}]},
    "TaskPage": {"type": "object", "required": ["items", "next_cursor"], "properties": {
        "items": {"type": "array", "items": _ref("Task")},
        "next_cursor": _nullable("string", description="Pass as `after` for the next page; null at the end")}},
    "Completion": {"type": "object", "required": ["instance_id", "status"], "properties": {
        "instance_id": {"type": "integer"}, "status": {"type": "string"}, "incident": _nullable("string"),
        "next_tasks": {"type": "array", "items": {"type": "integer"}}}},
    "Incident": {"type": "object", "properties": {
        "id": {"type": "integer"}, "bpmn_id": _nullable("string"), "kind": {"type": "string"},
        "message": {"type": "string"}, "created_at": TIME, "resolved_at": TIME}},
    "Instance": {"type": "object", "required": ["id", "process_key", "title", "status"], "properties": {
        "id": {"type": "integer"}, "process_key": {"type": "string"}, "process_name": {"type": "string"},
        "version": {"type": "integer"}, "title": {"type": "string"}, "business_key": _nullable("string"),
        "status": {"type": "string", "enum": ["running", "suspended", "incident", "completed", "terminated"]},
        "started_by": _nullable("string"), "started_at": TIME, "updated_at": TIME, "ended_at": TIME}},
    "InstanceDetail": {"allOf": [_ref("Instance"), {"type": "object", "properties": {
        "tasks": {"type": "array", "items": _ref("Task")},
        "incidents": {"type": "array", "items": _ref("Incident")},
        "data_visible": {"type": "boolean",
                         "description": "Admins, process owners and auditors: whoever the instance page shows the raw "
                                        "流程数据 to (not a starter, from the staff or from outside)"},
        "data": {"type": "object", "description": "Only when data_visible: the process variables as stored (keys, "
                                                  "choice codes, usernames)"},
        "next_task_id": {"type": ["integer", "null"], "description": "After a start: the starter's first task"}}}]},
    "InstancePage": {"type": "object", "required": ["items", "next_cursor"], "properties": {
        "items": {"type": "array", "items": _ref("Instance")}, "next_cursor": _nullable("string")}},
    "Process": {"type": "object", "required": ["key", "name", "version"], "properties": {
        "key": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "integer"},
        "deployed_at": TIME, "start_form": {"type": ["object", "null"]}, "start_form_ui": {"type": ["object", "null"]},
        "start_form_problem": _nullable("string", description="Why the start form is null: a stored file past the "
                                                              "form limits, named; starting is refused (422)")}},
    "ProcessList": {"type": "object", "required": ["items"], "properties": {
        "items": {"type": "array", "items": _ref("Process")}}},
    "CompleteRequest": {"type": "object", "properties": {
        "data": {"type": "object", "description": "The form's fields, validated against the task's JSON Schema"},
        "opinion": {"type": "string", "maxLength": 4000, "description": "审批意见"}}},
    "TransferRequest": {"type": "object", "required": ["to_username"], "properties": {
        "to_username": {"type": "string"}, "note": {"type": "string", "maxLength": 4000}}},
    "SendBackRequest": {"type": "object", "required": ["reason"], "properties": {
        "to": {"oneOf": [{"type": "string", "enum": ["previous", "applicant"]}, {"type": "integer"}],
               "default": "previous"},
        "reason": {"type": "string", "maxLength": 4000},
        "confirm": {"type": "boolean", "default": False,
                    "description": "Required when the 退回 cancels other open tasks (see send-back/preview); "
                                   "without it: 409 confirmation_required listing them"}}},
    "SendBackPreviewRequest": {"type": "object", "properties": {
        "to": {"oneOf": [{"type": "string", "enum": ["previous", "applicant"]}, {"type": "integer"}],
               "default": "previous"}}},
    "SendBackPreview": {"type": "object", "required": ["task_id", "target", "cancels"], "properties": {
        "task_id": {"type": "integer"},
        "target": {"type": "object", "properties": {"id": {"type": "integer"}, "bpmn_id": {"type": "string"},
                                                    "name": {"type": "string"}}},
        "cancels": {"type": "array", "description": "Open tasks (parallel branches) the 退回 would cancel",
                    "items": {"type": "object", "properties": {
                        "task_id": {"type": "integer"}, "bpmn_id": {"type": "string"}, "name": {"type": "string"}}}}}},
    "DelegateRequest": {"type": "object", "required": ["to_username"], "properties": {
        "to_username": {"type": "string"}, "note": {"type": "string", "maxLength": 4000}}},
    "ResolveRequest": {"type": "object", "required": ["opinion"], "properties": {
        "opinion": {"type": "string", "maxLength": 4000}}},
    "CosignRequest": {"type": "object", "required": ["usernames", "position"], "properties": {
        "usernames": {"type": "array", "items": {"type": "string"}},
        "position": {"type": "string", "enum": ["before", "after"]}, "note": {"type": "string", "maxLength": 4000}}},
    "CosignResult": {"type": "object", "required": ["task_id", "cosign_task_ids"], "properties": {
        "task_id": {"type": "integer"}, "cosign_task_ids": {"type": "array", "items": {"type": "integer"}}}},
    "CosignRemoved": {"type": "object", "required": ["task_id", "removed"], "properties": {
        "task_id": {"type": "integer"}, "removed": {"type": "integer"}}},
    "UrgeRequest": {"type": "object", "properties": {"message": {"type": "string", "maxLength": 2000}}},
    "UrgeResult": {"type": "object", "required": ["task_id", "notified"], "properties": {
        "task_id": {"type": "integer"}, "notified": {"type": "integer"}}},
    "ExtensionRequestBody": {"type": "object", "required": ["due_date", "reason"], "properties": {
        "due_date": {"type": "string", "format": "date", "description": "The day asked for: later than today and "
                                                                         "than the current deadline"},
        "reason": {"type": "string", "minLength": 1, "maxLength": 2000}}},
    "ExtensionRequest": {"type": "object", "required": ["id", "task_id", "requested_due_at", "reason", "status"],
                         "properties": {
        "id": {"type": "integer"}, "task_id": {"type": "integer"},
        "requested_due_at": {"type": "string", "format": "date-time"}, "reason": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "granted", "refused"]}, "created_at": TIME}},
    "StartRequest": {"type": "object", "properties": {
        "data": {"type": "object", "description": "Start data; validated by the start event's form, if any"},
        "title": {"type": "string", "maxLength": 300}, "business_key": {"type": "string", "maxLength": 200}}},
}


def _error(description: str, schema: str = "Error", headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {PROBLEM: {"schema": _ref(schema)}}}
    if headers:
        out["headers"] = headers
    return out


RESPONSES = {
    "BadRequest": _error("Malformed request or missing CSRF token (session-cookie callers)"),
    "Unauthorized": _error("No valid bearer token and no session; `token_expired`: the token is past its expiry; "
                           "`password_change_required`: its owner's password was reset by an administrator"),
    "Forbidden": _error("Not allowed on an object the caller may see (e.g. a task they are not a candidate for: "
                        "not_your_task, the message says why); on a POST with a read-only token: token_read_only, "
                        "before anything is looked at"),
    "NotFound": _error("No such object — or a task or instance the caller may not see at all: the same answer "
                       "(task_not_found / instance_not_found, the same body), so ids cannot be walked"),
    "Conflict": _error("Someone else acted first (concurrent_modification, task_already_done, already_claimed…)"),
    "Unprocessable": _error("Invalid input; form_invalid lists each field", "FormInvalid"),
    "RateLimited": _error(f"Too many requests ({DEFAULT_RATE_LIMIT} per token by default)"),
    "Unavailable": _error("The database connection was lost: retry after `Retry-After` seconds (POSTs with "
                          "the same Idempotency-Key)",
                          headers={"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}}),
}
PARAMETERS = {
    "TaskId": {"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer"}},
    "CosignId": {"name": "cosign_id", "in": "path", "required": True, "schema": {"type": "integer"}},
    "InstanceId": {"name": "instance_id", "in": "path", "required": True, "schema": {"type": "integer"}},
    "ProcessKey": {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}},
    "Limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200,
                                                         "default": 50}},
    "After": {"name": "after", "in": "query", "description": "The next_cursor of the previous page",
              "schema": {"type": "string"}},
    "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": False,
                       "description": "1–255 printable ASCII characters. A retry with the same key gets the first "
                                      "answer (header `Idempotent-Replayed: true`) and the work is done once; the "
                                      "same key with another body is a 422 (idempotency_key_reused).",
                       "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"}},
}


def _param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _op(summary: str, ok: str, *, status: str = "200", params: tuple[str, ...] = (), request: str | None = None,
        errors: tuple[str, ...] = (), op_id: str) -> dict[str, Any]:
    codes = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound", "409": "Conflict",
             "422": "Unprocessable", "429": "RateLimited", "503": "Unavailable"}
    wanted = ("400", "401", "429", "503", *errors)
    responses: dict[str, Any] = {status: {"description": "OK", "content": {JSON: {"schema": _ref(ok)}}}}
    for code in sorted(set(wanted)):
        responses[code] = {"$ref": f"#/components/responses/{codes[code]}"}
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses}
    if params:
        op["parameters"] = [_param(p) for p in params]
    if request:
        op["requestBody"] = {"required": False, "content": {JSON: {"schema": _ref(request)}}}
    return op


def _post(op: dict[str, Any]) -> dict[str, Any]:
    """A POST: takes an Idempotency-Key; the same key with another body is a 422."""
    op["parameters"] = [*op.get("parameters", []), _param("IdempotencyKey")]
    op["responses"].setdefault("422", {"$ref": "#/components/responses/Unprocessable"})
    return op


TASK_ERRORS = ("403", "404", "409")


def _task_op(name: str, summary: str, ok: str = "TaskDetail", request: str | None = None,
             errors: tuple[str, ...] = TASK_ERRORS) -> dict[str, Any]:
    return {"post": _post(_op(summary, ok, params=("TaskId",), request=request, errors=errors,
                              op_id=f"task_{name}"))}


PATHS: dict[str, Any] = {
    "/api/tasks": {"get": _op("The caller's inbox (待办): assigned and claimable, due first", "TaskPage",
                              params=("Limit", "After"), errors=("422",), op_id="task_list")},
    "/api/tasks/{task_id}": {"get": _op("One task with its form", "TaskDetail", params=("TaskId",),
                                        errors=("404",), op_id="task_show")},
    "/api/tasks/{task_id}/claim": _task_op("claim", "Claim (认领)"),
    "/api/tasks/{task_id}/unclaim": _task_op("unclaim", "Give back to the candidates (取消认领)"),
    "/api/tasks/{task_id}/complete": _task_op("complete", "Complete with form data and an opinion", "Completion",
                                              "CompleteRequest", errors=(*TASK_ERRORS, "422")),
    "/api/tasks/{task_id}/transfer": _task_op("transfer", "Hand over to another user (转办)",
                                              request="TransferRequest", errors=(*TASK_ERRORS, "422")),
    "/api/tasks/{task_id}/send-back": _task_op("send_back", "Send back to an earlier step (退回); returns it",
                                               request="SendBackRequest", errors=(*TASK_ERRORS, "422")),
    "/api/tasks/{task_id}/send-back/preview": _task_op(
        "send_back_preview", "Where a 退回 goes and which parallel tasks it cancels; changes nothing",
        "SendBackPreview", "SendBackPreviewRequest", errors=(*TASK_ERRORS, "422")),
    "/api/tasks/{task_id}/delegate": _task_op("delegate", "Ask another user to handle it and give it back (委派)",
                                              request="DelegateRequest", errors=(*TASK_ERRORS, "422")),
    "/api/tasks/{task_id}/resolve": _task_op("resolve", "The delegate gives it back with an opinion (委派退回)",
                                             request="ResolveRequest", errors=(*TASK_ERRORS, "422")),
    "/api/tasks/{task_id}/cosigners": _task_op("add_cosigners", "Add co-signers before or after me (加签)",
                                               "CosignResult", "CosignRequest", errors=(*TASK_ERRORS, "422")),
    "/api/tasks/{task_id}/cosigners/{cosign_id}/remove": {"post": _op(
        "Remove a co-signer who has not signed (减签)", "CosignRemoved", params=("TaskId", "CosignId"),
        errors=(*TASK_ERRORS, "422"), op_id="task_remove_cosigner")},
    "/api/tasks/{task_id}/urge": _task_op("urge", "Remind the holder (催办), once an hour", "UrgeResult",
                                          "UrgeRequest", errors=("403", "404", "409")),
    "/api/tasks/{task_id}/extension-requests": {"post": _post(_op(
        "Ask for a later deadline (申请延期), the step's holder; 督办 decides it. One pending at a time (409)",
        "ExtensionRequest", status="201", params=("TaskId",), request="ExtensionRequestBody",
        errors=(*TASK_ERRORS, "422"), op_id="task_request_extension"))},
    "/api/instances": {"get": {**_op("Instances the caller may see, newest first", "InstancePage",
                                     params=("Limit", "After"), errors=("422",), op_id="instance_list"),
                               "parameters": [_param("Limit"), _param("After"),
                                              {"name": "process", "in": "query", "schema": {"type": "string"}},
                                              {"name": "status", "in": "query", "schema": {"type": "string"}},
                                              {"name": "mine", "in": "query", "schema": {"type": "boolean"}},
                                              {"name": "q", "in": "query", "schema": {"type": "string"}}]}},
    "/api/instances/{instance_id}": {"get": _op("One instance: tasks, incidents, data (if allowed)", "InstanceDetail",
                                                params=("InstanceId",), errors=("404",),
                                                op_id="instance_show")},
    "/api/processes": {"get": _op("Processes the caller may start (latest versions)", "ProcessList",
                                  op_id="process_list")},
    "/api/processes/{key}/instances": {"post": _post(_op("Start an instance", "InstanceDetail", status="201",
                                                         params=("ProcessKey",), request="StartRequest",
                                                         errors=("403", "404", "409", "422"),
                                                         op_id="process_start"))},
    "/api/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {JSON: {"schema": {"type": "object"}}}}}}},
}


# A token's scope (engine/org/tokens.py), as OpenAPI 3.1 lets an http scheme's requirement name roles: a read-only
# token may call the GETs (and HEAD, OPTIONS); everything else takes a read-write one.
READ_SCOPE, WRITE_SCOPE = tokens.READ, tokens.READ_WRITE
TOKEN_SCOPES = (f"Each token has a scope, chosen when it is issued: `{READ_SCOPE}` (read-only: GET, HEAD and OPTIONS; "
                f"any other method is refused 403 `token_read_only` before anything is looked at) or `{WRITE_SCOPE}` "
                "(everything its user may do). Each operation's `security` names the scope it takes. Tokens issued "
                "before scopes existed are read_write.")


def _scoped(paths: dict[str, Any]) -> dict[str, Any]:
    """Return the paths with each operation's security: the token scope it takes; a changing one may answer 403."""
    out: dict[str, Any] = {}
    for path, ops in paths.items():
        out[path] = {}
        for method, op in ops.items():
            if method not in ("get", "post", "put", "patch", "delete") or op.get("security") == []:
                out[path][method] = op
                continue
            scope = READ_SCOPE if method == "get" else WRITE_SCOPE
            responses = dict(op["responses"])
            if method != "get":
                responses.setdefault("403", {"$ref": "#/components/responses/Forbidden"})
            out[path][method] = {**op, "responses": dict(sorted(responses.items())),
                                 "security": [{"bearerAuth": [scope]}, {"sessionCookie": []}]}
    return out


def document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "jzflow 胶州经济工作流 API", "version": "1.0.0",
                 "description": "Tasks, instances and processes. Send `Authorization: Bearer <token>` (tokens are "
                                "made on /admin/tokens). A browser session works too; its POSTs need the "
                                "`X-CSRFToken` header. Times are ISO 8601 UTC. Errors are RFC 9457 problem details "
                                "(application/problem+json) with a stable `error` code. POSTs accept an "
                                "`Idempotency-Key`; a 503 carries `Retry-After`. " + TOKEN_SCOPES},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"sessionCookie": []}],
        "paths": _scoped(PATHS),
        "components": {
            "schemas": SCHEMAS, "responses": RESPONSES, "parameters": PARAMETERS,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API token (jzf_…). " + TOKEN_SCOPES},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "session",
                                  "description": "The web session; POSTs also need the X-CSRFToken header"}},
        },
    }


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    return jsonify(document())


@bp.get("", strict_slashes=False)
def landing() -> ResponseReturnValue:
    """The API's front door: what it is, where its description is, how to authenticate (no login needed)."""
    return jsonify(name="jzflow API", description="胶州经济工作流 JSON API",
                   openapi=url_for("api.openapi", _external=False),
                   authentication="Authorization: Bearer <token> (管理 → API令牌; read-only tokens may only GET), "
                                  "or a logged-in browser session",
                   errors="application/problem+json (RFC 9457)")
