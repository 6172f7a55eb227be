"""The OpenAPI document as the services really answer (schemathesis holds them to it).

FastAPI documents what it knows: its own 422 body (`HTTPValidationError`, `application/json`) and
what each route declares. But every error leaves as problem+json (shared/problems.py), and some
answers can come from any route whatever it declares: 503 when Redis is down, 401 when a token is
configured, 404 for an unknown id, 429 when the stream limits are reached. `document` rewrites
the generated document once, in place, so each service's routes stay declared where they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from shared.schemas import Problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_JSON = "application/problem+json"
EVENT_STREAMS = frozenset({"/api/events", "/api/stream"})  # SSE, CONTRACT §3
UNGUARDED = frozenset({"/healthz", "/readyz", "/metrics"})  # probes: never behind a token
SSE_MESSAGE = {  # one message of the stream (the fields a client's parser hands over)
    "type": "object",
    "properties": {
        "event": {"type": "string", "description": "absent on /api/events (unnamed messages)"},
        "data": {"type": "string", "description": "JSON"},
        "id": {"type": "string", "description": "opaque resume cursor; absent on ping"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}
READY_BODY = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
# What a route answers beyond the generic rules below, where it does not say so itself.
EXTRA: dict[tuple[str, str], dict[str, str]] = {
    ("post", "/api/reload"): {"422": "the config file is invalid; nothing was applied"},
}
GENERIC = {
    "401": "missing or wrong bearer token (when one is configured)",
    "404": "no such item",
    "429": "too many live streams (per process or per client address); see Retry-After",
    "503": "Redis unreachable or too slow; see Retry-After",
}
_PARAM = re.compile(r"\{[^}]+\}")


def problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def _fix_operation(method: str, path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status, response in responses.items():
        content = response.get("content") or {}
        if status == "422" and "HTTPValidationError" in str(content):
            responses[status] = problem("request does not match the schema; `errors` lists where")
        elif PROBLEM_JSON in content:
            content.pop("application/json", None)  # never sent: errors are problem+json only
    wanted: list[str] = []
    if path not in UNGUARDED:
        wanted += ["401", "503"]
    if _PARAM.search(path):
        wanted.append("404")
    if path in EVENT_STREAMS:
        wanted.append("429")
        responses["200"] = {
            "description": "a Server-Sent Events stream (never ends on its own)",
            "content": {"text/event-stream": {"schema": SSE_MESSAGE}},
        }
    for status in wanted:
        responses.setdefault(status, problem(GENERIC[status]))
    for status, description in EXTRA.get((method, path), {}).items():
        responses.setdefault(status, problem(description))
    if path == "/readyz":
        body = {"content": {"application/json": {"schema": READY_BODY}}}
        responses["200"] = {"description": "ready", **body}
        responses["503"] = {"description": "not ready; see Retry-After", **body}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a FastAPI-generated document in place (see the module docstring)."""
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "responses" in operation:
                _fix_operation(method, path, operation)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "Problem" not in components:  # a service none of whose routes declared one itself
        problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(problem_schema.pop("$defs", {}))
        components["Problem"] = problem_schema
    text = str(schema.get("paths"))
    for name in ("HTTPValidationError", "ValidationError"):
        if name in components and f"/{name}'" not in text:
            del components[name]
    return schema


def install(app: FastAPI) -> None:
    """Make `app.openapi()` (and /openapi.json) serve the rewritten document."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    done = False

    def openapi() -> dict[str, Any]:
        nonlocal done
        schema = generate()  # FastAPI builds it once and caches it on the app
        if not done:
            document(schema)
            done = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
