"""The local HTTP API: what the `sm` CLI and the Claude Code hooks talk to.

It listens on a Unix socket in the state dir (mode 0600) and, if enabled, on
127.0.0.1. Every request carries `Authorization: Bearer <token>`: an agent's
own `SM_TOKEN` (the caller is that agent; no body field can claim another
identity) or the owner token from `<state_dir>/owner.token`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from typing import Any, Awaitable, Callable

from aiohttp import web

from bot.api.openapi import DOCS_HTML, openapi_spec
from core.engine import Engine
from core.errors import Forbidden, Invalid, SmError
from core.lifecycle import Caller
from core.providers import PROVIDERS
from core.queue import MODES
from core.version import version

log = logging.getLogger(__name__)

ENGINE = web.AppKey("engine", Engine)
# Set when the server shuts down, so that open /events streams end at once
# instead of holding the shutdown until aiohttp's timeout cancels them.
CLOSING = web.AppKey("closing", asyncio.Event)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SmError as exc:
        return error(exc.status, str(exc))
    except web.HTTPRequestEntityTooLarge as exc:
        return error(413, f"request body too large: {exc.text}")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error(exc.status, exc.reason)
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error(500, "internal error; see the sm-bot log")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.startswith("Bearer ") else ""
    if not token:
        return error(401, "missing token: send Authorization: Bearer <SM_TOKEN or owner token>")
    caller = request.app[ENGINE].caller_for_token(token)
    if caller is None:
        return error(401, "invalid token")
    request["caller"] = caller
    return await handler(request)


async def body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    raw = await request.read()
    try:
        data = json.loads(raw)
    except ValueError:
        raise Invalid("request body must be JSON") from None
    if not isinstance(data, dict):
        raise Invalid("request body must be a JSON object")
    return data


def field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None,
          required: bool = False) -> Any:
    if name not in data or data[name] is None:
        if required:
            raise Invalid(f"missing field {name!r}")
        return default
    value = data[name]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise Invalid(f"field {name!r} must be a number")
    if not isinstance(value, kind):
        raise Invalid(f"field {name!r} has the wrong type")
    if isinstance(value, str):
        # JSON may carry lone surrogates ("\udce9", what json.dumps makes of
        # argv bytes that are not UTF-8); no pane or database takes them.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid(f"field {name!r} is not valid UTF-8 text") from None
    return value


def caller_of(request: web.Request) -> Caller:
    return request["caller"]


def engine_of(request: web.Request) -> Engine:
    return request.app[ENGINE]


# -- handlers ----------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    engine = engine_of(request)
    return web.json_response({"ok": True, "sessions": len(engine.registry.live()), "version": version()})


async def shutdown(request: web.Request) -> web.Response:
    """Owner only: stop sm-bot as SIGTERM does (agents keep running, adopted on the next start)."""
    if not caller_of(request).is_owner:
        raise Forbidden("only the owner can stop the server")
    # After this answer is on its way, through the same path as a signal.
    asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
    return web.json_response({"stopping": True, "pid": os.getpid()}, status=202)


async def whoami(request: web.Request) -> web.Response:
    caller = caller_of(request)
    return web.json_response(caller.session.public() if caller.session else {"name": "owner"})


async def list_sessions(request: web.Request) -> web.Response:
    engine, caller = engine_of(request), caller_of(request)
    scope = request.query.get("scope", "all")
    if scope == "children":
        sessions = engine.children(caller)
    elif scope == "others":
        sessions = await engine.others(caller)
    elif scope == "all":
        sessions = engine.registry.live()
    else:
        raise Invalid("scope must be all, children or others")
    return web.json_response([s.public() for s in sessions])


async def create_session(request: web.Request) -> web.Response:
    engine, data = engine_of(request), await body(request)
    provider = field(data, "provider", str, "claude")
    if provider not in PROVIDERS:
        raise Invalid(f"unknown provider {provider!r}; choose one of: {', '.join(sorted(PROVIDERS))}")
    session = await engine.spawn(
        caller_of(request),
        field(data, "prompt", str, ""),
        name=field(data, "name", str),
        provider=provider,
        workdir=field(data, "dir", str),
        wait=field(data, "wait", (int, float)),
    )
    return web.json_response(session.public(), status=201)


async def get_session(request: web.Request) -> web.Response:
    engine = engine_of(request)
    session = await engine.resolve(request.match_info["ref"])
    out = session.public()
    out["attach"] = engine.tmux.attach_command(session.tmux_session)
    out["queued"] = (await engine.queue.counts()).get(session.id, 0)
    return web.json_response(out)


async def patch_session(request: web.Request) -> web.Response:
    data = await body(request)
    name = field(data, "name", str, required=True)
    session = await engine_of(request).rename(caller_of(request), request.match_info["ref"], name)
    return web.json_response(session.public())


async def delete_session(request: web.Request) -> web.Response:
    session = await engine_of(request).kill(caller_of(request), request.match_info["ref"])
    return web.json_response(session.public())


async def send_input(request: web.Request) -> web.Response:
    data = await body(request)
    text = field(data, "text", str, required=True)
    mode = field(data, "mode", str, "sequential")
    if mode not in MODES:
        raise Invalid(f"mode must be one of {', '.join(MODES)}")
    message = await engine_of(request).send(caller_of(request), request.match_info["ref"], text, mode)
    return web.json_response({"message": message.id, "target": message.target_id,
                              "mode": message.mode, "status": "queued"}, status=202)


async def watch(request: web.Request) -> web.Response:
    data = await body(request)
    seconds = field(data, "seconds", (int, float), required=True)
    wait_id = await engine_of(request).wait(caller_of(request), request.match_info["ref"], float(seconds))
    return web.json_response({"wait": wait_id, "seconds": seconds}, status=202)


async def clear(request: web.Request) -> web.Response:
    data = await body(request)
    session = await engine_of(request).clear(caller_of(request), request.match_info["ref"],
                                              field(data, "prompt", str, ""))
    return web.json_response({"session": session.id, "status": "queued"}, status=202)


async def output(request: web.Request) -> web.Response:
    try:
        lines = int(request.query.get("lines", "40"))
    except ValueError:
        raise Invalid("lines must be a number") from None
    transcript = request.query.get("transcript") in ("1", "true", "yes")
    text = await engine_of(request).output(request.match_info["ref"], lines, transcript)
    return web.json_response({"output": text})


async def what(request: web.Request) -> web.Response:
    return web.json_response(await engine_of(request).what(request.match_info["ref"]))


async def status(request: web.Request) -> web.Response:
    return web.json_response(await engine_of(request).status(caller_of(request)))


async def hook(request: web.Request) -> web.Response:
    caller = caller_of(request)
    if caller.session is None:
        raise Forbidden("hooks are sent by agents, with their own SM_TOKEN")
    engine = engine_of(request)
    if request.headers.get("X-SM-Spooled"):
        await engine.drain_spool()
    result = await engine.hook(caller.session, request.match_info["event"], await body(request))
    return web.json_response(result)


async def list_locks(request: web.Request) -> web.Response:
    return web.json_response(await engine_of(request).lock_list())


async def take_lock(request: web.Request) -> web.Response:
    data = await body(request)
    lock = await engine_of(request).lock(caller_of(request), field(data, "reason", str, required=True))
    return web.json_response({"workspace": lock.workspace, "reason": lock.reason}, status=201)


async def release_lock(request: web.Request) -> web.Response:
    workspace = request.query.get("workspace") or None
    lock = await engine_of(request).unlock(caller_of(request), workspace)
    return web.json_response({"workspace": lock.workspace, "released": True})


async def auto_lock(request: web.Request) -> web.Response:
    return web.json_response(await engine_of(request).auto_lock(caller_of(request), await body(request)))


async def drain(request: web.Request) -> web.Response:
    return web.json_response({"replayed": await engine_of(request).drain_spool()})


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every engine event as `data: <json>`."""
    engine = engine_of(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    closing = request.app[CLOSING]
    with engine.bus.subscribe() as subscription:
        await response.write(b": connected\n\n")
        while not closing.is_set():
            get = asyncio.ensure_future(subscription.__anext__())
            stop = asyncio.ensure_future(closing.wait())
            await asyncio.wait({get, stop}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not get.done():
                get.cancel()  # a cancelled Queue.get loses no event
                if closing.is_set():
                    break
                payload = ": keep-alive\n\n"
            else:
                event = get.result()
                payload = f"event: {event.type}\ndata: {json.dumps(event.to_dict(), default=str)}\n\n"
            try:
                await response.write(payload.encode())
            except (ConnectionResetError, RuntimeError):
                break
    return response


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_spec())


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_HTML, content_type="text/html")


def build_app(engine: Engine) -> web.Application:
    # Room for the largest message plus JSON quoting of every byte.
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware],
        client_max_size=engine.settings.max_message_bytes * 6 + 65536,
    )
    app[ENGINE] = engine
    app[CLOSING] = asyncio.Event()

    async def close_event_streams(app: web.Application) -> None:
        app[CLOSING].set()

    app.on_shutdown.append(close_event_streams)
    app.router.add_get("/health", health)
    app.router.add_get("/me", whoami)
    app.router.add_post("/shutdown", shutdown)
    app.router.add_get("/status", status)
    app.router.add_get("/sessions", list_sessions)
    app.router.add_post("/sessions", create_session)
    app.router.add_get("/sessions/{ref}", get_session)
    app.router.add_patch("/sessions/{ref}", patch_session)
    app.router.add_delete("/sessions/{ref}", delete_session)
    app.router.add_post("/sessions/{ref}/input", send_input)
    app.router.add_post("/sessions/{ref}/watch", watch)
    app.router.add_post("/sessions/{ref}/clear", clear)
    app.router.add_get("/sessions/{ref}/output", output)
    app.router.add_get("/sessions/{ref}/what", what)
    app.router.add_post("/hooks/{event}", hook)
    app.router.add_post("/spool/drain", drain)
    app.router.add_get("/locks", list_locks)
    app.router.add_post("/locks", take_lock)
    app.router.add_delete("/locks", release_lock)
    app.router.add_post("/locks/auto", auto_lock)
    app.router.add_get("/events", events)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/docs", docs)
    return app
