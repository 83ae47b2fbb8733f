"""The screen reader: the fallback to hooks, and the watcher of panes.

One `tmux list-panes -a` per tick tells, for every pane at once, whether it is
dead, what runs in its foreground and when its window last had output. A
pane's screen is captured only when it had output recently, or when its
session is in a state the screen must confirm (starting, or busy/waiting with
hooks that may have been lost). Fifty quiet agents cost one tmux call per
tick and no captures.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Callable

from core.errors import Unavailable
from core.events import EventBus, IdleReminder, PermissionNeeded
from core.providers import dialog_options, get_provider
from core.queue import MessageQueue
from core.sessions import Session, SessionRegistry
from core.state import Reason, ReasonKind, State, StateMachine
from core.tmux import PaneInfo, Tmux

log = logging.getLogger(__name__)

# How long a hook-driven agent's screen must look idle before sm believes the
# screen over a missing Stop hook.
LOST_STOP_AFTER = 3.0
EXIT_LINE_RE = re.compile(r"^\[sm\] agent exited with status (\d+)$")
RECHECK_EVERY = 2.0
STARTING_POLL = 0.1


class Monitor:
    def __init__(
        self,
        registry: SessionRegistry,
        states: StateMachine,
        queue: MessageQueue,
        tmux: Tmux,
        bus: EventBus,
        poll_interval: float,
        idle_timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._states = states
        self._queue = queue
        self._tmux = tmux
        self._bus = bus
        self.poll_interval = poll_interval
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._activity: dict[str, int] = {}
        self._last_capture: dict[str, float] = {}
        self._screen_idle_since: dict[str, float] = {}
        self._dead_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._tmux_down = False
        self._poke = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="monitor")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def poke(self) -> None:
        """Look again now (a session was just started)."""
        self._poke.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitor tick failed")
            # A starting agent is watched closely: its first input waits on it.
            starting = any(s.state == "starting" for s in self._registry.live())
            interval = min(self.poll_interval, STARTING_POLL) if starting else self.poll_interval
            self._poke.clear()
            try:
                await asyncio.wait_for(self._poke.wait(), interval)
            except asyncio.TimeoutError:
                pass

    async def tick(self) -> None:
        sessions = [s for s in self._registry.live() if s.pane_id]
        if not sessions:
            return
        try:
            panes = {p.pane_id: p for p in await self._tmux.list_panes()}
        except Unavailable as exc:
            if not self._tmux_down:
                log.error("tmux is not answering: %s", exc)
                self._tmux_down = True
            return
        self._tmux_down = False
        now = self._clock()
        for session in sessions:
            pane = panes.get(session.pane_id or "")
            if pane is None:
                await self._states.set(session, State.DEAD, Reason(ReasonKind.VANISHED, "tmux session vanished"),
                                       source="monitor")
                await self._queue.fail_all(session.id, "session vanished")
                continue
            if pane.dead:
                await self._pane_died(session, pane)
                continue
            await self._read(session, pane, now)
            if (
                session.state == "idle"
                and not session.idle_reminded
                and now - session.state_since >= self.idle_timeout
            ):
                await self._registry.update(session, idle_reminded=1)
                self._bus.publish(IdleReminder(session=session.id, name=session.name,
                                               idle_seconds=round(now - session.state_since)))

    async def _pane_died(self, session: Session, pane: PaneInfo) -> None:
        if session.gone:
            return
        # tmux marks the pane dead when its terminal closes, a moment before it
        # reaps the process; wait a tick or two for the exit status.
        first_seen = self._dead_since.setdefault(session.id, self._clock())
        if pane.dead_status is None and self._clock() - first_seen < 0.5:
            return
        code = pane.dead_status
        words: list[str] = []
        try:
            screen = await self._tmux.capture(pane.pane_id, lines=200)
        except Unavailable:
            screen = ""
        for line in reversed(screen.splitlines()):
            line = line.strip()
            if not line or line.startswith("Pane is dead"):
                continue
            found = EXIT_LINE_RE.match(line)
            if found:
                code = int(found.group(1)) if code is None else code
                continue
            words.append(line)
            break
        last = words[0] if words else ""
        status = f"status {code}" if code is not None else "no status"
        if session.state == State.STARTING:
            reason = Reason(ReasonKind.START_FAILED, f"failed to start: exited with {status}")
        else:
            reason = Reason(ReasonKind.EXITED, f"agent exited with {status}")
        if last:
            reason = Reason(reason.kind, f"{reason.text}: {last[:200]}")
        await self._states.set(session, State.ERRORED, reason, source="monitor")
        await self._queue.fail_all(session.id, f"not delivered: {reason.text}")

    async def _read(self, session: Session, pane: PaneInfo, now: float) -> None:
        provider = get_provider(session.provider)
        changed = self._activity.get(pane.pane_id) != pane.activity
        self._activity[pane.pane_id] = pane.activity
        recent = changed or now - pane.activity <= 1.5
        overdue = (
            session.state in ("starting", "busy", "waiting")
            and now - self._last_capture.get(session.id, 0) >= RECHECK_EVERY
        )
        if provider.name == "shell" and session.state != "starting":
            # The foreground process says it all; no capture needed.
            reading = provider.read_screen("", pane.current_command)
        elif session.state == "starting" or overdue or (
                recent and (not provider.has_hooks or session.state not in ("busy", "waiting"))):
            # Hooks report a busy Claude: its spinner alone is no reason to look
            # (it is checked every RECHECK_EVERY seconds for a lost Stop).
            self._last_capture[session.id] = now
            screen = await self._tmux.capture(pane.pane_id)
            reading = provider.read_screen(screen, pane.current_command)
        else:
            return
        if reading.state is None:
            return
        if not provider.has_hooks or session.state == "starting":
            reason = None
            if reading.state == State.WAITING:
                reason = session.reason or Reason(ReasonKind.DIALOG, "a dialog on screen needs an answer")
            was = session.state
            await self._states.set(session, State(reading.state), reason, source="screen")
            if reading.state == "waiting" and was != "waiting" and not provider.has_hooks:
                # No hook will describe this prompt: offer its own options (its digits).
                screen = await self._tmux.capture(pane.pane_id)
                self._bus.publish(PermissionNeeded(
                    session=session.id, name=session.name, kind=ReasonKind.DIALOG, tool=provider.name,
                    input="\n".join(screen.splitlines()[-12:]),
                    options=[list(o) for o in dialog_options(screen)]))
            return
        # Hooks are the truth for this agent; the screen only repairs lost ones.
        if session.state in ("busy", "waiting") and reading.state == "idle":
            since = self._screen_idle_since.setdefault(session.id, now)
            if now - since >= LOST_STOP_AFTER:
                log.warning("%s: screen idle for %.0fs with no Stop hook; trusting the screen",
                            session.label, now - since)
                await self._states.set(session, "idle", source="screen (hook lost)")
        else:
            self._screen_idle_since.pop(session.id, None)
