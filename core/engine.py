"""The engine, built once per process and handed to the front ends.

Everything a front end may do is a method here, taking the `Caller` the front
end authenticated; permission checks live here, not in the front ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from core import spool
from core.config import Settings
from core.delivery import Delivery, DeliveryTuning, undeliverable
from core.errors import Conflict, Invalid
from core.events import EventBus
from core.hookevents import HOOK_EVENTS, HookEvents
from core.lifecycle import Caller, Lifecycle
from core.locks import Lock, Locks
from core.monitor import Monitor
from core.providers import dialog_options, get_provider
from core.permissions import Permissions
from core.queue import MODES, Message, MessageQueue
from core.sessions import Session, SessionRegistry
from core.state import StateMachine
from core.store import Store
from core.text import check_text
from core.tmux import Tmux
from core.waits import Waits
from core.what import fallback_summary, last_assistant_messages, summarize

log = logging.getLogger(__name__)

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
    def __init__(
        self,
        settings: Settings,
        store: Store,
        tmux: Tmux | None = None,
        clock: Callable[[], float] = time.time,
        tuning: DeliveryTuning | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.bus = EventBus(clock)
        self.tmux = tmux or Tmux(settings.tmux_socket, settings.state_dir / "tmux")
        self.registry = SessionRegistry(store, clock)
        self.states = StateMachine(self.registry, self.bus, clock)
        self.queue = MessageQueue(store, self.bus, clock)
        tuning = tuning or DeliveryTuning(inline_bytes=settings.inline_message_bytes)
        self.delivery = Delivery(self.registry, self.states, self.queue, self.tmux,
                                 settings.state_dir / "messages", tuning, clock)
        self.waits = Waits(store, self.registry, self.states, self.queue, clock)
        self.delivery.on_delivered(self.waits.on_delivered)
        self.lifecycle = Lifecycle(settings, self.registry, self.states, self.queue,
                                   self.tmux, self.bus, clock)
        self.permissions = Permissions(self.bus, settings.permission_timeout)
        self.hooks = HookEvents(self.registry, self.states, self.delivery, self.bus, self.permissions)
        self.monitor = Monitor(self.registry, self.states, self.queue, self.tmux, self.bus,
                               settings.monitor_poll_interval, settings.monitor_idle_timeout, clock)
        self.locks = Locks(store, self.registry, settings.lock_lease, git_root, clock)
        self.states.on_change(self._release_locks_of_the_gone)
        self.owner_token = ""
        self._drain_lock = asyncio.Lock()

    @classmethod
    async def open(cls, settings: Settings, **kwargs: Any) -> "Engine":
        settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = await Store.open(settings.db_path)
        return cls(settings, store, **kwargs)

    async def start(self) -> None:
        self.owner_token = ensure_owner_token(self.settings.owner_token_path)
        await self.registry.load()
        await self.lifecycle.adopt()
        # Hooks spooled while sm was down are replayed first: a spooled
        # UserPromptSubmit settles a batch that a crash left in flight.
        await self.drain_spool()
        self.monitor.start()
        await self.waits.start()
        for session in self.registry.live():
            self.delivery.wake(session.id)

    async def stop(self) -> None:
        await self.monitor.stop()
        await self.waits.stop()
        await self.delivery.stop()
        await self.store.close()

    # -- identity --------------------------------------------------------------------

    def caller_for_token(self, token: str) -> Caller | None:
        if not token:
            return None
        if self.owner_token and secrets.compare_digest(token, self.owner_token):
            return Caller(None)
        session = self.registry.by_token(token)
        return Caller(session) if session else None

    # -- sessions --------------------------------------------------------------------

    async def resolve(self, ref: str) -> Session:
        return await self.registry.resolve(ref)

    async def spawn(self, caller: Caller, prompt: str = "", *, name: str | None = None,
                    provider: str = "claude", workdir: str | None = None,
                    wait: float | None = None) -> Session:
        if wait and caller.session is None:
            raise Invalid("--wait wakes the calling agent with a message; run it inside a session sm started")
        if prompt:
            prompt = check_text(prompt, self.settings.max_message_bytes)
        session = await self.lifecycle.spawn(caller, prompt, name=name, provider=provider,
                                             workdir=workdir)
        self.monitor.poke()
        if wait and caller.session and session.state != "errored":
            await self.waits.add(caller.session, session, wait, kind="spawn")
        return session

    async def kill(self, caller: Caller, ref: str) -> Session:
        target = await self.resolve(ref)
        await self.lifecycle.kill(caller, target)
        return target

    async def rename(self, caller: Caller, ref: str, name: str) -> Session:
        return await self.lifecycle.rename(caller, await self.resolve(ref), name)

    def children(self, caller: Caller) -> list[Session]:
        return self.registry.children(caller.id)

    async def others(self, caller: Caller) -> list[Session]:
        """Other live sessions working in the caller's workspace (git root)."""
        def roots() -> tuple[str, dict[str, str]]:
            here = git_root(caller.session.workdir if caller.session else os.getcwd())
            return here, {s.id: git_root(s.workdir) for s in self.registry.live() if s.id != caller.id}

        here, theirs = await asyncio.to_thread(roots)  # git runs in a thread, not on the loop
        return [s for s in self.registry.live()
                if theirs.get(s.id) == here and s.state != "errored"]

    async def status(self, caller: Caller) -> dict[str, Any]:
        counts = await self.queue.counts()
        sessions = []
        for s in self.registry.live():
            item = s.public()
            item["queued"] = counts.get(s.id, 0)
            sessions.append(item)
        undelivered = [
            {"id": m.id, "target": m.target_id, "from": m.sender_label, "status": m.status,
             "error": m.error, "text": m.body[:200]}
            for m in await self.queue.undelivered()
        ]
        me = caller.session.public() if caller.session else None
        return {"you": me or {"name": "owner"}, "sessions": sessions, "undelivered": undelivered,
                "locks": await self.lock_list()}

    # -- messages --------------------------------------------------------------------

    async def send(self, caller: Caller, ref: str, text: str, mode: str = "sequential") -> Message:
        if mode not in MODES:
            raise Invalid(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        target = await self.resolve(ref)
        self._check_deliverable(target)
        body = check_text(text, self.settings.max_message_bytes)
        return await self.queue.enqueue(target.id, body, sender_id=caller.id,
                                        sender_label=caller.label, mode=mode)

    @staticmethod
    def _check_deliverable(target: Session) -> None:
        if not target.live:
            raise Invalid(f"{target.label} is dead; messages can't be delivered to it")
        if undeliverable(target):
            raise Invalid(f"{target.label} can't take messages: {target.state_reason}")

    async def send_as_owner(self, ref: str, text: str, mode: str, label: str,
                            origin: str | None = None) -> Message:
        """Input from the person (Telegram, or the terminal) under a label of its own."""
        if mode not in MODES:
            raise Invalid(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        target = await self.resolve(ref)
        self._check_deliverable(target)
        body = check_text(text, self.settings.max_message_bytes)
        return await self.queue.enqueue(target.id, body, sender_id=None, sender_label=label,
                                        mode=mode, origin=origin)

    async def dialog_options(self, ref: str) -> list[tuple[str, str]]:
        """The numbered options of the dialog on a session's screen, if any."""
        target = await self.resolve(ref)
        if not target.live or not target.pane_id:
            return []
        return dialog_options(await self.tmux.capture(target.pane_id))

    async def press_keys(self, ref: str, keys: str, label: str, origin: str | None = None) -> Message:
        """Answer a dialog on the agent's screen with its own keys (e.g. the option's digit)."""
        if not keys or not all(k.isdigit() or k in ("Enter", "Escape", "Up", "Down", "Tab") for k in keys.split()):
            raise Invalid("keys must be option digits or Enter/Escape/Up/Down/Tab")
        target = await self.resolve(ref)
        self._check_deliverable(target)
        if target.state != "waiting":
            raise Invalid(f"{target.name} has no dialog waiting for an answer now")
        return await self.queue.enqueue(target.id, keys, sender_id=None, sender_label=label,
                                        mode="urgent", kind="keys", origin=origin)

    async def wait(self, caller: Caller, ref: str, seconds: float) -> int:
        if caller.session is None:
            raise Invalid("sm wait wakes the calling agent with a message; run it inside a session sm started")
        if not 0 < seconds <= 7 * 24 * 3600:
            raise Invalid("wait seconds must be between 1 and 604800")
        target = await self.resolve(ref)
        if target.id == caller.session.id:
            raise Invalid("a session cannot wait for itself")
        return await self.waits.add(caller.session, target, seconds)

    async def clear(self, caller: Caller, ref: str, prompt: str = "") -> Session:
        target = await self.resolve(ref)
        self.lifecycle.check_may_manage(caller, target, "clear")
        if not target.live:
            raise Invalid(f"{target.label} is dead")
        if not get_provider(target.provider).has_hooks:
            # No SessionStart(clear) will say when it happened: release now.
            await self.locks.release_all(target)
        await self.queue.enqueue(target.id, "clear", sender_id=caller.id,
                                 sender_label=caller.label, kind="clear")
        if prompt.strip():
            await self.send(caller, target.id, prompt)
        return target

    # -- reading ---------------------------------------------------------------------

    async def output(self, ref: str, lines: int = 40, transcript: bool = False) -> str:
        target = await self.resolve(ref)
        if transcript:
            messages = last_assistant_messages(target.transcript_path, max(1, min(lines, 20)))
            if not messages:
                raise Invalid(f"{target.label} has no transcript (yet)")
            return "\n\n".join(messages)
        if not target.live or not target.pane_id:
            raise Invalid(f"{target.label} has no pane to read")
        screen = await self.tmux.capture(target.pane_id, lines=max(lines, 1))
        out = screen.splitlines()
        while out and not out[-1].strip():
            out.pop()
        return "\n".join(out[-lines:])

    async def what(self, ref: str) -> dict[str, Any]:
        target = await self.resolve(ref)
        last = last_assistant_messages(target.transcript_path, 3)
        screen = ""
        if target.live and target.pane_id:
            try:
                screen = await self.tmux.capture(target.pane_id)
            except Exception:
                screen = ""
        fallback = fallback_summary(target.name, target.state, target.state_reason, last, screen)
        context = (
            "Summarize in two sentences what this coding agent is doing now.\n\n"
            + fallback + "\n\nRecent messages:\n" + "\n---\n".join(last)
        )
        summary = await summarize(self.settings.summarizer_command, context,
                                  self.settings.summarizer_timeout)
        return {"session": target.id, "name": target.name, "state": target.state,
                "summary": summary or fallback, "source": "summarizer" if summary else "fallback"}

    # -- locks -----------------------------------------------------------------------

    async def _release_locks_of_the_gone(self, session: Session, previous: str) -> None:
        if session.state == "dead" or undeliverable(session):
            await self.locks.release_all(session)
        elif session.state == "idle":
            # The turn is over, however we learnt it (a Stop, live or replayed from
            # the spool, or the screen repairing a lost one): automatic locks end.
            await self.locks.release_auto(session)

    async def lock(self, caller: Caller, reason: str) -> Lock:
        if caller.session is None:
            raise Invalid("locks are held by agents; run sm lock inside a session sm started")
        if not reason.strip():
            raise Invalid("give a reason: sm lock \"<what you are doing>\"")
        return await self.locks.acquire(caller.session, reason.strip()[:300])

    async def unlock(self, caller: Caller, workspace: str | None = None) -> Lock:
        return await self.locks.release(caller.session, workspace)

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
            await self.locks.acquire_waiting(caller.session, f"auto: {tool} {path}".strip(), True,
                                             self.settings.lock_wait)
        except Conflict as exc:
            return {"hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": f"{exc}; wait, or work in a git worktree",
            }}
        return {}

    async def lock_list(self) -> list[dict[str, Any]]:
        out = []
        for lock in await self.locks.all():
            holder = self.registry.get_live(lock.holder_id)
            out.append({"workspace": lock.workspace, "holder": lock.holder_id,
                        "holder_name": holder.name if holder else None, "reason": lock.reason,
                        "auto": bool(lock.auto), "since": lock.acquired_at})
        return out

    # -- hooks -----------------------------------------------------------------------

    async def hook(self, session: Session, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        if event not in HOOK_EVENTS:
            raise Invalid(f"unknown hook event {event!r}")
        return await self._apply_hook(session, event, payload)

    async def _apply_hook(self, session: Session, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A hook event, live or replayed from the spool."""
        await self.locks.renew(session)
        if event == "SessionStart" and payload.get("source") == "clear":
            await self.locks.release_all(session)  # cleared, by sm or at the terminal
        elif event == "Stop":
            await self.locks.release_auto(session)
        return await self.hooks.handle(session, event, payload)

    async def drain_spool(self) -> int:
        async with self._drain_lock:
            return await spool.drain(self.settings.spool_dir, self._replay)

    async def _replay(self, token: str, event: str, payload: dict[str, Any]) -> None:
        session = self.registry.by_token(token)
        if session is None:
            log.warning("spooled %s event for an unknown or dead session; dropped", event)
            return
        if event in HOOK_EVENTS:
            await self._apply_hook(session, event, payload)

    # -- a door's own tables ----------------------------------------------------------

    async def door_store(self, door: str, migrations: list[tuple[int, str]]) -> Store:
        """The store, with `door`'s own tables migrated to their latest version.

        A door (the Telegram bot) keeps its tables beside the engine's under its
        own name in the store's per-owner migrations; it reads and writes only those.
        """
        await self.store.migrate(door, migrations)
        return self.store

    # -- shims until the facade lands ---------------------------------------------------
    # The Telegram door already calls the facade's contract; these stand in for
    # it with today's internals and are replaced when the facade branch merges.
    # Where a name exists above with an older signature, the shim takes both.

    class _Person(Caller):  # shim until the facade lands
        def __init__(self, label: str) -> None:
            super().__init__(None)
            self._label = label

        @property
        def label(self) -> str:
            return self._label

    def caller_for_person(self, label: str) -> Caller:  # shim until the facade lands
        return Engine._Person(label)

    def sessions(self, caller: Caller) -> list[Session]:  # shim until the facade lands
        return self.registry.live()

    async def session(self, caller: Caller, ref: str) -> Session:  # shim until the facade lands
        return await self.registry.resolve(ref)

    async def queue_counts(self, caller: Caller) -> dict[str, int]:  # shim until the facade lands
        return await self.queue.counts()

    async def attach_command(self, caller: Caller, ref: str) -> list[str]:  # shim until the facade lands
        return self.tmux.attach_command((await self.resolve(ref)).tmux_session)

    _output_by_ref = output
    _what_by_ref = what
    _dialog_options_by_ref = dialog_options
    _press_keys_by_ref = press_keys

    async def output(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[no-redef]  # shim until the facade lands
        if args and isinstance(args[0], Caller):
            args = args[1:]
        return await self._output_by_ref(*args, **kwargs)

    async def what(self, *args: Any) -> dict[str, Any]:  # type: ignore[no-redef]  # shim until the facade lands
        return await self._what_by_ref(args[-1])

    async def dialog_options(self, *args: Any) -> list[tuple[str, str]]:  # type: ignore[no-redef]  # shim until the facade lands
        return await self._dialog_options_by_ref(args[-1])

    async def send(self, caller: Caller, ref: str, text: str, mode: str = "sequential",  # type: ignore[no-redef]
                   origin: str | None = None) -> Message:  # shim until the facade lands
        if mode not in MODES:
            raise Invalid(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        target = await self.resolve(ref)
        self._check_deliverable(target)
        body = check_text(text, self.settings.max_message_bytes)
        return await self.queue.enqueue(target.id, body, sender_id=caller.id,
                                        sender_label=caller.label, mode=mode, origin=origin)

    async def press_keys(self, caller: Any, ref: str, keys: str, *args: Any,  # type: ignore[no-redef]
                         origin: str | None = None) -> Message:  # shim until the facade lands
        if isinstance(caller, Caller):
            return await self._press_keys_by_ref(ref, keys, caller.label, origin=origin)
        return await self._press_keys_by_ref(caller, ref, keys, *args, origin=origin)

    def decide_permission(self, caller: Caller, request_id: int, decision: str,
                          by: str) -> None:  # shim until the facade lands
        self.permissions.decide(request_id, decision, by)

    def subscribe(self, caller: Caller) -> Any:  # shim until the facade lands
        return self.bus.subscribe()
