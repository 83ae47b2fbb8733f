"""A scripted stand-in for the OpenAI Responses API, on loopback.

Point the real Codex CLI at it (a ``model_providers`` entry in its
config.toml with ``base_url = "<url>/v1"`` and ``wire_api = "responses"``, see
tests/codex_home.py) and it becomes a fully scriptable real agent.  The script
is read from the text of the LAST user message of each request, as in
tests/fake_anthropic.py:

* the input ends with a tool call's output   -> text ``done``
* ``RUN: <command>`` (to the end of the line) -> a call of Codex's shell tool
* ``ASK: <command>``                          -> the same call, asking to run outside the
                                                sandbox (Codex shows its approval dialog)
* ``SLOW <N>``                                -> wait N seconds, then answer
* anything else                               -> text ``ok: <first 60 chars>``

Side requests (Codex asks for a thread title with a request that offers no
shell tool) get ``Session`` at once and never consume the script.

Answers stream as the real API streams them (``stream: true`` is what Codex
always asks for): ``response.created``, then per output item
``response.output_item.added``, its deltas and ``response.output_item.done``,
then ``response.completed``, which carries the request's ``usage`` as the real
API reports it (``input_tokens`` including ``input_tokens_details.cached_tokens``,
``output_tokens`` including the reasoning ones): ``USAGE`` for each scripted
answer (or the figures given with ``FakeOpenAI(usage=...)``, ``--usage JSON``),
a small fixed one for side requests.

Use from pytest::

    async with FakeOpenAI() as fake:
        ...  # fake.url

or as a script: ``python tests/fake_openai.py --port 0`` prints its URL on
stdout and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import secrets
import sys
from typing import Any

from aiohttp import web

log = logging.getLogger("fake_openai")

# An output item of the Responses API: {"type": "message", ...} or {"type": "function_call", ...}.
Item = dict[str, Any]

# What each scripted answer reports as used, and what a side request (a title) does.
USAGE = {"input_tokens": 1200, "cached_tokens": 1000, "output_tokens": 80, "reasoning_tokens": 16}
SIDE_USAGE = {"input_tokens": 10, "cached_tokens": 0, "output_tokens": 10, "reasoning_tokens": 0}


def usage_block(figures: dict[str, int]) -> dict[str, Any]:
    """The Responses API's `usage` object for these figures."""
    return {"input_tokens": figures["input_tokens"],
            "input_tokens_details": {"cached_tokens": figures["cached_tokens"]},
            "output_tokens": figures["output_tokens"],
            "output_tokens_details": {"reasoning_tokens": figures["reasoning_tokens"]},
            "total_tokens": figures["input_tokens"] + figures["output_tokens"]}


_RUN_RE = re.compile(r"(RUN|ASK):[ \t]*(.+)")
_SLOW_RE = re.compile(r"SLOW[ \t]+(\d+(?:\.\d+)?)")
# Codex sends its own context as user messages too; these are not the person's words.
_CONTEXT_PREFIXES = ("<environment_context>", "<user_instructions>", "# AGENTS.md", "<permissions",
                     "<collaboration_mode>", "<turn_aborted>", "<user_shell_command>")


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [c.get("text", "") for c in content or []
            if isinstance(c, dict) and c.get("type") in ("input_text", "text")]


def user_text(body: dict[str, Any]) -> str:
    """The person's text in the last user message of a request."""
    for item in reversed(body.get("input") or []):
        if item.get("type", "message") != "message" or item.get("role") != "user":
            continue
        texts = [t for t in _texts(item.get("content")) if not t.lstrip().startswith(_CONTEXT_PREFIXES)]
        if texts:
            return "\n".join(texts).strip()
    return ""


def ends_with_tool_output(body: dict[str, Any]) -> bool:
    items = body.get("input") or []
    return bool(items) and str(items[-1].get("type", "")).endswith("_call_output")


def tool_names(body: dict[str, Any]) -> list[str]:
    return [t.get("name", "") for t in body.get("tools") or [] if isinstance(t, dict)]


def is_side_request(body: dict[str, Any]) -> bool:
    """Requests Codex makes on its own (a title for the thread): they offer no shell tool."""
    return not {"exec_command", "shell_command", "shell"} & set(tool_names(body))


def text_item(text: str) -> Item:
    return {"type": "message", "role": "assistant", "id": "msg_" + secrets.token_hex(8),
            "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]}


def shell_item(body: dict[str, Any], command: str, escalate: bool = False) -> Item:
    """A call of whichever shell tool this Codex offers, running ``command``.

    ``escalate`` asks to run it outside the sandbox, which Codex must approve.
    """
    names = tool_names(body)
    if "exec_command" in names:
        name, args = "exec_command", {"cmd": command}
        if escalate:
            args |= {"sandbox_permissions": "require_escalated", "justification": "run it"}
    elif "shell_command" in names:
        name, args = "shell_command", {"command": command}
    else:
        name, args = "shell", {"command": ["bash", "-lc", command]}
    return {"type": "function_call", "id": "fc_" + secrets.token_hex(8), "status": "completed",
            "call_id": "call_" + secrets.token_hex(8), "name": name, "arguments": json.dumps(args)}


def scripted_reply(body: dict[str, Any]) -> tuple[list[Item], float]:
    """The built-in script: (output items, seconds to wait before answering)."""
    if is_side_request(body):
        return [text_item("Session")], 0.0
    if ends_with_tool_output(body):
        return [text_item("done")], 0.0
    text = user_text(body)
    m = _SLOW_RE.search(text)
    delay = float(m.group(1)) if m else 0.0
    m = _RUN_RE.search(text)
    if m:
        return [shell_item(body, m.group(2).strip(), escalate=m.group(1) == "ASK")], delay
    return [text_item("ok: " + text[:60])], delay


def _sse(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


class FakeOpenAI:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, usage: dict[str, int] | None = None) -> None:
        self.usage = {**USAGE, **(usage or {})}
        self.host = host
        self.port = port
        self.url = ""
        self.requests: list[dict[str, Any]] = []  # bodies of every POST /v1/responses
        self.unknown: list[tuple[str, str]] = []  # (method, path) of paths not modelled
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeOpenAI":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _other(self, request: web.Request) -> web.Response:
        log.info("unknown path %s %s", request.method, request.path_qs)
        self.unknown.append((request.method, request.path))
        return web.json_response({"error": {"message": "not modelled", "type": "invalid_request_error"}},
                                 status=404)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [], "models": []})

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        log.info("responses model=%s text=%r", body.get("model"), user_text(body)[:80])
        items, delay = scripted_reply(body)
        if delay:
            await asyncio.sleep(delay)
        response_id = "resp_" + secrets.token_hex(8)
        model = body.get("model") or "gpt-5"
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        shell = {"id": response_id, "object": "response", "model": model, "status": "in_progress", "output": []}
        await resp.write(_sse({"type": "response.created", "response": shell}))
        for index, item in enumerate(items):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                await resp.write(_sse({"type": "response.output_item.added", "output_index": index,
                                       "item": {**item, "status": "in_progress", "content": []}}))
                await resp.write(_sse({"type": "response.output_text.delta", "item_id": item["id"],
                                       "output_index": index, "content_index": 0, "delta": text}))
            else:
                await resp.write(_sse({"type": "response.output_item.added", "output_index": index,
                                       "item": {**item, "status": "in_progress", "arguments": ""}}))
            await resp.write(_sse({"type": "response.output_item.done", "output_index": index, "item": item}))
        usage = usage_block(SIDE_USAGE if is_side_request(body) else self.usage)
        await resp.write(_sse({"type": "response.completed",
                               "response": {**shell, "status": "completed", "output": items, "usage": usage}}))
        await resp.write_eof()
        return resp


async def _serve(host: str, port: int, log_file: str | None, usage: dict[str, int] | None = None) -> None:
    fake = FakeOpenAI(host, port, usage)
    print(await fake.start(), flush=True)
    if log_file:
        class _Tee(list):  # every request body, one JSON line each, for offline inspection
            def append(self, item: Any) -> None:  # type: ignore[override]
                super().append(item)
                with open(log_file, "a") as fh:
                    fh.write(json.dumps(item) + "\n")

        fake.requests = _Tee()
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log-requests", metavar="FILE", help="append request bodies as JSON lines")
    ap.add_argument("--usage", metavar="JSON", help="the usage each scripted answer reports, e.g. "
                    '\'{"input_tokens": 1200, "cached_tokens": 1000, "output_tokens": 80}\'')
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        asyncio.run(_serve(args.host, args.port, args.log_requests,
                           json.loads(args.usage) if args.usage else None))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
