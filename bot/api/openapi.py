"""The API's OpenAPI description, generated from its routes and their models, and a readable page built from it."""

from __future__ import annotations

import html
import re
from typing import Any, Iterable, Mapping

from pydantic import BaseModel, TypeAdapter

from bot.api.models import ErrorOut
from core.errors import ErrorKind

REF = "#/components/schemas/{model}"
INFO = {
    "title": "sm local API",
    "version": "1",
    "description": "Served on a Unix socket (0600) in the state dir. "
                   "Authenticate with `Authorization: Bearer <SM_TOKEN or owner token>`. "
                   "Errors are JSON: {\"error\": <what to do>, \"status\": <the HTTP status>}.",
}


class _Schemas:
    """Components, each model once, by name; anything else inline."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, kind: Any, mode: str) -> dict[str, Any]:
        schema = TypeAdapter(kind).json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
        self.components.update(schema.pop("$defs", {}))
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            self.components[kind.__name__] = schema
            return {"$ref": REF.format(model=kind.__name__)}
        return schema


def _error(schemas: _Schemas) -> dict[str, Any]:
    return {"description": "error",
            "content": {"application/json": {"schema": schemas.of(ErrorOut, "serialization")}}}


def openapi_spec(routes: Iterable[Any], status: Mapping[Any, int],
                 path_parameters: Mapping[str, str]) -> dict[str, Any]:
    """OpenAPI 3.1 (whose schemas are JSON Schema, as pydantic writes them) for `routes` (bot.api.app.Route)."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.response is not None:
            content = {route.content: {"schema": schemas.of(route.response, "serialization")}}
        else:
            content = {route.content: {"schema": {"type": "string"}}}
        responses: dict[str, Any] = {str(route.status): {"description": "ok", "content": content},
                                     "401": _error(schemas)}
        codes = {status[kind] for kind in route.errors}
        if route.body is not None or route.query is not None:
            codes.add(status[ErrorKind.INVALID])
        for code in sorted(codes):
            responses[str(code)] = _error(schemas)
        parameters = [{"name": name, "in": "path", "required": True,
                       "description": path_parameters.get(name, name), "schema": {"type": "string"}}
                      for name in re.findall(r"{(\w+)}", route.path)]
        if route.query is not None:
            query = route.query.model_json_schema(ref_template=REF)
            for name, field in route.query.model_fields.items():
                param = {"name": name, "in": "query", "required": field.is_required(),
                         "schema": query["properties"][name]}
                if field.description:
                    param["description"] = field.description
                parameters.append(param)
        op: dict[str, Any] = {"summary": route.summary, "responses": responses}
        if parameters:
            op["parameters"] = parameters
        if route.body is not None:
            required = any(f.is_required() for f in route.body.model_fields.values())
            op["requestBody"] = {"required": required,
                                 "content": {"application/json": {"schema": schemas.of(route.body, "validation")}}}
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
                       "schemas": dict(sorted(schemas.components.items()))},
        "security": [{"token": []}],
        "paths": paths,
    }


def docs_html(spec: dict[str, Any]) -> str:
    schemas = spec["components"]["schemas"]
    rows = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = ", ".join(op["responses"])
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" in body:
                body = schemas[body["$ref"].rsplit("/", 1)[1]]
            required = set(body.get("required", []))
            fields = ", ".join(name + ("*" if name in required else "") for name in body.get("properties", {}))
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td><td>{html.escape(fields)}</td><td>{codes}</td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>sm API</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "td{padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}</style></head><body>"
        f"<h1>sm local API</h1><p>{html.escape(spec['info']['description'])}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Body fields marked * are required.</p>"
        "<table><tr><th>Method</th><th>Path</th><th>What</th><th>Body</th><th>Status codes</th></tr>"
        + "".join(rows) + "</table></body></html>"
    )
