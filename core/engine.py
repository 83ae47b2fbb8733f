"""The engine, built once per process and handed to the doors.

It is the only door into core: everything a door (the API, the Telegram bot,
the hooks through the API) may do is a method here, taking the `Caller` the
door authenticated, and permission checks live here, not in the doors. The
engine's parts are private; a door gets sessions, messages, events and
errors (with a kind, see core.errors) and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from core import environment, paths, peer, spool
from core.config import Settings
from core.delivery import Delivery, DeliveryTuning
from core.errors import Conflict, Forbidden, Invalid, LimitReached, NotFound, SmError, Unavailable
from core.events import Event, EventBus, FilesShared, Subscription, UsageUpdated, event_from_dict
from core import sharing
from core.hookevents import HOOK_EVENTS, CodexTurnEnd, HookEvents, SessionStart, Stop, parse_hook
from core.lifecycle import Caller, Lifecycle
from core.inbox import Inbox
from core.limits import Limits
from core.locks import Lock, Locks
from core.monitor import Monitor
from core.providers import dialog_options, get_provider
from core.permissions import DECISIONS, Permissions
from core.queue import MODES, Message, MessageQueue
from core.retention import Pruner, Retention
from core.sessions import Session, SessionRegistry
from core.state import Reason, ReasonKind, State, StateMachine
from core.types import PROVIDER_NAMES
from core.store import Store
from core.text import check_text
from core.transcribe import TranscriptionFailed, transcribe
from core.tmux import Tmux
from core.types import TOOLBAR, PaneScreen
from core.usage import Spend, UsageBook
from core.waits import Waits
from core import worktrees as wt
from core.what import Summaries, fallback_summary, last_assistant_messages, summarize

log = logging.getLogger(__name__)

# The vocabulary a door may show or validate against.
SEND_MODES: tuple[str, ...] = MODES
__all__ = ["Engine", "HOOK_EVENTS", "PROVIDER_NAMES", "SEND_MODES"]

# What a person sent, as the agent is told it: "sent a photo: /path".
RECEIVED = {"photo": ("a photo", "photos"), "document": ("a file", "files"), "audio": ("an audio file", "audio files"),
            "voice": ("a voice note", "voice notes"), "video": ("a video", "videos"),
            "animation": ("an animation", "animations")}
INBOX_SWEEP = 24 * 3600.0

WRITE_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})


def git_root(path: str) -> str:
    """The workspace of a directory: its git repository root, or itself."""
    try:
        out = subprocess.run(
            ["git", "-C", path, "rev-parse", "--show-toplevel"],
            capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return os.path.realpath(path)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else os.path.realpath(path)


def ensure_owner_token(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


class Engine:
    settings: Settings

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        sm_command: str,
        hook_settings: dict[str, Any],
        tmux: Tmux | None = None,
        clock: Callable[[], float] = time.time,
        tuning: DeliveryTuning | None = None,
        allowed_roots: list[Path] | None = None,
    ) -> None:
        """`sm_command` and `hook_settings` come from the hooks package
        (`hooks.cli_command()`, `hooks.settings_for()`): how an agent runs the
        `sm` CLI, and the Claude Code settings that run sm's hooks."""
        self.settings = settings
        # Where a person may start agents from the phone (the Telegram door's roots): checked
        # here for a /new that another node asks of this one (several hosts).
        self._allowed_roots = list(allowed_roots or [])
        self._store = store
        self._clock = clock
        self._bus = EventBus(clock)
        self._tmux = tmux or Tmux(settings.tmux_socket, settings.state_dir / "tmux")
        self._registry = SessionRegistry(store, clock)
        self._states = StateMachine(self._registry, self._bus, clock)
        self._queue = MessageQueue(store, self._bus, clock)
        tuning = tuning or DeliveryTuning(inline_bytes=settings.inline_message_bytes)
        self._delivery = Delivery(self._registry, self._states, self._queue, self._tmux,
                                  settings.state_dir / "messages", tuning, clock)
        self._waits = Waits(store, self._registry, self._states, self._queue, clock)
        self._waits.elsewhere = self._wake_elsewhere
        self._delivery.on_delivered(self._waits.on_delivered)
        self._worktrees = wt.Worktrees(store)
        self._usage = UsageBook(store, settings.price_table())
        self._lifecycle = Lifecycle(settings, self._registry, self._states, self._queue,
                                    self._tmux, self._bus, sm_command, hook_settings, clock,
                                    worktrees=self._worktrees)
        self._permissions = Permissions(self._bus, settings.permission_timeout)
        self._limits = Limits(settings, self._registry, self._states, self._queue, clock)
        self._hooks = HookEvents(self._registry, self._states, self._delivery, self._bus, self._permissions,
                                 self._limits)
        self._monitor = Monitor(self._registry, self._states, self._queue, self._tmux, self._bus,
                                settings.monitor_poll_interval,
                                # Reminders are opt-in: off, no session is ever idle long enough.
                                settings.monitor_idle_timeout if settings.monitor_idle_reminder else float("inf"),
                                clock, limits=self._limits)
        self._locks = Locks(store, self._registry, settings.lock_lease, git_root, clock)
        self._retention = Retention(store, settings.retention_days, settings.state_dir / "messages", clock)
        self._states.on_change(self._release_locks_of_the_gone)
        self._states.on_change(self._settle_the_gone)
        self._owner_token = ""
        self._drain_lock = asyncio.Lock()
        self._shutdown = asyncio.Event()
        self._summaries = Summaries(ttl=10.0)
        self._pane_pids: dict[int, str] = {}  # a pane's process -> its session, for caller_for_peer
        self._tmux_server_pid: int | None = None
        self._inbox = Inbox(settings.inbox_dir, clock)
        self._sweeper: asyncio.Task[None] | None = None
        self._links: dict[str, dict[str, Any]] = {}  # a door's link to the outside, as it reports it
        # Several hosts (core/cluster.py): only with SM_NATS_URL; one host never imports nats.
        self._cluster: Any = None
        if settings.nats_url:
            from core.cluster import Cluster

            self._cluster = Cluster(settings, store, self._apply_command, self._answer_request, clock)
            self._bus.tap(self._to_cluster)

    @classmethod
    async def open(cls, settings: Settings, **kwargs: Any) -> "Engine":
        settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = await Store.open(settings.db_path)
        return cls(settings, store, **kwargs)

    async def start(self) -> None:
        self._owner_token = ensure_owner_token(self.settings.owner_token_path)
        # A tmux server from before (an older sm, or one started with secrets in its
        # environment) must not hand them to the next agent.
        deny = tuple(self.settings.env_deny)
        removed = await self._tmux.forget_global_env(lambda name: environment.is_secret(name, deny))
        if removed:
            log.warning("removed %d secret(s) from the tmux server's environment: %s",
                        len(removed), ", ".join(removed))
        await self._registry.load()
        await self._lifecycle.adopt()
        if self._cluster is not None:
            await self._cluster.start(self._registry.live)
        # Hooks spooled while sm was down are replayed first: a spooled
        # UserPromptSubmit settles a batch that a crash left in flight.
        await self._drain_spool()
        self._monitor.start()
        self._limits.start()
        await self._waits.start()
        for session in self._registry.live():
            self._delivery.wake(session.id)
        self._retention.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_inbox(), name="inbox-sweeper")
        lost = self.lost(Caller(None))
        if lost and self.settings.resume_on_start == "all":
            for outcome in await self.resume_all(Caller(None, "sm at start (SM_RESUME_ON_START=all)")):
                if outcome["error"]:
                    log.error("could not resume %s: %s", outcome["name"], outcome["error"])
        elif lost:
            log.warning("%d lost session(s), their tmux gone (a reboot?): %s; resume with `sm resume --all`%s",
                        len(lost), ", ".join(s.label for s in lost),
                        "" if self.settings.resume_on_start == "ask" else " (SM_RESUME_ON_START=never)")


    async def _sweep_inbox(self) -> None:
        """Inbox files older than SM_INBOX_RETENTION_DAYS go: now, then daily."""
        while True:
            try:
                removed = await asyncio.to_thread(self._inbox.prune,
                                                  self.settings.inbox_retention_days * 24 * 3600)
                if removed:
                    log.info("removed %d inbox file(s) older than %g days", removed,
                             self.settings.inbox_retention_days)
            except Exception:
                log.exception("sweeping the inbox failed")
            await asyncio.sleep(INBOX_SWEEP)

    async def stop(self) -> None:
        await self._limits.stop()
        await self._usage.stop()
        await self._retention.stop()
        if self._sweeper:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self._monitor.stop()
        await self._waits.stop()
        await self._delivery.stop()
        if self._cluster is not None:
            await self._cluster.stop()
        await self._store.close()

    @property
    def owner_token(self) -> str:
        """The owner's API token, e.g. for a door's log redaction; empty before start()."""
        return self._owner_token

    def request_shutdown(self, caller: Caller) -> None:
        """Ask the process to stop as SIGTERM would (agents keep running): the owner only."""
        if not caller.is_owner:
            raise Forbidden("only the owner can stop the server")
        self._shutdown.set()

    async def shutdown_requested(self) -> None:
        """Returns when `request_shutdown` was called."""
        await self._shutdown.wait()

    def health(self) -> dict[str, Any]:
        # Bytes read from transcripts for usage since start: reads are incremental (tests, bench).
        return {"ok": True, "sessions": self.live_count(), "links": self.links(),
                "transcript_bytes_read": self._usage.bytes_read,
                "usage_reads_pending": self._usage.reads_pending}

    # -- links to the outside (a door reports, status and health show) -----------------

    def report_link(self, caller: Caller, link: str, state: str, detail: str = "") -> bool:
        """A door's word on its link to the outside (e.g. "telegram": up, down, refused).

        The engine keeps and shows it (`status`, `health`) and never acts on it:
        agents work whether or not a door can reach its service. True when it changed.
        """
        if not caller.is_owner:
            raise Forbidden("only sm's own doors report their links")
        known = self._links.get(link)
        if known and known["state"] == state and known["detail"] == detail:
            return False
        self._links[link] = {"state": state, "detail": detail, "since": self._clock()}
        return True

    def links(self) -> dict[str, dict[str, Any]]:
        """Each reported link's state, detail and since when."""
        return {name: dict(value) for name, value in self._links.items()}

    def live_count(self) -> int:
        return len(self._registry.live())

    # -- identity --------------------------------------------------------------------

    async def caller_for_peer(self, pid: int | None, token: str) -> Caller | None:
        """The caller on the API's Unix socket, from the kernel first.

        A process inside a managed pane (the pane's process or any descendant)
        *is* that agent, whatever token it sends, or none: dropping SM_TOKEN
        does not make an agent the owner. Outside every pane, the token decides
        (the owner token, or an agent's token for its hooks run elsewhere).
        """
        if pid is not None:
            session = await self._session_of_process(pid)
            if session is not None:
                return Caller(session)
        return self.caller_for_token(token)

    async def _session_of_process(self, pid: int) -> Session | None:
        chain = list(peer.ancestry(pid))
        session = self._session_in(chain)
        if session is not None:
            return session
        # Not a pane we know. If it runs under sm's tmux server at all, the map is
        # stale (a pane started since): look again, once.
        server = await self._server_pid()
        if server is None or server not in chain:
            return None
        panes = await self._tmux.list_panes()
        by_pane = {s.pane_id: s.id for s in self._registry.live() if s.pane_id}
        self._pane_pids = {p.pid: by_pane[p.pane_id] for p in panes if p.pid and p.pane_id in by_pane}
        return self._session_in(chain)

    async def _server_pid(self) -> int | None:
        """sm's tmux server, remembered while it lives (asking tmux forks a client)."""
        if self._tmux_server_pid is not None and peer.alive(self._tmux_server_pid):
            return self._tmux_server_pid
        self._tmux_server_pid = await self._tmux.server_pid()
        return self._tmux_server_pid

    def _session_in(self, chain: list[int]) -> Session | None:
        for pid in chain:
            session_id = self._pane_pids.get(pid)
            if session_id is not None:
                session = self._registry.get_live(session_id)
                if session is not None:
                    return session
        return None

    def caller_for_token(self, token: str) -> Caller | None:
        """The caller an API token belongs to: the owner, an agent, or no one."""
        if not token:
            return None
        if self._owner_token and secrets.compare_digest(token, self._owner_token):
            return Caller(None)
        session = self._registry.by_token(token)
        return Caller(session) if session else None

    def caller_for_person(self, label: str) -> Caller:
        """The owner, acting as a person through a door that authenticated them.

        `label` is what appears as the sender, e.g. "owner via telegram (alice)".
        """
        return Caller(None, label)

    # -- sessions --------------------------------------------------------------------

    def sessions(self, caller: Caller) -> list[Session]:
        """The live sessions (every caller may list them)."""
        return self._registry.live()

    async def session(self, caller: Caller, ref: str) -> Session:
        """A session by id or name; NotFound if there is none. Several hosts: a session no node
        here has live may be another node's (`node_of` says whose); it has no pane here."""
        try:
            found = await self._registry.resolve(ref)
        except NotFound:
            remote = await self._remote(ref)
            if remote is None:
                raise
            return remote.session()
        if not found.live:
            remote = await self._remote(ref)
            if remote is not None:
                return remote.session()
        return found

    def _check_here(self, target: Session, verb: str) -> None:
        """What only the node running a session can do (its pane, its files, its tmux)."""
        node = self.node_of(Caller(None), target.id)
        if node is not None:
            raise Invalid(f"{target.label} runs on node {node}: {verb} it there")

    async def _here(self, caller: Caller, ref: str) -> Session:
        """A session of this node, for a command from another node (never forwarded again)."""
        target = await self._registry.resolve(ref)
        if not target.live:
            raise NotFound(f"no live session {ref!r} on node {self.settings.node}")
        return target

    async def queue_counts(self, caller: Caller) -> dict[str, int]:
        """Messages waiting, by target session id."""
        return await self._queue.counts()

    async def attach_command(self, caller: Caller, ref: str) -> list[str]:
        """The command a person runs in a terminal to watch and type into a session."""
        target = await self.session(caller, ref)
        self._check_here(target, "attach to")
        return self._tmux.attach_command(target.tmux_session)

    async def spawn(self, caller: Caller, prompt: str = "", *, name: str | None = None,
                    provider: str = "claude", workdir: str | None = None,
                    wait: float | None = None, worktree: str | None = None, host: str | None = None,
                    confine: bool = False) -> Session:
        """`worktree`: start the agent in a new git worktree, on branch `worktree` ("" for sm/<name>).
        `host`: on that node (several hosts), which checks the directory and its own limits; with
        `confine` (a person's /new) the directory must be under that node's allowed roots."""
        if host and host != self.settings.node:
            return await self._spawn_remote(caller, host, prompt, name=name, provider=provider,
                                            workdir=workdir, wait=wait, worktree=worktree, confine=confine)
        return await self._spawn_here(caller, prompt, name=name, provider=provider, workdir=workdir,
                                      wait=wait, worktree=worktree)

    async def _spawn_here(self, caller: Caller, prompt: str = "", *, name: str | None = None,
                          provider: str = "claude", workdir: str | None = None, wait: float | None = None,
                          worktree: str | None = None, session_id: str | None = None) -> Session:
        if wait and caller.session is None:
            raise Invalid("--wait wakes the calling agent with a message; run it inside a session sm started")
        if prompt:
            prompt = check_text(prompt, self.settings.max_message_bytes)
        self._check_spawn_caps(caller)
        if name:
            await self._free_name_of_failed_start(name)
        session = await self._lifecycle.spawn(caller, prompt, name=name, provider=provider, workdir=workdir,
                                              worktree=worktree, session_id=session_id or self._new_id())
        self._monitor.poke()
        if wait and caller.session and session.state != State.ERRORED:
            await self._waits.add(caller.session, session, wait, kind="spawn")
        return session

    async def _free_name_of_failed_start(self, name: str) -> None:
        """A start that failed keeps showing in `sm status` (errored, with its cause) until
        its name is wanted again: then it is buried, and the new start takes the name."""
        for old in self._registry.live():
            if old.name == name and old.state == State.ERRORED and old.state_kind == ReasonKind.START_FAILED:
                await self._states.set(old, State.DEAD, Reason(ReasonKind.START_FAILED, f"{old.state_reason}"
                                                               f" (its name went to a new start)"), source="spawn")
                try:
                    await self._tmux.kill_session(old.tmux_session)
                except Exception:
                    log.debug("no tmux session left of %s", old.label)

    def _check_spawn_caps(self, caller: Caller) -> None:
        live = self._registry.live()
        if len(live) >= self.settings.max_sessions:
            raise LimitReached(f"{len(live)} sessions are live, the most sm runs at once (SM_MAX_SESSIONS); "
                               "kill one first")
        children = [s for s in live if s.parent_id == caller.id]
        if len(children) >= self.settings.max_children:
            raise LimitReached(f"{caller.label} already has {len(children)} live children, the most one parent "
                               "may have (SM_MAX_CHILDREN); wait for one to finish, or kill one")
        depth = self._registry.depth(caller.session) + 1 if caller.session else 1
        if depth > self.settings.max_spawn_depth:
            raise LimitReached(f"a child of {caller.label} would be {depth} generations deep, deeper than "
                               f"SM_MAX_SPAWN_DEPTH ({self.settings.max_spawn_depth}); ask your parent instead")

    def _check_may_read(self, caller: Caller, target: Session) -> None:
        """An agent reads only itself and its descendants (screens, summaries, transcripts)."""
        if caller.is_owner or self._registry.is_self_or_descendant(target, caller.id or ""):
            return
        raise Forbidden(f"{caller.label} may not read {target.label}: only itself and its descendants")

    async def kill(self, caller: Caller, ref: str) -> Session:
        remote = await self._remote(ref)
        if remote is not None:
            await self._command(caller, remote, "kill", {})
            return remote.session()
        target = await self.session(caller, ref)
        await self._lifecycle.kill(caller, target)
        return target

    async def resume(self, caller: Caller, ref: str) -> Session:
        """Run a lost session again (see Lifecycle.resume); its queue follows once it is ready."""
        target = await self.session(caller, ref)
        self._check_here(target, "resume")
        await self._lifecycle.resume(caller, target)
        self._monitor.poke()
        return target

    async def resume_all(self, caller: Caller) -> list[dict[str, Any]]:
        """Resume every lost session the caller may manage: each one's outcome."""
        out = []
        for session in [s for s in self._registry.live() if s.state == State.LOST]:
            try:
                self._lifecycle.check_may_manage(caller, session, "resume")
            except Forbidden:
                continue
            try:
                await self.resume(caller, session.id)
                out.append({"id": session.id, "name": session.name, "resumed": True, "error": None})
            except SmError as exc:
                out.append({"id": session.id, "name": session.name, "resumed": False, "error": str(exc)})
        return out

    def lost(self, caller: Caller) -> list[Session]:
        """Sessions whose tmux is gone, waiting for `resume`."""
        return [s for s in self._registry.live() if s.state == State.LOST]

    async def rename(self, caller: Caller, ref: str, name: str) -> Session:
        target = await self.session(caller, ref)
        self._check_here(target, "rename")
        if target.name != name:
            self._lifecycle.check_may_manage(caller, target, "rename")
            await self._free_name_of_failed_start(name)
        return await self._lifecycle.rename(caller, target, name)

    def children(self, caller: Caller) -> list[Session]:
        return self._registry.children(caller.id)

    async def others(self, caller: Caller, workdir: str | None = None) -> list[Session]:
        """Other live sessions working in the caller's workspace (git root): an agent's
        is its own workdir's; the owner's is `workdir`'s (the CLI sends its cwd)."""
        def roots() -> tuple[str, dict[str, str]]:
            here = git_root(caller.session.workdir if caller.session else workdir or os.getcwd())
            return here, {s.id: git_root(s.workdir) for s in self._registry.live() if s.id != caller.id}

        here, theirs = await asyncio.to_thread(roots)  # git runs in a thread, not on the loop
        return [s for s in self._registry.live()
                if theirs.get(s.id) == here and s.state != State.ERRORED]

    async def describe(self, caller: Caller, sessions: list[Session]) -> list[dict[str, Any]]:
        """Sessions as the API shows them: their fields, tokens and cost, worktree and branch."""
        spend = await self._spend([s for s in sessions])
        out = []
        for s in sessions:
            item = s.public()
            item["usage"] = spend[s.id].public(self._usage.prices)
            w = await self._worktrees.of(s.id)
            item["worktree"] = w.path if w and w.removed_at is None else None
            item["branch"] = w.branch if w else None
            out.append(item)
        return out

    async def _spend(self, sessions: list[Session], since: float | None = None,
                     fresh: bool = False) -> dict[str, Spend]:
        """The stored figures, read at each turn's end; `fresh` reads the live sessions'
        transcripts up to now first (`sm cost`). Listing many sessions reads no file."""
        if fresh:
            for s in sessions:
                if s.live:
                    await self._usage.refresh(s.id, s.transcript_path)
        spend = await self._usage.spend([s.id for s in sessions], since)
        for s in sessions:
            spend[s.id].reported = spend[s.id].reported or get_provider(s.provider).records_usage
        return spend

    async def _read_usage(self, session: Session, path: str | None = None) -> None:
        """A turn ended: read what it used; the card follows when the figures grow."""
        def grew() -> None:
            self._bus.publish(UsageUpdated(session=session.id, name=session.name))

        try:
            await self._usage.after_turn(session.id, path or session.transcript_path, grew)
        except Exception:
            log.exception("reading the usage of %s failed", session.label)

    async def status(self, caller: Caller, everything: bool = False) -> dict[str, Any]:
        """Who the caller is, the live sessions, locks, and the messages that could not be
        delivered: those of the last `status_undelivered_window` seconds, or all of them."""
        counts = await self._queue.counts()
        live = self._registry.live()
        sessions = await self.describe(caller, live)
        for s, item in zip(live, sessions):
            item["queued"] = counts.get(s.id, 0)
            if s.state == State.WAITING and (caller.is_owner or self._registry.is_self_or_descendant(s, caller.id or "")):
                # What the dialog offers (its keys and labels): an answer is one `sm` call away.
                item["options"] = [list(o) for o in await self._options_on_screen(s)]
        window = self.settings.status_undelivered_window
        since = 0.0 if everything else self._clock() - window
        undelivered = [
            {"id": m.id, "target": m.target_id, "from": m.sender_label, "status": m.status,
             "error": m.error, "text": m.body[:200]}
            for m in await self._queue.undelivered(since, limit=1_000_000 if everything else 50)
        ]
        me = caller.session.public() if caller.session else None
        files, size = await asyncio.to_thread(self._inbox.size)
        kept = [w for w in await self.worktrees(caller) if not w["live"]]
        extra: dict[str, Any] = {}
        if self._cluster is not None:
            sessions = self._with_other_nodes(sessions)
            extra["nodes"] = self.nodes(caller)
        return {**extra, "you": me or {"name": "owner"}, "sessions": sessions, "undelivered": undelivered,
                "undelivered_older": 0 if everything else await self._queue.undelivered_before(since),
                "undelivered_window": None if everything else window,
                "locks": await self.lock_list(caller), "inbox": {"files": files, "bytes": size},
                "links": self.links(), "worktrees": kept}

    # -- worktrees -------------------------------------------------------------------

    async def _settle_the_gone(self, session: Session, previous: str) -> None:
        """A session ended: read the last of its usage; remove its worktree if clean and merged."""
        if not (session.state == State.DEAD or session.gone):
            return
        await self._usage.refresh(session.id, session.transcript_path)
        w = await self._worktrees.of(session.id)
        if w is None or w.removed_at is not None:
            return
        removed, found = await asyncio.to_thread(wt.remove_if_done, w)
        if removed:
            await self._worktrees.removed(w)
            log.info("removed the worktree of %s (%s): clean and merged into %s", session.label, w.path, w.base)
        else:
            why = "dirty" if found.get("dirty") else f"not merged into {w.base}"
            log.info("kept the worktree of %s (%s): %s", session.label, w.path, found.get("error") or why)

    async def worktrees(self, caller: Caller) -> list[dict[str, Any]]:
        """The worktrees sm made that still exist: branch, ahead/behind, dirty, and how to remove each."""
        out = []
        for w in await self._worktrees.existing():
            if not caller.is_owner and not self._registry.descends_from(w.session_id, caller.id or ""):
                continue
            found = await asyncio.to_thread(wt.inspect, w)
            if not found["exists"]:
                await self._worktrees.removed(w)  # removed by hand
                continue
            session = self._registry.get_live(w.session_id)
            found["name"] = session.name if session else None
            found["live"] = bool(session and not session.gone)
            out.append(found)
        return out

    async def prune_worktrees(self, caller: Caller) -> list[dict[str, Any]]:
        """Remove the clean, merged worktrees of ended sessions (an agent: of its descendants)."""
        pruned = []
        for found in await self.worktrees(caller):
            if found["live"] or found["dirty"] or not found["merged"]:
                continue
            w = await self._worktrees.of(found["session"])
            if w is None:
                continue
            removed, _ = await asyncio.to_thread(wt.remove_if_done, w)
            if removed:
                await self._worktrees.removed(w)
                pruned.append(found)
        return pruned

    # -- tokens and cost ---------------------------------------------------------------

    async def usage(self, caller: Caller, ref: str) -> dict[str, Any]:
        """One session's tokens and cost, as read at the end of its last turn."""
        target = await self.session(caller, ref)
        return (await self._spend([target]))[target.id].public(self._usage.prices)

    async def cost(self, caller: Caller, ref: str | None = None, since: float | None = None) -> dict[str, Any]:
        """A swarm's tokens and cost: a session and its descendants, the dead included.

        No session: the caller's own swarm (the owner's: every session). `since`
        (epoch seconds) counts only the model calls answered from then on. The
        live sessions' transcripts are read up to now first.
        """
        root = caller.id
        if ref:
            target = await self.session(caller, ref)
            self._check_may_read(caller, target)
            root = target.id
        members = []
        for row in await self._store.fetchall("SELECT * FROM sessions ORDER BY created_at"):
            if root is None or self._registry.descends_from(row["id"], root):
                members.append(self._registry.get_live(row["id"]) or Session(**dict(row)))
        spend = await self._spend(members, since, fresh=True)
        total = Spend()
        rows = []
        for s in members:
            total.merge(spend[s.id])
            rows.append({"id": s.id, "name": s.name, "provider": s.provider, "state": s.state.value,
                         "parent_id": s.parent_id, "usage": spend[s.id].public(self._usage.prices)})
        return {"root": root, "since": since, "sessions": rows, "total": total.public(self._usage.prices)}

    # -- messages --------------------------------------------------------------------

    async def send(self, caller: Caller, ref: str, text: str, mode: str = "sequential",
                   origin: str | None = None) -> Message:
        """Queue a message from the caller (an agent, the owner, or a person) to a session."""
        if mode not in MODES:
            raise Invalid(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        remote = await self._remote(ref)
        if remote is not None:
            body = check_text(text, self.settings.max_message_bytes)
            return await self._command(caller, remote, "send", {"text": body, "mode": mode, "origin": origin})
        target = await self.session(caller, ref)
        self._check_deliverable(target)
        body = check_text(text, self.settings.max_message_bytes)
        message = await self._queue.enqueue(target.id, body, sender_id=caller.id,
                                            sender_label=caller.label, mode=mode, origin=origin)
        assert message is not None
        return message

    @staticmethod
    def _check_deliverable(target: Session) -> None:
        if not target.live:
            raise Invalid(f"{target.label} is dead; messages can't be delivered to it")
        if target.gone:
            raise Invalid(f"{target.label} can't take messages: {target.state_reason}")

    async def press_keys(self, caller: Caller, ref: str, keys: str, origin: str | None = None) -> Message:
        """Answer a dialog on the agent's screen with its own keys (e.g. the option's digit)."""
        if not keys or not all(k.isdigit() or k in ("Enter", "Escape", "Up", "Down", "Tab") for k in keys.split()):
            raise Invalid("keys must be option digits or Enter/Escape/Up/Down/Tab")
        remote = await self._remote(ref)
        if remote is not None:
            return await self._command(caller, remote, "keys", {"keys": keys, "origin": origin})
        target = await self.session(caller, ref)
        self._lifecycle.check_may_manage(caller, target, "answer the dialog of")
        self._check_deliverable(target)
        if target.state != State.WAITING:
            raise Invalid(f"{target.name} has no dialog waiting for an answer now")
        message = await self._queue.enqueue(target.id, keys, sender_id=caller.id, sender_label=caller.label,
                                            mode="urgent", kind="keys", origin=origin)
        assert message is not None
        return message

    async def press_toolbar_key(self, caller: Caller, ref: str, key_name: str,
                                origin: str | None = None) -> Message:
        """A one-tap key of the session's card (core.types.TOOLBAR): its named keys, pressed
        at once whatever the agent is doing; or its slash command, typed when the agent is idle."""
        target = await self.session(caller, ref)
        key = next((k for k in TOOLBAR.get(target.provider, ()) if k.name == key_name), None)
        if key is None:
            names = ", ".join(k.name for k in TOOLBAR.get(target.provider, ()))
            raise Invalid(f"{target.provider} has no toolbar key {key_name!r}; it has: {names}")
        self._lifecycle.check_may_manage(caller, target, "press keys in")
        self._check_deliverable(target)
        if key.text:
            return await self._queue.enqueue(target.id, key.text, sender_id=caller.id,
                                             sender_label=caller.label, kind="command", origin=origin)
        return await self._queue.enqueue(target.id, " ".join(key.keys), sender_id=caller.id,
                                         sender_label=caller.label, mode="urgent", kind="toolbar",
                                         origin=origin)

    def decide_permission(self, caller: Caller, request_id: int, decision: str, by: str) -> None:
        """A person's answer to a permission prompt: allow, always (allow, with Claude's suggested rule) or deny."""
        if not caller.is_owner:
            raise Forbidden(f"{caller.label} may not answer permission prompts; a person does")
        if decision not in DECISIONS:
            raise Invalid(f"unknown decision {decision!r}; use one of {', '.join(DECISIONS)}")
        self._permissions.decide(request_id, decision, by)

    async def answer_permission(self, caller: Caller, ref: str, request_id: int, decision: str, by: str) -> None:
        """A person's answer to a permission prompt of session `ref`, wherever it runs.

        Request ids are per node, so the session says whose request it is. Another node's
        is asked at once (a request, not a durable command): its hook waits there, and a
        decision that came after the hook had given up would answer nothing. That node
        decides with its own `decide_permission`, trusting this node's word that the owner asks.
        """
        if not caller.is_owner:
            raise Forbidden(f"{caller.label} may not answer permission prompts; a person does")
        if decision not in DECISIONS:
            raise Invalid(f"unknown decision {decision!r}; use one of {', '.join(DECISIONS)}")
        remote = await self._remote(ref)
        if remote is not None:
            await self._cluster.request(remote.node, "decide", {
                "target": remote.id, "request": request_id, "decision": decision, "by": by}, self._sender(caller),
                timeout=10.0)
            return
        target = await self.session(caller, ref)
        request = self._permissions.pending.get(request_id)
        if request is None or request.session_id != target.id:
            raise NotFound("this permission request was already answered, or has expired")
        self.decide_permission(caller, request_id, decision, by)

    async def wait(self, caller: Caller, ref: str, seconds: float) -> int:
        if caller.session is None:
            raise Invalid("sm wait wakes the calling agent with a message; run it inside a session sm started")
        if not 0 < seconds <= 7 * 24 * 3600:
            raise Invalid("wait seconds must be between 1 and 604800")
        remote = await self._remote(ref)
        if remote is not None:
            # The wait lives on the target's node; here, the number of its command in the outbox.
            return (await self._command(caller, remote, "wait", {"seconds": seconds})).id
        target = await self.session(caller, ref)
        if target.id == caller.session.id:
            raise Invalid("a session cannot wait for itself")
        return await self._waits.add(caller.session, target, seconds)

    async def clear(self, caller: Caller, ref: str, prompt: str = "") -> Session:
        remote = await self._remote(ref)
        if remote is not None:
            await self._command(caller, remote, "clear", {"prompt": prompt})
            return remote.session()
        target = await self.session(caller, ref)
        self._lifecycle.check_may_manage(caller, target, "clear")
        if not target.live:
            raise Invalid(f"{target.label} is dead")
        if not get_provider(target.provider).has_hooks:
            # No SessionStart(clear) will say when it happened: release now.
            await self._locks.release_all(target)
        await self._queue.enqueue(target.id, "clear", sender_id=caller.id,
                                  sender_label=caller.label, kind="clear")
        if prompt.strip():
            await self.send(caller, target.id, prompt)
        return target

    # -- files -----------------------------------------------------------------------

    def _check_person(self, caller: Caller, what: str) -> None:
        if not caller.is_owner:
            raise Forbidden(f"{caller.label} may not {what}; a person does, from the phone")

    async def inbox_file(self, caller: Caller, ref: str, name: str) -> Path:
        """A new, empty 0600 file in the session's inbox for a file a person sends, named
        after `name` (cleaned: it cannot leave the inbox, hide or overwrite another)."""
        self._check_person(caller, "write into an inbox")
        target = await self.session(caller, ref)
        self._check_here(target, "send files to")
        self._check_deliverable(target)
        return await asyncio.to_thread(self._inbox.reserve, target.id, name)

    def _check_in_inbox(self, target: Session, path: Path) -> None:
        if not self._inbox.holds(target.id, path):
            raise Forbidden(f"{path} is not in {target.label}'s inbox")

    async def receive_files(self, caller: Caller, ref: str, files: list[tuple[str, Path]],
                            caption: str = "", origin: str | None = None) -> Message:
        """Tell the agent, in one queued message, where the files a person sent are.

        `files` are (kind, path) pairs, kind one of RECEIVED (photo, document, ...),
        each path made by `inbox_file`.
        """
        self._check_person(caller, "send files")
        target = await self.session(caller, ref)
        if not files:
            raise Invalid("no files")
        for kind, path in files:
            if kind not in RECEIVED:
                raise Invalid(f"unknown kind of file {kind!r}")
            self._check_in_inbox(target, path)
        kinds = {kind for kind, _path in files}
        if len(files) == 1:
            kind, path = files[0]
            text = f"sent {RECEIVED[kind][0]}: {path}"
        else:
            what = RECEIVED[kinds.pop()][1] if len(kinds) == 1 else "files"
            text = f"sent {len(files)} {what}:\n" + "\n".join(str(path) for _kind, path in files)
        if caption.strip():
            text += "\n" + caption.strip()
        return await self.send(caller, target.id, text, origin=origin)

    async def transcribe(self, caller: Caller, ref: str, path: Path) -> str:
        """The text of a voice note in the session's inbox, by SM_TRANSCRIBE_COMMAND.

        Invalid when no command is configured; Unavailable when it fails or times out.
        """
        self._check_person(caller, "transcribe audio")
        target = await self.session(caller, ref)
        self._check_here(target, "transcribe for")
        self._check_in_inbox(target, path)
        if not self.settings.transcribe_command.strip():
            raise Invalid("no transcription command is configured (SM_TRANSCRIBE_COMMAND)")
        try:
            return await transcribe(self.settings.transcribe_command, path, self.settings.transcribe_timeout)
        except TranscriptionFailed as exc:
            raise Unavailable(f"transcription failed: {exc}") from None

    async def share(self, caller: Caller, paths: list[str], *, to: str | None = None,
                    caption: str = "") -> Session | None:
        """Files from an agent to the phone (`sm share`): its own topic, or with `to`
        its owner ("owner") or an ancestor's topic. Returns the topic's session (None: the owner's)."""
        target: Session | None
        if to in ("owner", "") or (to is None and caller.is_owner):
            target = None
        elif to is None:
            target = caller.session
        else:
            target = await self.session(caller, to)
            if not caller.is_owner and target.id != caller.id and \
                    not self._registry.is_self_or_descendant(caller.session, target.id):  # type: ignore[arg-type]
                raise Forbidden(f"{caller.label} may not share into {target.label}'s topic: "
                                "only your own, your ancestors' or the owner's (--to owner)")
        files = [Path(p) for p in paths]
        if any(not p.is_absolute() for p in files):
            raise Invalid("paths must be absolute (sm share makes them so)")
        secrets_ = [p for p in files if sharing.is_secret(p)]
        if secrets_:
            raise Forbidden(f"{', '.join(p.name for p in secrets_)}: looks like a secret; sm share never "
                            "sends one (a person can, with /send and a confirmation)")
        checked = await asyncio.to_thread(sharing.check_files, files, self._share_max_bytes(),
                                          self.settings.state_dir, self.settings.inbox_dir)
        self._publish_files(target.id if target else None, checked, caption, caller)
        return target

    async def send_files(self, caller: Caller, ref: str, pattern: str, *, secrets_confirmed: bool = False,
                         caption: str = "") -> list[Path]:
        """Files from a session's working directory to its topic, asked by a person (`/send`).

        Never outside the directory (symlinks and `..` resolved first); secrets
        (.env, *.pem, id_*, *.key) raise NeedsConfirmation unless `secrets_confirmed`.
        """
        self._check_person(caller, "send a session's files")
        target = await self.session(caller, ref)
        self._check_here(target, "take files from")
        found = await asyncio.to_thread(sharing.in_workdir, target.workdir, pattern)
        secrets_ = [p for p in found if sharing.is_secret(p)]
        if secrets_ and not secrets_confirmed:
            raise sharing.secret_files(secrets_)
        checked = await asyncio.to_thread(sharing.check_files, found, self._share_max_bytes(),
                                          self.settings.state_dir, self.settings.inbox_dir)
        self._publish_files(target.id, checked, caption, caller)
        return checked

    def _share_max_bytes(self) -> int:
        return int(self.settings.share_max_mb * sharing.MB)

    def _publish_files(self, session_id: str | None, paths: list[Path], caption: str, caller: Caller) -> None:
        self._bus.publish(FilesShared(session=session_id, paths=[str(p) for p in paths], caption=caption[:1000],
                                      sender=caller.id, sender_label=caller.label))

    # -- reading ---------------------------------------------------------------------

    async def output(self, caller: Caller, ref: str, lines: int = 40, transcript: bool = False,
                     raw: bool = False) -> str:
        """What a session has done: the screen's content above the input box and footer, its
        last `lines` lines; the screen as it is (`raw`); or its last assistant messages (`transcript`)."""
        remote = await self._remote(ref)
        if remote is not None:
            return str(await self._cluster.request(remote.node, "output", {
                "target": remote.id, "lines": lines, "transcript": transcript, "raw": raw}, self._sender(caller)))
        target = await self.session(caller, ref)
        self._check_may_read(caller, target)
        if transcript:
            messages = last_assistant_messages(target.transcript_path, max(1, min(lines, 20)))
            if not messages:
                raise Invalid(f"{target.label} has no transcript (yet)")
            return "\n\n".join(messages)
        if not target.live or not target.pane_id:
            raise Invalid(f"{target.label} has no pane to read")
        screen = await self._tmux.capture(target.pane_id, lines=max(lines, 1))
        if not raw:
            return get_provider(target.provider).content(screen, lines)
        out = screen.splitlines()
        while out and not out[-1].strip():
            out.pop()
        return "\n".join(out[-lines:])

    async def attached(self, caller: Caller, ref: str) -> bool:
        """Whether a person is attached to the session's tmux session at a terminal (sm's
        own control-mode client aside): they see it there, so the phone need not ring."""
        target = await self.session(caller, ref)
        self._check_may_read(caller, target)
        if not target.live:
            return False
        return await self._tmux.terminal_clients(target.tmux_session) > 0

    async def screen(self, caller: Caller, ref: str) -> PaneScreen:
        """A session's screen with its colours, size and cursor, for a door to draw (another
        node's: captured there and sent here, drawn by the door here)."""
        remote = await self._remote(ref)
        if remote is not None:
            shot = dict(await self._cluster.request(remote.node, "screen", {"target": remote.id},
                                                    self._sender(caller)))
            cursor = shot.get("cursor")
            return PaneScreen(str(shot["ansi"]), int(shot["cols"]), int(shot["rows"]),
                              (int(cursor[0]), int(cursor[1])) if cursor else None)
        target = await self.session(caller, ref)
        self._check_may_read(caller, target)
        if not target.live or not target.pane_id:
            raise Invalid(f"{target.label} has no pane to read")
        return await self._tmux.screen(target.pane_id)

    async def what(self, caller: Caller, ref: str) -> dict[str, Any]:
        """A short summary of what a session is doing: by the summarizer, else from its state.

        The summarizer (a paid model call) runs once per session at a time, and
        its summary is reused for 10 s; the fallback is always fresh.
        """
        remote = await self._remote(ref)
        if remote is not None:
            return dict(await self._cluster.request(remote.node, "what", {"target": remote.id},
                                                    self._sender(caller)))
        target = await self.session(caller, ref)
        self._check_may_read(caller, target)
        last = last_assistant_messages(target.transcript_path, 3)
        screen = ""
        if target.live and target.pane_id:
            try:
                screen = await self._tmux.capture(target.pane_id)
            except Exception:
                screen = ""
        fallback = fallback_summary(target.name, target.state, target.state_reason, last, screen)
        context = (
            "Summarize in two sentences what this coding agent is doing now.\n\n"
            + fallback + "\n\nRecent messages:\n" + "\n---\n".join(last)
        )
        summary = await self._summaries.get(target.id, lambda: summarize(
            self.settings.summarizer_command, context, self.settings.summarizer_timeout))
        options = [list(o) for o in await self._options_on_screen(target, screen)] \
            if target.state == State.WAITING and screen else []
        return {"session": target.id, "name": target.name, "state": target.state,
                "summary": summary or fallback, "source": "summarizer" if summary else "fallback",
                "options": options}

    async def dialog_options(self, caller: Caller, ref: str) -> list[tuple[str, str]]:
        """The numbered options of the dialog on a session's screen, if any."""
        target = await self.session(caller, ref)
        if not target.live or not target.pane_id:
            return []
        return dialog_options(await self._tmux.capture(target.pane_id))

    async def _options_on_screen(self, session: Session, screen: str | None = None) -> list[tuple[str, str]]:
        if screen is None:
            if not session.pane_id:
                return []
            try:
                screen = await self._tmux.capture(session.pane_id)
            except Exception:
                return []
        return dialog_options(screen, get_provider(session.provider))

    def subscribe(self, caller: Caller) -> Subscription:
        """Every engine event from now on (see core.events); `with engine.subscribe(c) as events: async for ...`.

        The owner (the bot's mirror, `GET /events` with the owner token) sees every
        event; an agent sees only the events of itself and its descendants.
        """
        if caller.is_owner:
            return self._bus.subscribe()
        me = caller.id or ""

        def mine(event: Event) -> bool:
            return bool(event.session) and self._registry.descends_from(event.session or "", me)

        return self._bus.subscribe(only=mine)

    # -- locks -----------------------------------------------------------------------

    async def _release_locks_of_the_gone(self, session: Session, previous: str) -> None:
        if session.state in (State.DEAD, State.LOST) or session.gone:
            await self._locks.release_all(session)
        elif session.state == State.IDLE:
            # The turn is over, however we learnt it (a Stop, live or replayed from
            # the spool, or the screen repairing a lost one): automatic locks end.
            await self._locks.release_auto(session)

    async def lock(self, caller: Caller, reason: str) -> Lock:
        if caller.session is None:
            raise Invalid("locks are held by agents; run sm lock inside a session sm started")
        if not reason.strip():
            raise Invalid("give a reason: sm lock \"<what you are doing>\"")
        return await self._locks.acquire(caller.session, reason.strip()[:300])

    async def unlock(self, caller: Caller, workspace: str | None = None) -> Lock:
        return await self._locks.release(caller.session, workspace)

    async def auto_lock(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        """The PreToolUse file-write hook: take the lock, wait for it, or deny the write."""
        if caller.session is None:
            return {}
        tool = str(payload.get("tool_name", ""))
        if tool not in WRITE_TOOLS:
            return {}
        target = payload.get("tool_input") or {}
        path = target.get("file_path") or target.get("notebook_path") or "" if isinstance(target, dict) else ""
        try:
            await self._locks.acquire_waiting(caller.session, f"auto: {tool} {path}".strip(), True,
                                              self.settings.lock_wait)
        except Conflict as exc:
            return {"hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": f"{exc}; wait, or work in a git worktree",
            }}
        return {}

    async def lock_list(self, caller: Caller) -> list[dict[str, Any]]:
        out = []
        for lock in await self._locks.all():
            holder = self._registry.get_live(lock.holder_id)
            out.append({"workspace": lock.workspace, "holder": lock.holder_id,
                        "holder_name": holder.name if holder else None, "reason": lock.reason,
                        "auto": bool(lock.auto), "since": lock.acquired_at})
        return out

    # -- hooks -----------------------------------------------------------------------

    async def hook(self, caller: Caller, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A Claude Code hook event from the calling agent; returns what the hook prints."""
        if caller.session is None:
            raise Forbidden("hooks are sent by agents, with their own SM_TOKEN")
        return await self._apply_hook(caller.session, parse_hook(event, payload))

    async def _apply_hook(self, session: Session, hook: Any) -> dict[str, Any]:
        """A hook event, live or replayed from the spool."""
        await self._locks.renew(session)
        match hook:
            case SessionStart(transcript_path=path):
                # Usage counts every transcript: the one before a /clear too.
                await self._usage.track(session.id, session.transcript_path)
                await self._usage.track(session.id, path)
                if hook.source == "clear":
                    await self._locks.release_all(session)  # cleared, by sm or at the terminal
            case Stop():
                await self._locks.release_auto(session)
                await self._read_usage(session)  # before the idle state, whose card shows it
            case CodexTurnEnd(transcript_path=path):
                await self._read_usage(session, path)
        return await self._hooks.handle(session, hook)

    async def drain_spool(self, caller: Caller) -> int:
        """Replay hook events spooled while the server was unreachable; how many were replayed.

        Any caller may ask: each spooled event acts only as the agent whose token it carries.
        """
        return await self._drain_spool()

    async def _drain_spool(self) -> int:
        async with self._drain_lock:
            return await spool.drain(self.settings.spool_dir, self._replay)

    async def _replay(self, token: str, event: str, payload: dict[str, Any]) -> None:
        session = self._registry.by_token(token)
        if session is None:
            log.warning("spooled %s event for an unknown or dead session; dropped", event)
            return
        if event in HOOK_EVENTS:
            await self._apply_hook(session, parse_hook(event, payload))

    # -- several hosts (core/cluster.py; only with SM_NATS_URL) -------------------------

    def nodes(self, caller: Caller) -> dict[str, dict[str, Any]]:
        """The nodes this one knows (itself included): up or not, last heard; {} on a single host."""
        return self._cluster.nodes() if self._cluster is not None else {}

    def node_of(self, caller: Caller, session_id: str) -> str | None:
        """The node a session runs on, when it is another node's; None: here (or unknown)."""
        if self._cluster is None or self._registry.get_live(session_id) is not None:
            return None
        remote = self._cluster.find(session_id)
        return remote.node if remote is not None else None

    async def _remote(self, ref: str) -> Any:
        """The session `ref` names on another node, when it names none live here."""
        if self._cluster is None or not (ref or "").strip():
            return None
        try:
            if (await self._registry.resolve(ref)).live:
                return None
        except SmError:
            pass
        return self._cluster.find(ref.strip())

    def _new_id(self) -> str | None:
        """Several hosts: an id no node's live session has (ids are 6 random hex digits: two nodes
        picking the same one in the same instant is a 1 in 16 million chance; none is reused);
        one host: None, the registry's own."""
        if self._cluster is None:
            return None
        taken = self._cluster.known_ids()
        session_id = self._registry.new_id()
        while session_id in taken:
            session_id = self._registry.new_id()
        return session_id

    @staticmethod
    def _sender(caller: Caller) -> dict[str, Any]:
        """Who sends a command, as the sending node vouches for it (never a token)."""
        s = caller.session
        return {"id": caller.id, "name": caller.label, "parent_id": s.parent_id if s else None,
                "workdir": s.workdir if s else None, "provider": s.provider if s else None}

    def _caller_from(self, node: str, sender: dict[str, Any] | None) -> Caller:
        """The caller of a command from `node`: its agent (named name@node), or the owner there."""
        from core.cluster import as_session

        sender = sender or {}
        if not sender.get("id"):
            return Caller(None, f"{sender.get('name') or 'owner'}@{node}")
        return Caller(as_session({**sender, "name": f"{sender.get('name')}@{node}", "state": "idle"}))

    async def _command(self, caller: Caller, remote: Any, op: str, args: dict[str, Any]) -> Message:
        """A command for a session on another node, in the outbox; the message as queued here."""
        row, _ = await self._cluster.command(remote.node, op, {"target": remote.id, **args}, self._sender(caller))
        now = self._clock()
        return Message(row, remote.id, caller.id, caller.label, str(args.get("mode") or "sequential"),
                       op if op != "send" else "text", str(args.get("text") or ""), "queued", 0, None, now, None)

    async def _spawn_remote(self, caller: Caller, host: str, prompt: str, **options: Any) -> Session:
        from core.cluster import as_session

        if self._cluster is None:
            raise Invalid(f"no node {host!r}: this host is alone (SM_NATS_URL is not set)")
        if options.get("wait"):
            raise Invalid("--wait does not cross nodes yet; spawn, then `sm wait` on the new session")
        if prompt:
            prompt = check_text(prompt, self.settings.max_message_bytes)
        session_id = self._new_id()
        args = {"id": session_id, "prompt": prompt, "name": options.get("name"), "provider": options.get("provider"),
                "workdir": options.get("workdir"), "worktree": options.get("worktree"),
                "confine": bool(options.get("confine"))}
        _, reply = await self._cluster.command(host, "spawn", args, self._sender(caller), wait=60.0)
        from core.cluster import raise_reply

        started = raise_reply(reply or {})
        if not started:
            raise Unavailable(f"node {host} had started {session_id} before and it has ended")
        return as_session(started)

    def follow_other_nodes(self, caller: Caller) -> None:
        """Every other node's events join this engine's own (`subscribe`), from a durable
        consumer: the door showing all nodes (sm-bot's Telegram) misses none across its restarts."""
        if not caller.is_owner:
            raise Forbidden("only sm's own doors follow the other nodes")
        if self._cluster is not None:
            self._cluster.follow(self._from_elsewhere)

    async def _from_elsewhere(self, node: str, wire: dict[str, Any]) -> None:
        self._cluster.learn(node, wire)
        session_id = wire.get("session")
        if session_id and not self._registry.known(str(session_id)):
            # A door's tables point at sessions (topics, its outbox): another node's gets a row here.
            from core.cluster import as_session

            remote = self._cluster.find(str(session_id))
            await self._registry.remember_remote(remote.session() if remote is not None else as_session(
                {"id": session_id, "name": wire.get("name") or session_id, "state": "idle"}))
        event = event_from_dict(wire)
        if event is None:
            return  # a newer node's event type: nothing here shows it
        event.node = node  # type: ignore[attr-defined]  # not a field: marks it as not this node's
        self._bus.publish(event)

    def _to_cluster(self, event: Event) -> None:
        """Every event of this node goes to NATS; a session's change goes to the directory too."""
        if getattr(event, "node", None) is not None:
            return  # another node's, shown here
        self._cluster.publish_event(event)
        if event.session and event.type in ("session.spawned", "session.renamed", "state.changed",
                                            "session.dead", "session.resumed"):
            session = self._registry.get_live(event.session)
            if session is not None:
                self._cluster.session_changed(session)
            elif event.type in ("session.dead", "state.changed"):
                self._cluster.session_gone(event.session)

    def _with_other_nodes(self, sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = [{**item, "node": self.settings.node} for item in sessions]
        for remote in self._cluster.remote_sessions():
            item = remote.session().public()
            item.update(node=remote.node, usage=None, worktree=None, branch=None, queued=0)
            out.append(item)
        return out

    async def _wake_elsewhere(self, waiter_id: str, text: str) -> bool:
        """A wait fired for a waiter on another node: the wake-up goes there as a command."""
        remote = self._cluster.find(waiter_id) if self._cluster is not None else None
        if remote is None:
            return False
        await self._cluster.command(remote.node, "send", {"target": remote.id, "text": text, "mode": "sequential"},
                                    {"id": None, "name": "sm"})
        return True

    async def _keep_failed_send(self, caller: Caller, args: dict[str, Any], error: str,
                                once: Callable[[Any], Awaitable[bool]]) -> None:
        """A send from another node to a session here that ended meanwhile (the command
        waited while NATS or this node was away) is kept as a failed message, so `sm status`
        and the phone show it, besides the refusal answered to the sending node."""
        try:
            target = await self._registry.resolve(str(args.get("target")))
        except SmError:
            return  # no session of that name or id here ever: nothing to attach it to
        if not target.live:
            error = f"{target.label} had ended when this message from {caller.label} came"
        message = await self._queue.enqueue(target.id, str(args.get("text") or ""), sender_id=caller.id,
                                            sender_label=caller.label, mode=str(args.get("mode") or "sequential"),
                                            origin=args.get("origin"), once=once)
        if message is not None:
            await self._queue.mark_failed([message], error)

    async def _apply_command(self, node: str, msg_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """A command from another node, applied once (see core/cluster.py); its outcome for a waiting sender."""
        op, args = str(body.get("op")), dict(body.get("args") or {})
        caller = self._caller_from(node, body.get("sender"))

        async def once(tx: Any) -> bool:
            return bool(await self._cluster.applied(tx, msg_id, node))

        if op in ("send", "keys", "clear"):
            try:
                target = await self._here(caller, str(args.get("target")))
                self._check_deliverable(target)
            except SmError as exc:
                if op == "send":
                    await self._keep_failed_send(caller, args, str(exc), once)
                raise
            if op != "send":
                self._lifecycle.check_may_manage(caller, target, "clear" if op == "clear" else "answer the dialog of")
            if op == "keys" and target.state != State.WAITING:
                raise Invalid(f"{target.name} has no dialog waiting for an answer now")
            kind = "text" if op == "send" else op
            text = str(args.get("keys") if op == "keys" else "clear" if op == "clear" else args.get("text") or "")
            mode = "urgent" if op == "keys" else str(args.get("mode") or "sequential")
            if mode not in MODES:
                raise Invalid(f"unknown mode {mode!r}")
            label = "sm" if body.get("sender", {}).get("name") == "sm" and not caller.id else caller.label
            queued = await self._queue.enqueue(target.id, text, sender_id=caller.id, sender_label=label,
                                               mode=mode, kind=kind, origin=args.get("origin"), once=once)
            if queued is not None and op == "clear" and str(args.get("prompt") or "").strip():
                await self.send(caller, target.id, str(args["prompt"]))
            return None
        if await self._cluster.was_applied(msg_id):
            existing = self._registry.get_live(str(args.get("id")))
            return {**existing.public(), "node": self.settings.node} if op == "spawn" and existing else None
        result: dict[str, Any] | None = None
        if op == "spawn":
            if caller.session is not None:
                await self._registry.remember_remote(caller.session)
            workdir = args.get("workdir")
            if not workdir and caller.session is not None:
                if not os.path.isdir(caller.session.workdir):
                    raise Invalid(f"{caller.session.workdir} is not a directory on node {self.settings.node}; "
                                  "give one with --dir")
                workdir = caller.session.workdir
            if args.get("confine"):
                found = paths.allowed_dir(str(workdir or ""), self._allowed_roots)
                if found is None:
                    raise Forbidden(f"{workdir} is not an existing directory under the allowed roots of node "
                                    f"{self.settings.node} (its SM_TELEGRAM_ALLOWED_ROOTS)")
                workdir = str(found)
            if self._registry.known(str(args["id"])) and self._registry.get_live(str(args["id"])) is None:
                raise Conflict(f"session {args['id']} was started here before and has ended")
            session = self._registry.get_live(str(args["id"])) or await self._spawn_here(
                caller, str(args.get("prompt") or ""), name=args.get("name"),
                provider=str(args.get("provider") or "claude"), workdir=workdir, worktree=args.get("worktree"),
                session_id=str(args["id"]))
            result = {**session.public(), "node": self.settings.node}
        elif op == "kill":
            await self._lifecycle.kill(caller, await self._here(caller, str(args.get("target"))))
        elif op == "wait":
            if caller.session is None:
                raise Invalid("only an agent waits")
            await self._registry.remember_remote(caller.session)
            target = await self._here(caller, str(args.get("target")))
            await self._waits.add(caller.session, target, float(args.get("seconds") or 0), once=once)
            return None  # recorded with the wait itself
        else:
            raise Invalid(f"unknown command {op!r}")
        async with self._store.transaction() as tx:
            await once(tx)
        return result

    async def _answer_request(self, node: str, body: dict[str, Any]) -> Any:
        """A read from another node (output, what, screen) of a session here, or a person's
        decision on a permission prompt here (answered at once: the hook is waiting)."""
        op, args = str(body.get("op")), dict(body.get("args") or {})
        caller = self._caller_from(node, body.get("sender"))
        target = self._registry.get_live(str(args.get("target")))
        if target is None:
            raise NotFound(f"no live session {args.get('target')!r} on node {self.settings.node}")
        if op == "output":
            return await self.output(caller, target.id, int(args.get("lines") or 40), bool(args.get("transcript")),
                                     bool(args.get("raw")))
        if op == "what":
            return await self.what(caller, target.id)
        if op == "screen":
            screen = await self.screen(caller, target.id)
            return {"ansi": screen.ansi, "cols": screen.cols, "rows": screen.rows, "cursor": screen.cursor}
        if op == "decide":
            await self.answer_permission(caller, target.id, int(args.get("request") or 0),
                                         str(args.get("decision")), str(args.get("by") or caller.label))
            return None
        raise Invalid(f"unknown request {op!r}")

    # -- a door's own tables ----------------------------------------------------------

    def add_pruner(self, door: str, pruner: Pruner) -> None:
        """A door's part of retention (core/retention.py): `pruner(cutoff, sessions)` removes
        the door's rows older than the cutoff and those of the dead sessions about to be
        deleted. It runs soon after it is added (the door's start) and then daily."""
        self._retention.add(door, pruner)

    async def door_store(self, door: str, migrations: list[tuple[int, str]]) -> Store:
        """The store, with `door`'s own tables migrated to their latest version.

        A door (the Telegram bot) keeps its tables beside the engine's under its
        own name in the store's per-owner migrations; it reads and writes only those.
        """
        await self._store.migrate(door, migrations)
        return self._store
