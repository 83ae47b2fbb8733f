"""The local HTTP API as a client sees it: raw HTTP over the real Unix socket (and TCP)."""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

import hooks
from bot.api.app import SPEC, build_app
from conftest import Server
from core.config import Settings
from core.engine import Engine
from core.store import Store

OWNER = object()  # "authenticate as the owner"


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX socket: real HTTP/1.1 framing, chunked bodies included."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        super().__init__("sm", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def json(self) -> Any:
        return json.loads(self.body)


def auth_headers(server: Server, token: Any) -> dict[str, str]:
    if token is OWNER:
        return {"Authorization": f"Bearer {server.owner_token()}"}
    if token is None:
        return {}
    return {"Authorization": f"Bearer {token}"}


def call(server: Server, method: str, path: str, body: Any = None, token: Any = OWNER,
         headers: dict[str, str] | None = None,
         conn: http.client.HTTPConnection | None = None) -> Reply:
    """One request. `body` may be raw bytes (sent as is) or anything JSON-encodable."""
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    all_headers = {**auth_headers(server, token), **(headers or {})}
    if body is not None:
        all_headers.setdefault("Content-Type", "application/json")
    conn = conn or UnixHTTPConnection(server.sock_path)
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read())
    finally:
        conn.close()


def assert_error(reply: Reply, status: int) -> str:
    """Errors are JSON {"error": <what to do>, "status": <the HTTP status>}; returns the message."""
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.content_type == "application/json", reply.headers
    data = reply.json()
    assert set(data) == {"error", "status"}, data
    assert data["status"] == status
    assert isinstance(data["error"], str) and data["error"]
    return data["error"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spawn_shell(server: Server, name: str) -> dict[str, Any]:
    session = server.json("spawn", "", "--provider", "shell", "--name", name)
    server.wait_state(name, "idle")
    return session


# -- authentication ----------------------------------------------------------------

PROTECTED = [
    ("GET", "/health"), ("GET", "/status"), ("GET", "/sessions"), ("POST", "/sessions"),
    ("GET", "/sessions/anything"), ("DELETE", "/sessions/anything"),
    ("POST", "/sessions/anything/input"), ("POST", "/hooks/Stop"),
    ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/events"), ("GET", "/no-such-route"),
]


def test_missing_or_invalid_token_is_a_json_401_on_every_endpoint(server: Server) -> None:
    for method, path in PROTECTED:
        body = {"text": "hi"} if method == "POST" else None
        missing = assert_error(call(server, method, path, body, token=None), 401)
        assert "missing token" in missing and "Authorization: Bearer" in missing
        assert assert_error(call(server, method, path, body, token="not-a-token"), 401) == "invalid token"
        # The owner token under another scheme is not a bearer token.
        basic = call(server, method, path, body, token=None,
                     headers={"Authorization": f"Basic {server.owner_token()}"})
        assert_error(basic, 401)
    assert server.json("status")["sessions"] == []  # nothing was spawned by the refused POSTs


def test_an_agents_own_token_is_accepted_and_identifies_it(server: Server) -> None:
    spawn_shell(server, "me")
    token = server.agent_env("me")["SM_TOKEN"]
    reply = call(server, "GET", "/me", token=token)
    assert reply.status == 200 and reply.json()["name"] == "me"
    assert call(server, "GET", "/me").json() == {"name": "owner"}


# -- malformed requests -------------------------------------------------------------


def test_a_body_that_is_not_json_is_400_and_not_an_object_is_422(server: Server) -> None:
    # Unreadable as JSON is a malformed request (400); JSON of the wrong shape is 422.
    for raw in (b"this is not json", b'{"prompt": "unterminated', b'{"text": "\xff\xfe"}', b'{"n": NaN}'):
        message = assert_error(call(server, "POST", "/sessions", raw), 400)
        assert "request body must be JSON" in message
    for raw in (b"[1, 2]", b'"a string"', b"null"):
        message = assert_error(call(server, "POST", "/sessions", raw), 422)
        assert "request body must be a JSON object" in message
    assert server.json("status")["sessions"] == []


def test_wrong_field_types_are_422_naming_the_field(server: Server) -> None:
    s = spawn_shell(server, "target")
    cases = [
        (f"/sessions/{s['id']}/watch", {"seconds": "x"}, "seconds"),
        (f"/sessions/{s['id']}/watch", {"seconds": True}, "seconds"),
        (f"/sessions/{s['id']}/watch", {}, "seconds"),
        (f"/sessions/{s['id']}/input", {"text": 5}, "text"),
        (f"/sessions/{s['id']}/input", {"text": ["a"]}, "text"),
        (f"/sessions/{s['id']}/input", {}, "text"),
        ("/sessions", {"provider": "shell", "name": 5}, "name"),
        ("/sessions", {"provider": "shell", "wait": "soon"}, "wait"),
    ]
    for path, body, name in cases:
        message = assert_error(call(server, "POST", path, body), 422)
        assert repr(name) in message, (path, body, message)
    assert [x["name"] for x in server.json("status")["sessions"]] == ["target"]


def test_unknown_provider_is_422_listing_the_choices(server: Server) -> None:
    message = assert_error(call(server, "POST", "/sessions", {"provider": "copilot", "prompt": "hi"}), 422)
    assert "copilot" in message
    for provider in ("claude", "codex", "gemini", "shell"):
        assert provider in message
    assert server.json("status")["sessions"] == []


def test_unknown_mode_is_422_listing_the_modes(server: Server) -> None:
    s = spawn_shell(server, "moded")
    message = assert_error(call(server, "POST", f"/sessions/{s['id']}/input",
                                {"text": "hi", "mode": "shouty"}), 422)
    for mode in ("sequential", "important", "urgent"):
        assert mode in message


def test_bad_query_parameters_are_422(server: Server) -> None:
    s = spawn_shell(server, "queried")
    assert "scope" in assert_error(call(server, "GET", "/sessions?scope=everyone"), 422)
    assert "lines" in assert_error(call(server, "GET", f"/sessions/{s['id']}/output?lines=many"), 422)


def test_text_with_a_lone_surrogate_is_422_not_a_server_error(server: Server) -> None:
    # What json.dumps makes of argv bytes that are not UTF-8 (Python decodes
    # them with surrogateescape): valid JSON, but not text a pane can take.
    s = spawn_shell(server, "surrogate")
    raw = b'{"text": "caf\\udce9"}'
    message = assert_error(call(server, "POST", f"/sessions/{s['id']}/input", raw), 422)
    assert "text" in message
    assert_error(call(server, "POST", "/sessions", b'{"provider": "shell", "prompt": "\\ud800"}'), 422)
    # The same through the CLI, with a Latin-1 byte on the command line.
    result = server.sm("send", "surrogate", b"caf\xe9")  # type: ignore[arg-type]
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "not valid UTF-8" in result.stderr
    assert "internal error" not in (server.state_dir / "sm-bot.log").read_text()


def test_unknown_session_is_404_on_get_delete_and_input(server: Server) -> None:
    for method, path, body in [
        ("GET", "/sessions/nosuch", None),
        ("DELETE", "/sessions/nosuch", None),
        ("POST", "/sessions/nosuch/input", {"text": "hello"}),
        ("PATCH", "/sessions/nosuch", {"name": "renamed"}),
        ("GET", "/sessions/nosuch/output", None),
    ]:
        message = assert_error(call(server, method, path, body), 404)
        assert "nosuch" in message, (method, path, message)


def test_unknown_route_and_wrong_method_are_json_errors(server: Server) -> None:
    assert_error(call(server, "GET", "/no-such-route"), 404)
    assert_error(call(server, "PUT", "/sessions"), 405)


# -- size limits --------------------------------------------------------------------


def test_message_over_the_size_limit_is_413_and_at_the_limit_is_queued(server_factory) -> None:
    server = server_factory(SM_MAX_MESSAGE_BYTES="1000")
    s = spawn_shell(server, "small")

    refused = server.sm("send", "small", "-", input=b"#" + b"x" * 1999)
    assert refused.returncode == 1
    err = refused.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "2000 bytes" in err and "limit is 1000" in err and "SM_MAX_MESSAGE_BYTES" in err

    message = assert_error(call(server, "POST", f"/sessions/{s['id']}/input", {"text": "y" * 2000}), 413)
    assert "limit is 1000" in message
    # Multi-byte text is measured in bytes, not characters: 334 x 3 bytes > 1000.
    assert_error(call(server, "POST", f"/sessions/{s['id']}/input", {"text": "\u20ac" * 334}), 413)

    accepted = server.sm("send", "small", "-", input=b"#" + b"x" * 999)
    assert accepted.returncode == 0, accepted.stderr
    assert b"queued message" in accepted.stdout


def test_spawn_prompt_over_the_size_limit_is_refused_before_anything_starts(server_factory) -> None:
    server = server_factory(SM_MAX_MESSAGE_BYTES="1000")
    message = assert_error(call(server, "POST", "/sessions",
                                {"provider": "shell", "name": "huge", "prompt": "z" * 2000}), 413)
    assert "limit is 1000" in message
    assert server.json("status")["sessions"] == []


def test_request_body_far_over_the_limit_is_a_json_413(server_factory) -> None:
    server = server_factory(SM_MAX_MESSAGE_BYTES="1000")
    s = spawn_shell(server, "flooded")
    reply = call(server, "POST", f"/sessions/{s['id']}/input", {"text": "q" * 200_000})
    assert "too large" in assert_error(reply, 413)


def test_binary_message_on_stdin_is_refused_with_a_clear_message(server_factory) -> None:
    server = server_factory(SM_MAX_MESSAGE_BYTES="1000")
    spawn_shell(server, "bin")
    result = server.sm("send", "bin", "-", input=b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    assert result.returncode == 1
    assert result.stderr.decode() == "sm: standard input is not UTF-8 text\n"
    assert result.stdout == b""
    assert server.session("bin")["queued"] == 0


# -- the description of the API -------------------------------------------------------


def served_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def test_openapi_json_is_an_openapi_3_document(server: Server) -> None:
    reply = call(server, "GET", "/openapi.json")
    assert reply.status == 200 and reply.content_type == "application/json"
    spec = reply.json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    for path, ops in spec["paths"].items():
        assert path.startswith("/")
        for method, op in ops.items():
            assert method in ("get", "post", "patch", "delete", "put"), (path, method)
            assert op["summary"] and op["responses"], (path, method)
            for name in (seg[1:-1] for seg in path.split("/") if seg.startswith("{")):
                params = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
                assert name in params, f"{method} {path} does not describe {{{name}}}"


async def test_every_registered_route_is_in_the_openapi_document_and_nothing_else(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SM_CONFIG", "/dev/null")
    settings = Settings(state_dir=tmp_path, tmux_socket="sm-test-routes-unused")
    store = await Store.open(settings.db_path)
    try:
        app = build_app(Engine(settings, store, sm_command="sm", hook_settings=hooks.settings_for("sm")))
        registered = {(route.method, route.resource.canonical) for route in app.router.routes()
                      if route.method != "HEAD"}
    finally:
        await store.close()
    assert registered == served_routes(SPEC)


def test_documented_read_endpoints_answer_as_described(server: Server) -> None:
    s = spawn_shell(server, "described")
    spec = call(server, "GET", "/openapi.json").json()
    exercised = 0
    for method, path in sorted(served_routes(spec)):
        if method != "GET" or path == "/events":
            continue
        reply = call(server, "GET", path.replace("{ref}", s["id"]))
        assert reply.status == 200, (path, reply.status, reply.body[:200])
        documented = spec["paths"][path]["get"]["responses"]["200"]
        if "application/json" in documented.get("content", {}):
            assert reply.content_type == "application/json", path
            reply.json()
        exercised += 1
    assert exercised >= 8
    assert call(server, "GET", f"/sessions/{s['id']}").json()["attach"][:2] == ["tmux", "-L"]


def body_schema(spec: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    return spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]


WRONG = {"string": 5, "number": "soon", "integer": "many", "boolean": "yes", "array": "not a list"}


def test_every_documented_body_is_what_the_endpoint_parses(server: Server) -> None:
    """/openapi.json is generated from the models the API parses with: what it
    says is required is refused when missing, and each field refuses the wrong type."""
    s = spawn_shell(server, "parsed")
    spec = call(server, "GET", "/openapi.json").json()
    checked = 0
    for method, path in sorted(served_routes(spec)):
        op = spec["paths"][path][method.lower()]
        if "requestBody" not in op:
            continue
        url = path.replace("{ref}", s["id"]).replace("{event}", "Stop")
        schema = body_schema(spec, op)
        required = schema.get("required", [])
        assert op["requestBody"]["required"] == bool(required), (method, path)
        if required:
            message = assert_error(call(server, method, url, {}), 422)
            for name in required:
                assert f"missing field {name!r}" in message, (path, message)
            assert "422" in op["responses"]
        for name, prop in schema.get("properties", {}).items():
            kinds = [prop.get("type")] + [alt.get("type") for alt in prop.get("anyOf", [])]
            kind = next((k for k in kinds if k in WRONG), None)
            assert kind, (path, name, prop)
            message = assert_error(call(server, method, url, {name: WRONG[kind]}), 422)
            assert f"field {name!r}" in message, (path, name, message)
            checked += 1
    assert checked >= 10
    assert [x["name"] for x in server.json("status")["sessions"]] == ["parsed"]  # nothing was done


def test_a_422_is_one_line_naming_the_field_and_what_was_wrong(server: Server) -> None:
    s = spawn_shell(server, "oneline")
    message = assert_error(call(server, "POST", f"/sessions/{s['id']}/watch", {"seconds": "soon"}), 422)
    assert message == "field 'seconds': Input should be a valid number (got 'soon')"
    message = assert_error(call(server, "POST", f"/sessions/{s['id']}/input", {"text": "x" * 500, "mode": 7}), 422)
    assert "\n" not in message and "field 'mode'" in message and len(message) < 200


def test_hooks_are_refused_from_the_owner(server: Server) -> None:
    message = assert_error(call(server, "POST", "/hooks/Stop", {}), 403)
    assert "SM_TOKEN" in message


def test_every_error_kind_has_an_http_status() -> None:
    from bot.api.app import STATUS
    from core.errors import ErrorKind

    assert set(STATUS) == set(ErrorKind)
    assert len(set(STATUS.values())) == len(STATUS)


def test_docs_page_is_html_listing_every_path(server: Server) -> None:
    reply = call(server, "GET", "/docs")
    assert reply.status == 200 and reply.content_type == "text/html"
    page = reply.body.decode()
    assert page.lstrip().lower().startswith("<!doctype html>")
    spec = call(server, "GET", "/openapi.json").json()
    for path in spec["paths"]:
        assert f"<code>{path}</code>" in page, path


# -- server-sent events ---------------------------------------------------------------


def sse(response: http.client.HTTPResponse) -> Iterator[tuple[str, str]]:
    """(field, value) for each SSE line; ("", "") at the end of each event."""
    while True:
        line = response.readline()
        if not line:
            return
        text = line.decode().rstrip("\r\n")
        if not text:
            yield "", ""
            continue
        field, _, value = text.partition(":")
        yield field, value[1:] if value.startswith(" ") else value


def test_events_stream_shows_a_spawn_and_its_state_changes(server: Server) -> None:
    conn = UnixHTTPConnection(server.sock_path, timeout=15)
    try:
        conn.request("GET", "/events", headers=auth_headers(server, OWNER))
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        lines = sse(response)
        assert next(lines) == ("", "connected")  # subscribed: nothing from here on is missed

        before = time.time()
        session = server.json("spawn", "", "--provider", "shell", "--name", "streamed")

        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 15
        kind: str | None = None
        while time.monotonic() < deadline:
            field, value = next(lines)
            if field == "event":
                kind = value
            elif field == "data":
                event = json.loads(value)
                assert event["type"] == kind  # the SSE event name is the event's type
                seen.append(event)
                if event["type"] == "state.changed" and event["session"] == session["id"] \
                        and event["state"] == "idle":
                    break
        mine = [e for e in seen if e["session"] == session["id"]]
        spawned = [e for e in mine if e["type"] == "session.spawned"]
        assert len(spawned) == 1, seen
        assert spawned[0]["name"] == "streamed" and spawned[0]["provider"] == "shell"
        assert spawned[0]["parent"] is None
        assert before - 1 <= spawned[0]["at"] <= time.time() + 1
        changes = [e for e in mine if e["type"] == "state.changed"]
        assert changes and changes[-1]["state"] == "idle", seen
        assert changes[0]["previous"] == "starting"
        for change in changes:
            assert {"type", "at", "session", "name", "state", "previous", "reason"} <= set(change)
            assert change["name"] == "streamed"
        assert mine.index(spawned[0]) < mine.index(changes[0])
    finally:
        conn.close()


# -- the optional TCP listener ----------------------------------------------------------


def tcp_call(port: int, path: str, token: str | None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def test_tcp_listener_requires_the_token_too(server_factory) -> None:
    port = free_port()
    server = server_factory(SM_SERVER_TCP="true", SM_SERVER_PORT=str(port))
    assert_error(tcp_call(port, "/sessions", None), 401)
    assert_error(tcp_call(port, "/sessions", "guess"), 401)
    reply = tcp_call(port, "/sessions", server.owner_token())
    assert reply.status == 200 and reply.json() == []


def test_nothing_listens_on_tcp_by_default(server_factory) -> None:
    port = free_port()
    server_factory(SM_SERVER_PORT=str(port))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
