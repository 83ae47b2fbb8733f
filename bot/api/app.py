"""The local HTTP API: what the `sm` CLI and the Claude Code hooks talk to.

It listens on a Unix socket in the state dir (mode 0600) and, if enabled, on
127.0.0.1. Every request carries `Authorization: Bearer <token>`: an agent's
own `SM_TOKEN` (the caller is that agent; no body field can claim another
identity) or the owner token from `<state_dir>/owner.token`.

Each endpoint is one `Route`: its request and response models (bot/api/models.py)
are what it parses and answers with, and what `/openapi.json` describes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from bot.api import models as m
from bot.api.openapi import docs_html, openapi_spec
from core.engine import Engine
from core.peer import peer_credentials
from core.errors import ErrorKind, Invalid, Malformed, SmError
from core.lifecycle import Caller
from core.version import version

log = logging.getLogger(__name__)

ENGINE = web.AppKey("engine", Engine)
# Set when the server shuts down, so that open /events streams end at once
# instead of holding the shutdown until aiohttp's timeout cancels them.
CLOSING = web.AppKey("closing", asyncio.Event)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The engine's error kinds in HTTP's words.
STATUS = {
    ErrorKind.INVALID: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.CONFLICT: 409,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.MALFORMED: 400,
    ErrorKind.LIMIT: 429,
}


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SmError as exc:
        return error(STATUS[exc.kind], str(exc))
    except web.HTTPRequestEntityTooLarge as exc:
        return error(413, f"request body too large: {exc.text}")
    except ConnectionResetError:
        # The client went away mid-request (a killed `sm`, a hook timing out): nothing
        # to answer, and nothing went wrong here.
        log.debug("client disconnected during %s %s", request.method, request.path)
        return error(400, "client disconnected")
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
    # On the Unix socket the kernel names the process: inside an agent's pane it is
    # that agent, whatever token it sends. TCP has only the token.
    creds = peer_credentials(request.transport.get_extra_info("socket") if request.transport else None)
    pid = creds[0] if creds and creds[1] == os.getuid() else None
    caller = await request.app[ENGINE].caller_for_peer(pid, token)
    if caller is None:
        if not token:
            return error(401, "missing token: send Authorization: Bearer <SM_TOKEN or owner token>")
        return error(401, "invalid token")
    request["caller"] = caller
    return await handler(request)


# -- parsing -------------------------------------------------------------------------


def _problem(err: Any, what: str) -> str:
    name = ".".join(str(part) for part in err["loc"]) or "body"
    if err["type"] == "missing":
        return f"missing {what} {name!r}"
    got = repr(err["input"])
    got = got if len(got) <= 60 else got[:57] + "..."
    return f"{what} {name!r}: {err['msg']} (got {got})"


def validated(model: type[BaseModel], data: Any, what: str = "field") -> Any:
    """`data` as `model`, or Invalid naming each bad field (or parameter) on one line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid("; ".join(_problem(err, what) for err in exc.errors())) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def read_body(request: web.Request, model: type[BaseModel]) -> Any:
    data: Any = {}
    if request.can_read_body:
        try:
            data = json.loads(await request.read(), parse_constant=_refuse_constant)
        except ValueError:  # UnicodeDecodeError included
            raise Malformed("request body must be JSON") from None
        except RecursionError:
            raise Malformed("request body is nested too deeply") from None
        if not isinstance(data, dict):
            raise Invalid("request body must be a JSON object")
    return validated(model, data)


# -- routes --------------------------------------------------------------------------


@dataclass
class Call:
    """One authenticated request, its body and query already parsed."""

    request: web.Request
    engine: Engine
    caller: Caller
    body: Any = None
    query: Any = None

    @property
    def ref(self) -> str:
        return self.request.match_info["ref"]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    handler: Callable[[Call], Awaitable[Any]]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    # The answer's type; None: the handler makes its own response (`content` says its type).
    response: Any = None
    status: int = 200
    errors: tuple[ErrorKind, ...] = ()
    content: str = "application/json"

    def endpoint(self) -> Handler:
        adapter = TypeAdapter(self.response) if self.response is not None else None

        async def handle(request: web.Request) -> web.StreamResponse:
            call = Call(request, request.app[ENGINE], request["caller"])
            if self.query is not None:
                call.query = validated(self.query, dict(request.query), "parameter")
            if self.body is not None:
                call.body = await read_body(request, self.body)
            result = await self.handler(call)
            if adapter is None:
                return result
            out = adapter.dump_python(adapter.validate_python(result), mode="json", by_alias=True)
            return web.json_response(out, status=self.status)

        return handle


# -- handlers ------------------------------------------------------------------------


async def health(c: Call) -> Any:
    return {**c.engine.health(), "version": version()}


async def shutdown(c: Call) -> Any:
    """Stop sm-bot as SIGTERM does (agents keep running, adopted on the next start)."""
    c.engine.request_shutdown(c.caller)
    return {"stopping": True, "pid": os.getpid()}


async def whoami(c: Call) -> Any:
    return c.caller.session.public() if c.caller.session else {"name": "owner"}


async def list_sessions(c: Call) -> Any:
    scope = c.query.scope
    if scope == "children":
        sessions = c.engine.children(c.caller)
    elif scope == "others":
        sessions = await c.engine.others(c.caller, c.query.dir)
    else:
        sessions = c.engine.sessions(c.caller)
    return await c.engine.describe(c.caller, sessions)


async def create_session(c: Call) -> Any:
    b: m.SpawnBody = c.body
    session = await c.engine.spawn(c.caller, b.prompt, name=b.name, provider=b.provider,
                                   workdir=b.dir, wait=b.wait, worktree=b.worktree, host=b.host)
    out = (await c.engine.describe(c.caller, [session]))[0]
    if b.host:
        out["node"] = b.host
    return out


async def get_session(c: Call) -> Any:
    session = await c.engine.session(c.caller, c.ref)
    out = session.public()
    out["attach"] = await c.engine.attach_command(c.caller, session.id)
    out["queued"] = (await c.engine.queue_counts(c.caller)).get(session.id, 0)
    return out


async def rename_session(c: Call) -> Any:
    return (await c.engine.rename(c.caller, c.ref, c.body.name)).public()


async def kill_session(c: Call) -> Any:
    return (await c.engine.kill(c.caller, c.ref)).public()


async def resume_session(c: Call) -> Any:
    return (await c.engine.resume(c.caller, c.ref)).public()


async def resume_all(c: Call) -> Any:
    return await c.engine.resume_all(c.caller)


async def send_input(c: Call) -> Any:
    message = await c.engine.send(c.caller, c.ref, c.body.text, c.body.mode)
    return m.Queued(message=message.id, target=message.target_id, mode=message.mode)


async def watch(c: Call) -> Any:
    wait_id = await c.engine.wait(c.caller, c.ref, c.body.seconds)
    return m.Waiting(wait=wait_id, seconds=c.body.seconds)


async def clear(c: Call) -> Any:
    session = await c.engine.clear(c.caller, c.ref, c.body.prompt)
    return m.Clearing(session=session.id)


async def output(c: Call) -> Any:
    return m.Output(output=await c.engine.output(c.caller, c.ref, c.query.lines, c.query.transcript,
                                                         c.query.raw))


async def what(c: Call) -> Any:
    return await c.engine.what(c.caller, c.ref)


async def status(c: Call) -> Any:
    return await c.engine.status(c.caller, everything=c.query.all)


async def share(c: Call) -> Any:
    b: m.ShareBody = c.body
    target = await c.engine.share(c.caller, b.paths, to=b.to, caption=b.caption)
    return m.Shared(to=target.id if target else "owner", files=len(b.paths))


async def cost(c: Call) -> Any:
    q: m.CostQuery = c.query
    since = time.time() - q.since if q.since else None
    return await c.engine.cost(c.caller, q.session, since)


async def list_worktrees(c: Call) -> Any:
    return await c.engine.worktrees(c.caller)


async def prune_worktrees(c: Call) -> Any:
    return m.Pruned(removed=await c.engine.prune_worktrees(c.caller))


async def hook(c: Call) -> Any:
    return await c.engine.hook(c.caller, c.request.match_info["event"], c.body.model_dump())


async def drain(c: Call) -> Any:
    return m.Replayed(replayed=await c.engine.drain_spool(c.caller))


async def list_locks(c: Call) -> Any:
    return await c.engine.lock_list(c.caller)


async def take_lock(c: Call) -> Any:
    lock = await c.engine.lock(c.caller, c.body.reason)
    return m.Locked(workspace=lock.workspace, reason=lock.reason)


async def release_lock(c: Call) -> Any:
    lock = await c.engine.unlock(c.caller, c.query.workspace or None)
    return m.Unlocked(workspace=lock.workspace)


async def auto_lock(c: Call) -> Any:
    return await c.engine.auto_lock(c.caller, c.body.model_dump())


async def events(c: Call) -> web.StreamResponse:
    """Server-sent events: every engine event as `data: <json>`."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(c.request)
    closing = c.request.app[CLOSING]
    with c.engine.subscribe(c.caller) as subscription:
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


async def openapi(c: Call) -> Any:
    return SPEC


async def docs(c: Call) -> web.StreamResponse:
    return web.Response(text=DOCS, content_type="text/html")


K = ErrorKind
ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", "Liveness and number of live sessions", health, response=m.Health),
    Route("GET", "/me", "Who the token belongs to", whoami, response=m.SessionOut | m.Owner),
    Route("POST", "/shutdown", "Owner only: stop sm-bot as SIGTERM does; agents keep running", shutdown,
          response=m.Stopping, status=202, errors=(ErrorKind.FORBIDDEN,)),
    Route("GET", "/status", "Sessions, queue depths, locks and undelivered messages", status,
          query=m.StatusQuery, response=m.Status),
    Route("GET", "/sessions", "Live sessions", list_sessions, query=m.SessionsQuery,
          response=list[m.SessionOut]),
    Route("POST", "/sessions", "Spawn an agent (as a child of the calling agent)", create_session,
          body=m.SpawnBody, response=m.SessionOut, status=201, errors=(K.CONFLICT, K.TOO_LARGE)),
    Route("GET", "/sessions/{ref}", "One session, with its attach command", get_session,
          response=m.SessionDetail, errors=(K.NOT_FOUND,)),
    Route("PATCH", "/sessions/{ref}", "Rename (yourself or a descendant; the owner: any)", rename_session,
          body=m.RenameBody, response=m.SessionOut, errors=(K.NOT_FOUND, K.FORBIDDEN, K.CONFLICT)),
    Route("DELETE", "/sessions/{ref}", "Kill (yourself or a descendant; the owner: any)", kill_session,
          response=m.SessionOut, errors=(K.NOT_FOUND, K.FORBIDDEN)),
    Route("POST", "/sessions/{ref}/resume", "Run a lost session again (its tmux gone: a reboot); "
          "a Claude agent continues its conversation", resume_session, response=m.SessionOut,
          errors=(K.NOT_FOUND, K.FORBIDDEN)),
    Route("POST", "/resume", "Resume every lost session you may manage", resume_all,
          response=list[m.ResumeOutcome]),
    Route("POST", "/sessions/{ref}/input", "Queue a message (sm send)", send_input, body=m.SendBody,
          response=m.Queued, status=202, errors=(K.NOT_FOUND, K.TOO_LARGE)),
    Route("POST", "/sessions/{ref}/watch",
          "Wake the caller when the session is idle with nothing queued, or at the timeout (sm wait)",
          watch, body=m.WatchBody, response=m.Waiting, status=202, errors=(K.NOT_FOUND,)),
    Route("POST", "/sessions/{ref}/clear", "Clear the agent's context, then send the optional prompt",
          clear, body=m.ClearBody, response=m.Clearing, status=202, errors=(K.NOT_FOUND, K.FORBIDDEN)),
    Route("GET", "/sessions/{ref}/output", "Screen tail, or the last assistant messages", output,
          query=m.OutputQuery, response=m.Output, errors=(K.NOT_FOUND,)),
    Route("GET", "/sessions/{ref}/what", "A short summary of what the agent is doing", what,
          response=m.What, errors=(K.NOT_FOUND,)),
    Route("POST", "/share", "Send files to the phone: your topic, or an ancestor's or the owner's (sm share)",
          share, body=m.ShareBody, response=m.Shared, status=202,
          errors=(K.NOT_FOUND, K.FORBIDDEN, K.TOO_LARGE)),
    Route("GET", "/cost", "Tokens and cost of a swarm: a session and its descendants (sm cost)", cost,
          query=m.CostQuery, response=m.Cost, errors=(K.NOT_FOUND, K.FORBIDDEN)),
    Route("GET", "/worktrees", "The git worktrees sm made that still exist (sm worktrees)", list_worktrees,
          response=list[m.WorktreeOut]),
    Route("POST", "/worktrees/prune", "Remove the clean, merged worktrees of ended sessions",
          prune_worktrees, response=m.Pruned),
    Route("POST", "/hooks/{event}", "A Claude Code hook event from the calling agent; "
          "the answer is what the hook prints", hook, body=m.HookPayload, response=m.HookOutput,
          errors=(K.FORBIDDEN,)),
    Route("POST", "/spool/drain", "Replay hook events spooled while the server was unreachable", drain,
          response=m.Replayed),
    Route("GET", "/locks", "Workspace locks and their holders", list_locks, response=list[m.LockOut]),
    Route("POST", "/locks", "Take your workspace's lock (sm lock)", take_lock, body=m.LockBody,
          response=m.Locked, status=201, errors=(K.CONFLICT,)),
    Route("DELETE", "/locks", "Release a lock: yours, or (owner) any by ?workspace=", release_lock,
          query=m.UnlockQuery, response=m.Unlocked, errors=(K.NOT_FOUND, K.FORBIDDEN)),
    Route("POST", "/locks/auto", "The PreToolUse file-write hook: take the lock, waiting up to "
          "SM_LOCK_WAIT, or answer with a deny decision", auto_lock, body=m.HookPayload,
          response=m.HookOutput),
    Route("GET", "/events", "Server-sent events: every engine event", events,
          content="text/event-stream"),
    Route("GET", "/openapi.json", "This description of the API", openapi, response=dict[str, Any]),
    Route("GET", "/docs", "This description of the API as a readable page", docs, content="text/html"),
)

PATH_PARAMETERS = {"ref": "session id or name", "event": "the Claude Code hook event, e.g. Stop"}
SPEC = openapi_spec(ROUTES, STATUS, PATH_PARAMETERS)
DOCS = docs_html(SPEC)


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
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.endpoint())
    return app
