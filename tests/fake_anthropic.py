"""A scripted stand-in for the Anthropic Messages API, on loopback.

Point the real Claude Code CLI at it with ``ANTHROPIC_BASE_URL`` and it becomes
a fully scriptable real agent.  The script is read from the text of the LAST
``user`` message of each request:

* the message carries a ``tool_result`` block  -> text ``done`` (end_turn)
* ``RUN: <command>`` (to the end of the line)   -> a ``Bash`` tool_use block
* ``AGENT: <task>``                             -> an ``Agent`` tool_use block: a subagent does <task>
* ``READ: <absolute path>``                     -> a ``Read`` tool_use block
* ``SAY+RUN: <command>``                        -> a text block, then that ``Bash`` block
  (one message of two content blocks: Claude Code writes it as two transcript lines)
* ``SLOW <N>``                                  -> wait N seconds, then answer
* ``HIT-LIMIT``                                  -> HTTP 429 ``rate_limit_error`` (what the API
  answers an account over its limit; Claude Code 2.1.330 ends the turn with a
  ``StopFailure`` hook, ``error: rate_limit``)

``SLOW`` and ``HIT-LIMIT`` are read from the last text block only: after an
unanswered turn (a lost agent resumed, a turn ended by an error) Claude Code
sends the old prompt and the new one in one user message, and the old one's
word must not act again.
* anything else                                 -> text ``ok: <first 60 chars>``

Side requests of the CLI (title/summary generation, quota probes, haiku calls,
tiny ``max_tokens``) get a short text answer at once and are kept apart in
``side_requests`` so they never consume the script.

Use from pytest::

    fake = FakeAnthropic()
    url = await fake.start()
    ...
    await fake.stop()

or as a script: ``python tests/fake_anthropic.py --port 0`` prints its URL on
stdout and serves until killed.

Only the standard library and aiohttp are used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import secrets
import sys
from typing import Any, Awaitable, Callable, Union

from aiohttp import web

log = logging.getLogger("fake_anthropic")

# A reply is a list of content blocks (Anthropic shape) and a stop reason.
Reply = tuple[list[dict[str, Any]], str]
# A custom responder gets the request body and the user's real text; it
# returns a Reply, or None to fall back to the built-in script.  It may be
# a coroutine function.
Responder = Callable[[dict[str, Any], str], Union[Reply, None, Awaitable[Union[Reply, None]]]]

_RUN_RE = re.compile(r"RUN:[ \t]*(.+)")
_SAY_RUN_RE = re.compile(r"SAY\+RUN:[ \t]*(.+)")
_READ_RE = re.compile(r"READ:[ \t]*(\S+)")
_AGENT_RE = re.compile(r"AGENT:[ \t]*(.+)")
# What every main (scripted) answer reports as its usage, unless the server is
# given other figures (`FakeAnthropic(usage=...)`, `--usage JSON`).
DEFAULT_USAGE = {"input_tokens": 10, "output_tokens": 10,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
_SLOW_RE = re.compile(r"SLOW[ \t]+(\d+(?:\.\d+)?)")
_SIDE_HINTS = (
    "title",
    "summar",
    "topic",
    "quota",
    "is this a new conversation",
    "extract",
)


def _block_texts(content: Any) -> list[str]:
    """Text of a message's content, skipping ``<system-reminder>`` blocks."""
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    for block in content or []:
        if not isinstance(block, dict) or block.get("type") != "text":
            continue
        text = block.get("text", "")
        if text.lstrip().startswith("<system-reminder>"):
            continue
        out.append(text)
    return out


def _strip_reminders(text: str) -> str:
    return re.sub(r"<system-reminder>.*?</system-reminder>", "", text, flags=re.S).strip()


def last_user_message(body: dict[str, Any]) -> dict[str, Any] | None:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            return msg
    return None


def user_text(body: dict[str, Any]) -> str:
    """The user's real text in the last ``user`` message."""
    msg = last_user_message(body)
    if msg is None:
        return ""
    return "\n".join(t for t in (_strip_reminders(x) for x in _block_texts(msg.get("content"))) if t)


def last_text(body: dict[str, Any]) -> str:
    """The user's real text in the last text block of the last ``user`` message."""
    msg = last_user_message(body)
    texts = [t for t in (_strip_reminders(x) for x in _block_texts(msg.get("content"))) if t] if msg else []
    return texts[-1] if texts else ""


LIMIT_MESSAGE = "Number of requests has exceeded your rate limit. Please try again later."


def is_limit_request(body: dict[str, Any]) -> bool:
    return not has_tool_result(body) and "HIT-LIMIT" in last_text(body)


def has_tool_result(body: dict[str, Any]) -> bool:
    msg = last_user_message(body)
    content = msg.get("content") if msg else None
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def tool_result_text(body: dict[str, Any]) -> str:
    """All text inside the tool_result blocks of the last user message."""
    msg = last_user_message(body)
    content = msg.get("content") if msg else None
    parts: list[str] = []
    for b in content if isinstance(content, list) else []:
        if isinstance(b, dict) and b.get("type") == "tool_result":
            inner = b.get("content")
            if isinstance(inner, str):
                parts.append(inner)
            else:
                parts.extend(
                    x.get("text", "") for x in inner or [] if isinstance(x, dict)
                )
    return "\n".join(parts)


def _system_text(body: dict[str, Any]) -> str:
    system = body.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    return ""


def is_side_request(body: dict[str, Any]) -> bool:
    """Requests the CLI makes on its own (titles, summaries, quota probes)."""
    if "haiku" in str(body.get("model", "")).lower():
        return True
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens <= 64:
        return True
    if not body.get("tools"):
        # The main agent loop always offers tools; a tool-less call with a
        # title/summary style system prompt is a side request.
        system = _system_text(body).lower()
        if any(h in system for h in _SIDE_HINTS):
            return True
        if (body.get("messages") or []) and user_text(body).strip().lower() == "quota":
            return True
    return False


def text_reply(text: str) -> Reply:
    return [{"type": "text", "text": text}], "end_turn"


def bash_reply(command: str, description: str = "run it") -> Reply:
    block = {
        "type": "tool_use",
        "id": "toolu_" + secrets.token_hex(12),
        "name": "Bash",
        "input": {"command": command, "description": description},
    }
    return [block], "tool_use"


def scripted_reply(body: dict[str, Any]) -> tuple[Reply, float]:
    """The built-in script: (reply, seconds to wait before answering)."""
    if has_tool_result(body):
        return text_reply("done"), 0.0
    text = user_text(body)
    delay = 0.0
    m = _SLOW_RE.search(last_text(body))
    if m:
        delay = float(m.group(1))
    m = _AGENT_RE.search(text)
    if m:
        block = {"type": "tool_use", "id": "toolu_" + secrets.token_hex(12), "name": "Agent",
                 "input": {"description": "a sub task", "prompt": m.group(1).strip(),
                           "subagent_type": "general-purpose"}}
        return ([block], "tool_use"), delay
    m = _READ_RE.search(text)
    if m:
        block = {"type": "tool_use", "id": "toolu_" + secrets.token_hex(12), "name": "Read",
                 "input": {"file_path": m.group(1)}}
        return ([block], "tool_use"), delay
    m = _SAY_RUN_RE.search(text)
    if m:
        blocks, stop = bash_reply(m.group(1).strip())
        return ([{"type": "text", "text": "Running it now."}, *blocks], stop), delay
    m = _RUN_RE.search(text)
    if m:
        return bash_reply(m.group(1).strip()), delay
    return text_reply("ok: " + text[:60]), delay


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class FakeAnthropic:
    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 usage: dict[str, int] | None = None) -> None:
        self.host = host
        # The usage every main answer reports (side requests keep a small fixed one).
        self.usage = {**DEFAULT_USAGE, **(usage or {})}
        self.port = port
        self.url = ""
        # Bodies of every POST /v1/messages, side requests included.
        self.requests: list[dict[str, Any]] = []
        # Only the side requests (also present in ``requests``).
        self.side_requests: list[dict[str, Any]] = []
        # (method, path) of paths we don't model.
        self.unknown: list[tuple[str, str]] = []
        self.responder: Responder | None = None
        # How many requests were answered with a 429 (HIT-LIMIT).
        self.limited = 0
        self._runner: web.AppRunner | None = None
        self._cond: asyncio.Condition | None = None

    def set_responder(self, responder: Responder | None) -> None:
        """Install a custom responder (None restores the built-in script)."""
        self.responder = responder

    @property
    def main_requests(self) -> list[dict[str, Any]]:
        side = {id(b) for b in self.side_requests}
        return [b for b in self.requests if id(b) not in side]

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        """Wait until a received (main) request body satisfies predicate."""
        assert self._cond is not None, "not started"
        async with self._cond:
            found: list[dict[str, Any]] = []

            def check() -> bool:
                found[:] = [b for b in self.main_requests if predicate(b)]
                return bool(found)

            await asyncio.wait_for(self._cond.wait_for(check), timeout)
            return found[0]

    # -- server -----------------------------------------------------------------

    async def start(self) -> str:
        self._cond = asyncio.Condition()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeAnthropic":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _other(self, request: web.Request) -> web.Response:
        log.info("unknown path %s %s", request.method, request.path_qs)
        self.unknown.append((request.method, request.path))
        return web.json_response({})

    async def _count_tokens(self, request: web.Request) -> web.Response:
        return web.json_response({"input_tokens": 100})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except Exception:  # pragma: no cover - malformed request
            return web.json_response(
                {"type": "error", "error": {"type": "invalid_request_error", "message": "bad json"}},
                status=400,
            )
        self.requests.append(body)
        side = is_side_request(body)
        if side:
            self.side_requests.append(body)
        log.info("messages side=%s model=%s text=%r", side, body.get("model"), user_text(body)[:80])
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()

        reply: Reply | None = None
        delay = 0.0
        if side:
            reply = text_reply("Session")
        elif is_limit_request(body):
            # As the API answers over a limit; x-should-retry tells the SDK not to retry.
            self.limited += 1
            return web.json_response(
                {"type": "error", "error": {"type": "rate_limit_error", "message": LIMIT_MESSAGE}},
                status=429, headers={"x-should-retry": "false", "retry-after": "5",
                                     "request-id": "req_" + secrets.token_hex(8)})
        else:
            if self.responder is not None:
                result = self.responder(body, user_text(body))
                if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                    result = await result  # type: ignore[misc]
                reply = result  # type: ignore[assignment]
            if reply is None:
                reply, delay = scripted_reply(body)
        if delay:
            await asyncio.sleep(delay)
        blocks, stop_reason = reply
        model = body.get("model") or "claude-sonnet-4-5"
        msg_id = "msg_" + secrets.token_hex(12)
        usage = dict(DEFAULT_USAGE) if side else dict(self.usage)
        # As the real API does: message_start carries the input side and a first
        # output count; message_delta carries the final output count.
        usage_in = {**usage, "output_tokens": 1}
        if not body.get("stream"):
            return web.json_response({
                "id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": blocks, "stop_reason": stop_reason, "stop_sequence": None,
                "usage": usage,
            })

        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "request-id": "req_" + secrets.token_hex(8),
        })
        await resp.prepare(request)
        await resp.write(_sse("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage_in,
        }}))
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            elif block["type"] == "tool_use":
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            else:  # pragma: no cover - not used by the script
                raise ValueError(f"unsupported block {block['type']}")
            await resp.write(_sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}))
            await resp.write(_sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
            await resp.write(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
        await resp.write(_sse("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        }))
        await resp.write(_sse("message_stop", {"type": "message_stop"}))
        await resp.write_eof()
        return resp


async def _serve(host: str, port: int, log_file: str | None, usage: dict[str, int] | None = None) -> None:
    fake = FakeAnthropic(host, port, usage)
    url = await fake.start()
    print(url, flush=True)
    if log_file:
        # Append every request body as one JSON line, for offline inspection.
        orig = fake.requests

        class _Tee(list):
            def append(self, item: Any) -> None:  # type: ignore[override]
                super().append(item)
                with open(log_file, "a") as fh:
                    fh.write(json.dumps(item) + "\n")

        fake.requests = _Tee(orig)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log-requests", metavar="FILE", help="append request bodies as JSON lines")
    ap.add_argument("--usage", metavar="JSON", help="the usage every main answer reports, e.g. "
                    '\'{"input_tokens": 1000, "output_tokens": 200}\'')
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
