"""The API's OpenAPI description, and a readable page built from it."""

from __future__ import annotations

import html
from typing import Any

_SESSION = {"$ref": "#/components/schemas/Session"}
_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_REF = {"name": "ref", "in": "path", "required": True, "description": "session id or name",
        "schema": {"type": "string"}}


def _op(summary: str, ok: int = 200, schema: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None,
        errors: tuple[int, ...] = (401,)) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {
        str(ok): {"description": "ok", "content": {"application/json": {"schema": schema or {"type": "object"}}}},
        **{str(code): _ERROR for code in errors},
    }}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _obj(**props: Any) -> dict[str, Any]:
    required = [k.rstrip("_") for k, v in props.items() if k.endswith("_")]
    schema: dict[str, Any] = {"type": "object", "properties": {k.rstrip("_"): v for k, v in props.items()}}
    if required:
        schema["required"] = required
    return schema


STR, NUM = {"type": "string"}, {"type": "number"}


def openapi_spec() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "sm local API", "version": "1",
                 "description": "Served on a Unix socket (0600) in the state dir. "
                                "Authenticate with `Authorization: Bearer <SM_TOKEN or owner token>`."},
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _obj(error=STR, status={"type": "integer"}),
                "Session": _obj(id=STR, name=STR, parent_id=STR, provider=STR, workdir=STR,
                                tmux_session=STR, pane_id=STR, state=STR, state_reason=STR,
                                created_at=NUM, last_activity=NUM),
            },
        },
        "security": [{"token": []}],
        "paths": {
            "/health": {"get": _op("Liveness, number of live sessions and the server's version")},
            "/me": {"get": _op("Who the token belongs to")},
            "/shutdown": {"post": _op("Owner only: stop sm-bot as SIGTERM does; agents keep running",
                                      ok=202, errors=(401, 403))},
            "/status": {"get": _op("Sessions, queue depths and undelivered messages")},
            "/sessions": {
                "get": _op("Live sessions", schema={"type": "array", "items": _SESSION},
                           params=[{"name": "scope", "in": "query", "schema": {"enum": ["all", "children", "others"]}}]),
                "post": _op("Spawn an agent (as a child of the calling agent)", 201, _SESSION,
                            _obj(prompt=STR, name=STR, provider={"enum": ["claude", "codex", "gemini", "shell"]},
                                 dir=STR, wait=NUM), errors=(401, 409, 422)),
            },
            "/sessions/{ref}": {
                "get": _op("One session, with its attach command", schema=_SESSION, params=[_REF], errors=(401, 404)),
                "patch": _op("Rename", schema=_SESSION, body=_obj(name_=STR), params=[_REF], errors=(401, 403, 404, 409, 422)),
                "delete": _op("Kill (yourself or a descendant; the owner: any)", schema=_SESSION,
                              params=[_REF], errors=(401, 403, 404)),
            },
            "/sessions/{ref}/input": {"post": _op(
                "Queue a message (sm send)", 202, body=_obj(text_=STR, mode={"enum": ["sequential", "important", "urgent"]}),
                params=[_REF], errors=(401, 404, 413, 422))},
            "/sessions/{ref}/watch": {"post": _op(
                "Wake the caller when the session is idle with nothing queued, or at the timeout (sm wait)",
                202, body=_obj(seconds_=NUM), params=[_REF], errors=(401, 404, 422))},
            "/sessions/{ref}/clear": {"post": _op("Clear the agent's context, then send the optional prompt", 202,
                                                  body=_obj(prompt=STR), params=[_REF], errors=(401, 403, 404))},
            "/sessions/{ref}/output": {"get": _op("Screen tail, or the last assistant messages", params=[
                _REF, {"name": "lines", "in": "query", "schema": {"type": "integer"}},
                {"name": "transcript", "in": "query", "schema": {"type": "boolean"}}], errors=(401, 404, 422))},
            "/sessions/{ref}/what": {"get": _op("A short summary of what the agent is doing", params=[_REF],
                                                errors=(401, 404))},
            "/hooks/{event}": {"post": _op("A Claude Code hook event from the calling agent", params=[
                {"name": "event", "in": "path", "required": True, "schema": STR}], errors=(401, 403, 422))},
            "/spool/drain": {"post": _op("Replay hook events spooled while the server was unreachable")},
            "/locks": {
                "get": _op("Workspace locks and their holders"),
                "post": _op("Take your workspace's lock (sm lock)", 201, body=_obj(reason_=STR),
                            errors=(401, 409, 422)),
                "delete": _op("Release a lock: yours, or (owner) any by ?workspace=", params=[
                    {"name": "workspace", "in": "query", "schema": STR}], errors=(401, 403, 404)),
            },
            "/locks/auto": {"post": _op("The PreToolUse file-write hook: take the lock, waiting up to "
                                        "SM_LOCK_WAIT, or answer with a deny decision")},
            "/events": {"get": {"summary": "Server-sent events: every engine event",
                                "responses": {"200": {"description": "text/event-stream"}}}},
            "/openapi.json": {"get": _op("This description of the API")},
            "/docs": {"get": {"summary": "This description of the API as a readable page",
                              "responses": {"200": {"description": "ok",
                                                    "content": {"text/html": {"schema": STR}}},
                                            "401": _ERROR}}},
        },
    }


def _docs_html() -> str:
    spec = openapi_spec()
    rows = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = ", ".join(op["responses"])
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            fields = ", ".join(body.get("properties", {}))
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td><td>{html.escape(fields)}</td><td>{codes}</td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>sm API</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "td{padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}</style></head><body>"
        f"<h1>sm local API</h1><p>{html.escape(spec['info']['description'])}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p>"
        "<table><tr><th>Method</th><th>Path</th><th>What</th><th>Body</th><th>Status codes</th></tr>"
        + "".join(rows) + "</table></body></html>"
    )


DOCS_HTML = _docs_html()
