"""Several hosts, one bot: this node's link to the other nodes over NATS JetStream.

Built by the engine only when SM_NATS_URL is set; a single host never imports
this module (nor nats). Every subject a node publishes starts with its own name,
so a NATS user limited to `sm.<node>.>` (nats-server.conf.example) cannot speak
for another node:

    sm.<node>.events.<type>     its engine events (to_dict)      stream SM_EVENTS  (sm.*.events.>)
    sm.<sender>.cmd.<target>    a command for the target node     stream SM_CMDS    (sm.*.cmd.*), work queue
    sm.<sender>.req.<target>    a read (output, what, screen) or a prompt's decision: core request/reply,
                                answered at once or not at all
    sm.<target>.reply.<sender>  a command's outcome, for a sender that waits on it (spawn)
    KV sm_sessions              <node>.<session id> -> the session; <node>.node -> its heartbeat

One stream for every node's events and one for every node's commands, not one per
node: permissions are on subjects, so a shared stream keeps each node's rights as
tight (it publishes under its own name; its consumer's filter, its own commands,
is pinned in the permission to create it) while a new node needs no new stream.
The heartbeat is `<node>.node` rather than `nodes.<node>` for the same reason: a
node writes only keys under its own name.

Commands are durable end to end. The sender writes each into its local SQLite
outbox first (`cluster_outbox`), and one pump publishes them in order with a
`Nats-Msg-Id`, retrying with backoff while NATS is away. The target reads its
commands through one durable pull consumer and applies each in order,
recording the message id in `cluster_applied` in the same SQLite transaction
as the command's effect (the queued message), then acknowledges. A crash of
either side or of NATS, however long, makes a redelivery, never a second effect.
After a start or a reconnect the consumer is made anew from the first
unacknowledged command, so redeliveries come before anything newer and each
sender's order is kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import NotFoundError

from core.config import Settings
from core.errors import Conflict, Forbidden, Invalid, LimitReached, NotFound, SmError, Unavailable
from core.events import Event
from core.sessions import Session
from core.store import Store, read_migrations
from core.types import State

log = logging.getLogger(__name__)

EVENTS_STREAM = "SM_EVENTS"
COMMANDS_STREAM = "SM_CMDS"
BUCKET = "sm_sessions"
MAX_ATTEMPTS = 5  # a command that fails (not refused: fails) this often is dropped
HEARTBEAT_KEY = "node"  # <node>.node: never a session id (those are hex)

MIGRATIONS = read_migrations("""
-- migration 1: the outbox and the applied commands of several hosts (core/cluster.py)

-- Commands for other nodes, written before anyone is told "queued" and
-- published in id order by the pump; a row goes once NATS has stored it.
CREATE TABLE cluster_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id      TEXT NOT NULL UNIQUE,           -- Nats-Msg-Id, and the id the target records
    target_node TEXT NOT NULL,
    body        TEXT NOT NULL,                  -- the command as JSON (never a token)
    created_at  REAL NOT NULL
);

-- Every command from another node this node has applied, by its message id,
-- written in the same transaction as its effect: a redelivery is seen and skipped.
CREATE TABLE cluster_applied (
    msg_id      TEXT PRIMARY KEY,
    sender_node TEXT NOT NULL,
    applied_at  REAL NOT NULL
);
CREATE INDEX cluster_applied_at ON cluster_applied(applied_at);
""")

ERRORS: dict[str, type[SmError]] = {cls.__name__: cls for cls in
                                    (NotFound, Forbidden, Invalid, Conflict, LimitReached, Unavailable, SmError)}

# What a node applies (Engine._apply_command) and answers (Engine._answer_request).
Apply = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any] | None]]
Answer = Callable[[str, dict[str, Any]], Awaitable[Any]]


def error_reply(exc: Exception) -> dict[str, Any]:
    kind = type(exc).__name__ if isinstance(exc, SmError) else "SmError"
    return {"ok": False, "error": str(exc), "kind": kind if kind in ERRORS else "SmError"}


def raise_reply(reply: dict[str, Any]) -> Any:
    if reply.get("ok"):
        return reply.get("result")
    raise ERRORS.get(str(reply.get("kind")), SmError)(str(reply.get("error")))


def directory_entry(session: Session, node: str) -> dict[str, Any]:
    """What every node may know of a session: never its token (hash) nor its pane."""
    return {"id": session.id, "name": session.name, "node": node, "state": session.state.value,
            "state_reason": session.state_reason, "parent_id": session.parent_id, "provider": session.provider,
            "workdir": session.workdir, "created_at": session.created_at, "last_activity": session.last_activity}


def as_session(entry: dict[str, Any]) -> Session:
    """A remote session as a Session value (no pane, no token): for doors and callers."""
    return Session(id=entry["id"], name=entry["name"], parent_id=entry.get("parent_id"),
                   provider=entry.get("provider") or "claude", workdir=entry.get("workdir") or "",
                   tmux_session="", pane_id=None, token_hash=f"remote:{entry['id']}", state=entry["state"],
                   state_reason=entry.get("state_reason"), state_since=entry.get("last_activity") or 0.0,
                   agent_session_id=None, transcript_path=None, idle_reminded=1,
                   created_at=entry.get("created_at") or 0.0, last_activity=entry.get("last_activity") or 0.0)


@dataclass
class Remote:
    """A session on another node, as the directory shows it now."""

    entry: dict[str, Any]

    @property
    def node(self) -> str:
        return str(self.entry["node"])

    @property
    def id(self) -> str:
        return str(self.entry["id"])

    def session(self) -> Session:
        return as_session(self.entry)


class Cluster:
    def __init__(self, settings: Settings, store: Store, apply: Apply, answer: Answer,
                 clock: Callable[[], float] = time.time) -> None:
        self.node = settings.node
        self._settings = settings
        self._store = store
        self._apply = apply
        self._answer = answer
        self._clock = clock
        self._nc: Any = None
        self._js: Any = None
        self._kv: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._connected = asyncio.Event()
        self._reset_consumer = asyncio.Event()
        self._rewatch = asyncio.Event()
        self._reset_events = asyncio.Event()
        self._outbox_wake = asyncio.Event()
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10000)
        self._dirty: dict[str, dict[str, Any] | None] = {}  # session id -> entry (None: delete)
        self._dirty_wake = asyncio.Event()
        self._directory: dict[str, dict[str, Any]] = {}  # "<node>.<id>" -> entry, other nodes
        self._seen: dict[str, float] = {}  # node -> when its heartbeat was last seen (local clock)
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._own: Callable[[], list[Session]] = lambda: []

    # -- life ----------------------------------------------------------------------

    async def start(self, own_sessions: Callable[[], list[Session]]) -> None:
        """Migrate the outbox and start connecting; never waits for NATS (a node works without it)."""
        await self._store.migrate("cluster", MIGRATIONS)
        self._own = own_sessions
        for session in own_sessions():
            self.session_changed(session)
        self._spawn(self._connect(), "connect")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"cluster-{name}")
        task.add_done_callback(self._checked)
        self._tasks.append(task)

    @staticmethod
    def _checked(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("cluster task %s failed", task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._nc is not None:
            try:
                await asyncio.wait_for(self._nc.close(), 5)
            except Exception:
                log.debug("closing the NATS connection failed", exc_info=True)

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def _auth(self) -> dict[str, Any]:
        s = self._settings
        out: dict[str, Any] = {}
        if s.nats_creds:
            out["user_credentials"] = s.nats_creds
        elif s.nats_nkey_seed:
            out["nkeys_seed"] = s.nats_nkey_seed
        elif s.nats_user:
            out["user"], out["password"] = s.nats_user, s.nats_password
        if s.nats_ca or s.nats_url.startswith("tls://"):
            import ssl

            out["tls"] = ssl.create_default_context(cafile=s.nats_ca or None)
        return out

    async def _connect(self) -> None:
        delay = 0.2
        while True:
            try:
                self._nc = await nats.connect(
                    servers=[self._settings.nats_url], name=f"sm-{self.node}",
                    inbox_prefix=f"_INBOX_{self.node}", allow_reconnect=True,
                    max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=3,
                    disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error, **self._auth())
                break
            except Exception as exc:
                log.warning("NATS at %s unreachable (%s); this node works alone meanwhile",
                            self._settings.nats_url, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._js = self._nc.jetstream(timeout=5)
        while True:
            try:
                await self._ensure_streams()
                break
            except Exception as exc:
                log.warning("setting up the NATS streams failed (%s); trying again", exc)
                await asyncio.sleep(1)
        log.info("node %s joined NATS at %s", self.node, self._settings.nats_url)
        self._connected.set()
        await self._nc.subscribe(f"sm.*.req.{self.node}", cb=self._on_request)
        await self._nc.subscribe(f"sm.*.reply.{self.node}", cb=self._on_reply)
        for coro, name in ((self._pump_outbox(), "outbox"), (self._consume_commands(), "commands"),
                           (self._publish_events(), "events"), (self._write_directory(), "directory"),
                           (self._heartbeat(), "heartbeat"), (self._watch_directory(), "watch")):
            self._spawn(coro, name)

    async def _on_disconnected(self) -> None:
        log.warning("lost NATS; commands for other nodes wait in the outbox")

    async def _on_reconnected(self) -> None:
        log.info("NATS is back")
        self._reset_consumer.set()
        self._rewatch.set()
        self._reset_events.set()
        self._outbox_wake.set()

    async def _on_error(self, exc: Exception) -> None:
        log.debug("NATS: %s", exc)

    async def _ensure_streams(self) -> None:
        """The streams and the bucket; made here if missing (the admin may make them instead)."""
        s = self._settings
        limits = dict(max_age=s.nats_retention_hours * 3600, max_bytes=s.nats_stream_max_mb * 1024 * 1024,
                      storage=api.StorageType.FILE, duplicate_window=120)
        wanted = [api.StreamConfig(name=EVENTS_STREAM, subjects=["sm.*.events.>"],
                                   retention=api.RetentionPolicy.LIMITS, **limits),
                  api.StreamConfig(name=COMMANDS_STREAM, subjects=["sm.*.cmd.*"],
                                   retention=api.RetentionPolicy.WORK_QUEUE, **limits)]
        for config in wanted:
            try:
                await self._js.stream_info(config.name)
            except NotFoundError:
                await self._js.add_stream(config)
        try:
            self._kv = await self._js.key_value(BUCKET)
        except Exception:
            self._kv = await self._js.create_key_value(bucket=BUCKET, history=1,
                                                       storage=api.StorageType.FILE)

    # -- the directory ---------------------------------------------------------------

    def session_changed(self, session: Session) -> None:
        """This node's session changed: the directory gets it (a dead one leaves it)."""
        self._dirty[session.id] = None if session.state == State.DEAD else directory_entry(session, self.node)
        self._dirty_wake.set()

    def session_gone(self, session_id: str) -> None:
        self._dirty[session_id] = None
        self._dirty_wake.set()

    async def _write_directory(self) -> None:
        while True:
            await self._dirty_wake.wait()
            self._dirty_wake.clear()
            while self._dirty:
                session_id, entry = next(iter(self._dirty.items()))
                key = f"{self.node}.{session_id}"
                try:
                    if entry is None:
                        await self._kv.delete(key)
                    else:
                        await self._kv.put(key, json.dumps(entry).encode())
                except Exception as exc:
                    log.debug("directory write of %s failed (%s); again soon", key, exc)
                    await asyncio.sleep(0.5)
                    continue
                if self._dirty.get(session_id) is entry:
                    self._dirty.pop(session_id, None)

    async def _heartbeat(self) -> None:
        first = True
        while True:
            try:
                await self._kv.put(f"{self.node}.{HEARTBEAT_KEY}",
                                   json.dumps({"node": self.node, "at": self._clock()}).encode())
                if first:
                    await self._forget_stale_own()
                    first = False
            except Exception as exc:
                log.debug("heartbeat failed: %s", exc)
            await asyncio.sleep(self._settings.node_heartbeat)

    async def _forget_stale_own(self) -> None:
        """Directory keys of this node whose session is no longer live here (died while NATS was away)."""
        live = {s.id for s in self._own()}
        try:
            keys = await self._kv.keys(filters=[f"{self.node}.*"])
        except Exception:
            return
        for key in keys:
            session_id = key.split(".", 1)[1]
            if session_id != HEARTBEAT_KEY and session_id not in live:
                self._dirty.setdefault(session_id, None)
        self._dirty_wake.set()

    async def _watch_directory(self) -> None:
        while True:
            watcher = None
            try:
                # Watched anew after a reconnect: a server restarted on its store may not
                # resume the old watch (an ephemeral consumer).
                self._rewatch.clear()
                watcher = await self._kv.watchall()
                while not self._rewatch.is_set():
                    try:
                        self._seen_entry(await watcher.updates(timeout=1))
                    except (NatsTimeout, asyncio.TimeoutError):
                        continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("directory watch ended (%s); watching again", exc)
            finally:
                if watcher is not None:
                    try:
                        await watcher.stop()
                    except Exception:
                        pass
            await asyncio.sleep(0.5)

    def _seen_entry(self, entry: Any) -> None:
        if entry is None or not getattr(entry, "key", None):
            return
        node, _, rest = entry.key.partition(".")
        if node == self.node:
            return
        if rest == HEARTBEAT_KEY:
            if entry.operation is None and entry.value:
                try:
                    at = float(json.loads(entry.value)["at"])
                except (ValueError, KeyError, TypeError):
                    return
                # A live update is fresh now; a replayed old one counts from the time it says.
                self._seen[node] = self._clock() if entry.delta == 0 and node in self._seen else \
                    min(self._clock(), at)
            return
        if entry.operation is not None or not entry.value:
            self._directory.pop(entry.key, None)
            return
        try:
            self._directory[entry.key] = json.loads(entry.value)
        except ValueError:
            log.warning("directory entry %s is not JSON; ignored", entry.key)

    def learn(self, node: str, wire: dict[str, Any]) -> None:
        """Another node's event, ahead of its directory entry: a new session is known at once,
        and a state change shows before the entry catches up."""
        session_id = wire.get("session")
        if not session_id:
            return
        key = f"{node}.{session_id}"
        if wire.get("type") == "session.spawned" and key not in self._directory:
            self._directory[key] = {"id": session_id, "name": wire.get("name"), "node": node, "state": "starting",
                                    "state_reason": None, "parent_id": wire.get("parent"),
                                    "provider": wire.get("provider"), "workdir": wire.get("workdir"),
                                    "created_at": wire.get("at"), "last_activity": wire.get("at")}
        elif wire.get("type") == "state.changed" and key in self._directory:
            self._directory[key]["state"] = wire.get("state")
        elif wire.get("type") == "session.renamed" and key in self._directory:
            self._directory[key]["name"] = wire.get("name")

    def node_up(self, node: str) -> bool:
        if node == self.node:
            return True
        seen = self._seen.get(node)
        return seen is not None and self._clock() - seen <= self._settings.node_unreachable_after

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Every node this one has heard of: whether it is up, and when it was last heard."""
        out = {self.node: {"up": True, "seen": self._clock(), "nats": self.connected}}
        for node, seen in self._seen.items():
            out[node] = {"up": self.node_up(node), "seen": seen}
        return out

    def remote_sessions(self) -> list[Remote]:
        """Other nodes' live sessions; those of a node that went silent are `unreachable`."""
        out = []
        for entry in self._directory.values():
            shown = dict(entry)
            if not self.node_up(str(entry.get("node"))):
                shown["state"] = State.UNREACHABLE.value
            out.append(Remote(shown))
        return sorted(out, key=lambda r: r.entry.get("created_at") or 0.0)

    def find(self, ref: str) -> Remote | None:
        """A session on another node by id, `name@node` or name."""
        name, _, node = ref.partition("@")
        for remote in self.remote_sessions():
            if remote.id == ref or (remote.entry["name"] == name and (not node or remote.node == node)):
                return remote
        return None

    def known_ids(self) -> set[str]:
        return {str(e["id"]) for e in self._directory.values()}

    # -- events ----------------------------------------------------------------------

    def publish_event(self, event: Event) -> None:
        try:
            self._events.put_nowait(event.to_dict())
        except asyncio.QueueFull:
            self._events.get_nowait()
            self._events.put_nowait(event.to_dict())
            log.warning("NATS is not keeping up with events; dropped the oldest")

    async def _publish_events(self) -> None:
        pending: dict[str, Any] | None = None
        while True:
            if pending is None:
                pending = await self._events.get()
            pending["node"] = self.node
            try:
                await self._js.publish(f"sm.{self.node}.events.{pending['type']}",
                                       json.dumps(pending, default=str).encode(), stream=EVENTS_STREAM)
                pending = None
            except Exception as exc:
                log.debug("publishing an event failed (%s); again soon", exc)
                await asyncio.sleep(0.5)

    def follow(self, callback: Callable[[str, dict[str, Any]], Awaitable[None]]) -> None:
        """Every other node's events, through this node's durable consumer (`events_<node>`), to
        `callback(node, event)`: a consumer that was down catches up. Started once NATS is up;
        the first time, it starts from now (not the whole retained history)."""
        async def run() -> None:
            await self._connected.wait()
            await self._follow(callback)

        self._spawn(run(), "follow")

    async def _follow(self, callback: Callable[[str, dict[str, Any]], Awaitable[None]]) -> None:
        durable = f"events_{self.node}"

        async def make() -> Any:
            # Made anew from the first event not acknowledged: what a process that died had
            # fetched but not taken comes at once, not after the ack wait. The first time: from now.
            start: dict[str, Any] = {"deliver_policy": api.DeliverPolicy.NEW}
            try:
                info = await self._js.consumer_info(EVENTS_STREAM, durable)
                start = {"deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE,
                         "opt_start_seq": (info.ack_floor.stream_seq if info.ack_floor else 0) + 1}
                await self._js.delete_consumer(EVENTS_STREAM, durable)
            except NotFoundError:
                pass
            await self._js.add_consumer(EVENTS_STREAM, api.ConsumerConfig(
                name=durable, durable_name=durable, filter_subject="sm.*.events.>",
                ack_policy=api.AckPolicy.EXPLICIT, ack_wait=60, **start))
            return await self._js.pull_subscribe_bind(durable=durable, stream=EVENTS_STREAM)

        async def take(msg: Any) -> None:
            node = msg.subject.split(".")[1]
            if node != self.node:
                try:
                    await callback(node, json.loads(msg.data))
                except Exception:
                    log.exception("an event from node %s could not be taken", node)
            await msg.ack()

        await self._pull(make, take, "reading the nodes' events", self._reset_events)

    async def _pull(self, make: Callable[[], Awaitable[Any]], take: Callable[[Any], Awaitable[None]], what: str,
                    reset: asyncio.Event | None = None) -> None:
        """Fetch from a pull consumer (made by `make`) and `take` each message in order, for ever;
        made anew after a failure, or when `reset` is set."""
        while True:
            sub = None
            try:
                if reset is not None:
                    reset.clear()
                sub = await make()
                busy = False
                while reset is None or not reset.is_set():
                    # Idle: wait for one (a fetch of many waits for them all, or its timeout).
                    # Busy: take what is there in one go, so a burst goes in batches.
                    try:
                        msgs = await (sub.fetch(100, timeout=0.01) if busy else sub.fetch(1, timeout=1))
                    except (NatsTimeout, asyncio.TimeoutError):
                        busy = False
                        continue
                    busy = True
                    for msg in msgs:
                        await take(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s failed (%s); again soon", what, exc)
                await asyncio.sleep(1)
            finally:
                if sub is not None:
                    try:
                        await sub.unsubscribe()
                    except Exception:
                        pass

    # -- commands: out ----------------------------------------------------------------

    async def command(self, target_node: str, op: str, args: dict[str, Any], sender: dict[str, Any],
                      wait: float | None = None) -> tuple[int, dict[str, Any] | None]:
        """Queue a command for another node in the local outbox; (its outbox id, its outcome if `wait`).

        Unavailable when waited on and no outcome came in `wait` seconds (the command stays queued).
        """
        msg_id = uuid.uuid4().hex
        body = json.dumps({"id": msg_id, "op": op, "args": args, "sender": sender})
        future: asyncio.Future[dict[str, Any]] | None = None
        if wait:
            future = asyncio.get_running_loop().create_future()
            self._replies[msg_id] = future
        row = await self._store.execute(
            "INSERT INTO cluster_outbox (msg_id, target_node, body, created_at) VALUES (?, ?, ?, ?)",
            (msg_id, target_node, body, self._clock()))
        self._outbox_wake.set()
        if future is None:
            return row, None
        try:
            return row, await asyncio.wait_for(future, wait)
        except asyncio.TimeoutError:
            raise Unavailable(f"node {target_node} did not answer in {wait:g} s; the command is queued "
                              f"and runs when it is back") from None
        finally:
            self._replies.pop(msg_id, None)

    async def outbox_size(self) -> int:
        row = await self._store.fetchone("SELECT COUNT(*) AS n FROM cluster_outbox")
        return int(row["n"]) if row else 0

    async def _pump_outbox(self) -> None:
        delay = 0.1
        while True:
            try:
                await asyncio.wait_for(self._outbox_wake.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            self._outbox_wake.clear()
            while True:
                rows = await self._store.fetchall(
                    "SELECT id, msg_id, target_node, body FROM cluster_outbox ORDER BY id LIMIT 200")
                if not rows:
                    break
                try:
                    for row in rows:
                        await self._js.publish(f"sm.{self.node}.cmd.{row['target_node']}", row["body"].encode(),
                                               stream=COMMANDS_STREAM, headers={"Nats-Msg-Id": row["msg_id"]})
                        await self._store.execute("DELETE FROM cluster_outbox WHERE id = ?", (row["id"],))
                    delay = 0.1
                except Exception as exc:
                    log.debug("publishing a command failed (%s); again in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    break

    # -- commands: in -------------------------------------------------------------------

    @property
    def consumer(self) -> str:
        return f"cmd_{self.node}"

    async def _make_consumer(self) -> Any:
        """The node's durable consumer, made anew: in a work queue only the unacknowledged
        commands remain, so it starts with the redeliveries, in stream order."""
        try:
            await self._js.delete_consumer(COMMANDS_STREAM, self.consumer)
        except NotFoundError:
            pass
        await self._js.add_consumer(COMMANDS_STREAM, api.ConsumerConfig(
            name=self.consumer, durable_name=self.consumer, filter_subject=f"sm.*.cmd.{self.node}",
            ack_policy=api.AckPolicy.EXPLICIT, deliver_policy=api.DeliverPolicy.ALL, ack_wait=60,
            max_ack_pending=1000))
        return await self._js.pull_subscribe_bind(durable=self.consumer, stream=COMMANDS_STREAM)

    async def _consume_commands(self) -> None:
        await self._pull(self._make_consumer, self._take, "reading commands", self._reset_consumer)

    async def _take(self, msg: Any) -> None:
        sender_node = msg.subject.split(".")[1]
        try:
            body = json.loads(msg.data)
            msg_id = (msg.headers or {}).get("Nats-Msg-Id") or body["id"]
        except (ValueError, KeyError, TypeError):
            log.warning("a malformed command from %s was dropped", sender_node)
            await msg.term()
            return
        try:
            result = await self._apply(sender_node, msg_id, body)
            reply: dict[str, Any] | None = {"ok": True, "result": result} if result is not None else None
        except SmError as exc:
            log.info("command %s from node %s refused: %s", body.get("op"), sender_node, exc)
            reply = error_reply(exc)
        except Exception as exc:
            # Not applied (a store that failed): it comes again, before anything newer; a
            # command that fails every time is dropped, not left to hold up every later one.
            log.exception("applying command %s from node %s failed", body.get("op"), sender_node)
            if msg.metadata.num_delivered >= MAX_ATTEMPTS:
                log.error("command %s from node %s dropped after %d attempts", msg_id, sender_node, MAX_ATTEMPTS)
                await msg.term()
                return
            await msg.nak(delay=1)
            self._reset_consumer.set()
            raise RuntimeError("command not applied") from exc
        await msg.ack()
        if reply is not None or body.get("wait"):
            reply = reply or {"ok": True, "result": None}
            reply["id"] = msg_id
            try:
                await self._nc.publish(f"sm.{self.node}.reply.{sender_node}", json.dumps(reply).encode())
            except Exception:
                log.warning("could not send the outcome of %s to %s", msg_id, sender_node, exc_info=True)

    async def applied(self, tx: Any, msg_id: str, sender_node: str) -> bool:
        """Record `msg_id` as applied inside the effect's transaction; False if it already was."""
        return bool(await tx.execute_rowcount(
            "INSERT OR IGNORE INTO cluster_applied (msg_id, sender_node, applied_at) VALUES (?, ?, ?)",
            (msg_id, sender_node, self._clock())))

    async def was_applied(self, msg_id: str) -> bool:
        return await self._store.fetchone("SELECT 1 FROM cluster_applied WHERE msg_id = ?", (msg_id,)) is not None

    async def _on_reply(self, msg: Any) -> None:
        try:
            reply = json.loads(msg.data)
        except ValueError:
            return
        future = self._replies.get(str(reply.get("id")))
        if future is not None and not future.done():
            future.set_result(reply)
        elif not reply.get("ok"):
            log.warning("node %s refused a command: %s", msg.subject.split(".")[1], reply.get("error"))

    # -- reads ---------------------------------------------------------------------------

    async def request(self, target_node: str, op: str, args: dict[str, Any], sender: dict[str, Any],
                      timeout: float = 30.0) -> Any:
        """Asked of another node now (output, what, screen, a prompt's decision); Unavailable if it
        does not answer."""
        if not self.connected:
            raise Unavailable(f"NATS is unreachable: cannot ask node {target_node}")
        try:
            msg = await self._nc.request(f"sm.{self.node}.req.{target_node}",
                                         json.dumps({"op": op, "args": args, "sender": sender}).encode(),
                                         timeout=timeout)
        except Exception as exc:
            raise Unavailable(f"node {target_node} did not answer ({type(exc).__name__})") from None
        return raise_reply(json.loads(msg.data))

    async def _on_request(self, msg: Any) -> None:
        sender_node = msg.subject.split(".")[1]
        try:
            body = json.loads(msg.data)
            reply = {"ok": True, "result": await self._answer(sender_node, body)}
        except SmError as exc:
            reply = error_reply(exc)
        except Exception as exc:
            log.exception("answering a request from %s failed", sender_node)
            reply = error_reply(Unavailable(f"node {self.node} failed: {type(exc).__name__}"))
        try:
            await msg.respond(json.dumps(reply, default=str).encode())
        except Exception:
            log.debug("could not answer a request from %s", sender_node)


# -- the server's side: one user per node, as tight as JetStream allows ----------------------

def node_permissions(node: str) -> dict[str, Any]:
    """What node `node`'s NATS user may publish and subscribe to (nats-server.conf.example).

    It publishes only under its own name (`sm.<node>.>`, `$KV.sm_sessions.<node>.>`), reads only
    its own commands (its one consumer, its filter pinned in the create subject), and gets
    replies on its own inbox prefix, so no node reads another's replies.
    """
    consumer = f"cmd_{node}"
    events = f"events_{node}"
    kv = f"KV_{BUCKET}"
    publish = [
        f"sm.{node}.>", f"$KV.{BUCKET}.{node}.>",
        "$JS.API.INFO",
        *(f"$JS.API.STREAM.{verb}.{s}" for verb in ("INFO", "CREATE") for s in (EVENTS_STREAM, COMMANDS_STREAM, kv)),
        # its own commands: one durable consumer, made anew at start
        f"$JS.API.CONSUMER.CREATE.{COMMANDS_STREAM}.{consumer}.sm.*.cmd.{node}",
        *(f"$JS.API.CONSUMER.{verb}.{COMMANDS_STREAM}.{consumer}" for verb in ("INFO", "DELETE", "MSG.NEXT")),
        f"$JS.ACK.{COMMANDS_STREAM}.{consumer}.>",
        # the bot's durable reader of every node's events (only the sm-bot host uses it)
        f"$JS.API.CONSUMER.CREATE.{EVENTS_STREAM}.{events}.>",
        *(f"$JS.API.CONSUMER.{verb}.{EVENTS_STREAM}.{events}" for verb in ("INFO", "DELETE", "MSG.NEXT")),
        f"$JS.ACK.{EVENTS_STREAM}.{events}.>",
        # reading the directory: watches (ephemeral ordered consumers) and gets
        f"$JS.API.CONSUMER.CREATE.{kv}", f"$JS.API.CONSUMER.CREATE.{kv}.>", f"$JS.API.CONSUMER.DELETE.{kv}.>",
        f"$JS.API.CONSUMER.INFO.{kv}.>",
        f"$JS.API.DIRECT.GET.{kv}.>", f"$JS.API.STREAM.MSG.GET.{kv}", f"$JS.FC.{kv}.>",
    ]
    subscribe = [f"_INBOX_{node}.>", f"sm.*.req.{node}", f"sm.*.reply.{node}"]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}, "allow_responses": True}


def server_config(users: dict[str, str], *, listen: str = "0.0.0.0:4222", store_dir: str = "/var/lib/nats") -> str:
    """A nats-server configuration: JetStream, and one user per node (`users`: node -> password)."""
    blocks = []
    for node, password in users.items():
        perms = json.dumps(node_permissions(node), indent=2).replace("\n", "\n      ")
        blocks.append(f'    {{ user: "{node}", password: {json.dumps(password)}, permissions: {perms} }}')
    return ("# nats-server configuration for sm on several hosts (README \"Several hosts\"): JetStream, and one\n"
            "# user per node whose permissions let it speak only for itself. Made by\n"
            "#   python -m core.cluster laptop:PASSWORD workstation:PASSWORD > nats-server.conf\n"
            "# Run: nats-server -c nats-server.conf\n"
            f'listen: "{listen}"\n'
            f"jetstream {{ store_dir: {json.dumps(store_dir)} }}\n"
            "# TLS: uncomment, and give nodes SM_NATS_URL=tls://host:4222 (and SM_NATS_CA if self-signed).\n"
            '# tls { cert_file: "/etc/nats/server.pem", key_file: "/etc/nats/server-key.pem" }\n'
            "authorization {\n  users: [\n" + ",\n".join(blocks) + "\n  ]\n}\n")


if __name__ == "__main__":  # python -m core.cluster laptop:PASSWORD workstation:PASSWORD > nats-server.conf
    import sys

    print(server_config(dict(arg.split(":", 1) for arg in sys.argv[1:])), end="")
