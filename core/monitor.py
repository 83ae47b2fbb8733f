"""The screen reader: the fallback to hooks, and the watcher of panes.

tmux reports changes as they happen (core/tmux_events.py): a pane's process
died, a window had output, a session closed. The monitor looks only at those
panes, plus the few sessions whose state needs the screen on a schedule:

* a starting agent, every STARTING_POLL (its first input waits on it);
* a busy or waiting agent read from its screen, every RECHECK_EVERY, so a
  lost Stop hook is repaired (the screen must look idle for LOST_STOP_AFTER);
* a pane that just had output, every HOT_RECHECK for HOT_FOR: a shell's new
  foreground program shows up a moment after the echo that announced it.
  Then its window is re-armed, so the next output reports again.

Everything else costs nothing at rest: 200 idle agents send no events and get
no looks. A pane is captured only when it changed and its provider reads the
screen (a shell's foreground process is read from tmux, no capture needed; a
hooked Claude's screen only matters while it is starting, busy or waiting).

The safety net: every `poll_interval` seconds (setting monitor_poll_interval)
one `list-panes -a` through the control client catches whatever a lost
notification hid (a pane gone, a window whose activity time moved). Without
the control client (it failed to start) the monitor falls back to polling
every FALLBACK_POLL seconds with a forked `tmux list-panes`, as it used to.

Measured with bench/idle_load.py, 200 idle shells, 2-core machine, 30 s:

                                   polling (0.5 s)    listening
    sm-bot + tmux clients + tmux   2.03% of a core    0.10%
    dead pane noticed, p50 / max   213 / 719 ms       14 / 20 ms

Why a control client rather than hooks that run a notifier: core/tmux_events.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Callable

from core.errors import Unavailable
from core.events import EventBus, IdleReminder, PermissionNeeded
from core.limits import Limits, limit_notice
from core.providers import Provider, ScreenReading, dialog_options, get_provider
from core.queue import MessageQueue
from core.sessions import Session, SessionRegistry
from core.state import Reason, ReasonKind, State, StateMachine
from core.tmux import PANE_FORMAT, PaneInfo, Tmux, parse_pane
from core.tmux_events import MONITOR_SESSION, Refused, TmuxEvents, quote

log = logging.getLogger(__name__)

# How long a hook-driven agent's screen must look idle before sm believes the
# screen over a missing Stop hook.
LOST_STOP_AFTER = 3.0
EXIT_LINE_RE = re.compile(r"^\[sm\] agent exited with status (\d+)$")
# A line that says what went wrong; an agent's last words are often advice
# below it ("...might not be available in your country").
ERROR_LINE_RE = re.compile(
    r"error|failed|failure|fatal|panic|cannot|can't|unable|denied|refused|not found|no such|"
    r"(?-i:\bE[A-Z]{4,}\b)|exception|traceback", re.IGNORECASE)
# How far above the exit a cause is looked for (non-empty lines).
CAUSE_LINES = 12
RECHECK_EVERY = 2.0
STARTING_POLL = 0.1
HOT_FOR = 1.5
HOT_RECHECK = 0.25
# tmux marks a pane dead when its terminal closes, a moment before it reaps
# the process: wait this long for an exit status the screen does not show.
DEAD_STATUS_WAIT = 0.5
DEAD_RECHECK = 0.05
FALLBACK_POLL = 0.5
RECONNECT_EVERY = 5.0
NET_FORMAT = PANE_FORMAT.replace("#{pane_current_command}", "")


def last_words(lines_up: list[str]) -> str:
    """What a dead agent's screen says went wrong: the lowest line that reads as an
    error, else the last line. `lines_up` runs from the bottom of the screen up."""
    return next((line for line in lines_up if ERROR_LINE_RE.search(line)), lines_up[0] if lines_up else "")


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
        limits: Limits | None = None,
    ) -> None:
        self._limits = limits
        self._registry = registry
        self._states = states
        self._queue = queue
        self._tmux = tmux
        self._bus = bus
        self.poll_interval = poll_interval  # the safety net's period
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._events = TmuxEvents(tmux.socket_name, tmux.config_file, self._on_event)
        self._reconnect_at = 0.0
        self._activity: dict[str, int] = {}
        self._last_capture: dict[str, float] = {}
        self._screen_idle_since: dict[str, float] = {}
        self._dead_since: dict[str, float] = {}
        self._reported: set[str] = set()  # panes tmux reported (died, or had output)
        self._hot: dict[str, float] = {}  # pane -> when its output was reported
        self._hot_look: dict[str, float] = {}
        self._window_pane: dict[str, str] = {}
        self._full_scan = True
        self._armed_all = False
        self._last_full = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._tmux_down = False
        self._poke = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="monitor")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._events.close()

    def poke(self) -> None:
        """Look again now (a session was just started)."""
        self._poke.set()

    @property
    def listening(self) -> bool:
        """True while tmux reports changes; False means the monitor polls."""
        return self._events.connected

    def _on_event(self, kind: str, arg: str) -> None:
        if kind == "died" and arg:
            self._reported.add(arg)
        elif kind == "activity" and arg in self._window_pane:
            pane = self._window_pane[arg]
            self._reported.add(pane)
            self._hot[pane] = self._clock()
        else:  # a closed session, or output in a window not seen yet
            self._full_scan = True
        self._poke.set()

    async def _run(self) -> None:
        while True:
            if not self._events.connected and self._clock() >= self._reconnect_at:
                await self._connect()
            self._poke.clear()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitor tick failed")
            try:
                await asyncio.wait_for(self._poke.wait(), self._next_delay())
            except asyncio.TimeoutError:
                pass

    async def _connect(self) -> None:
        try:
            await self._events.connect()
        except Unavailable as exc:
            log.warning("tmux will not report changes (%s); polling every %.1fs", exc, FALLBACK_POLL)
            self._reconnect_at = self._clock() + RECONNECT_EVERY
            return
        log.info("listening to tmux (safety-net poll every %.1fs)", self.poll_interval)
        self._full_scan = True
        self._armed_all = False

    def _net_interval(self) -> float:
        return self.poll_interval if self._events.connected else min(self.poll_interval, FALLBACK_POLL)

    def _next_delay(self) -> float:
        if self._reported or self._full_scan:
            return 0.0
        now = self._clock()
        due = [self._last_full + self._net_interval()]
        if not self._events.connected:
            due.append(self._reconnect_at)
        for session in self._registry.live():
            if session.state == "starting" or session.id in self._dead_since:
                due.append(now + (STARTING_POLL if session.state == "starting" else DEAD_RECHECK))
            elif self._rechecked(session):
                due.append(self._last_capture.get(session.id, 0.0) + RECHECK_EVERY)
            elif session.state == "idle" and not session.idle_reminded:
                due.append(session.state_since + self.idle_timeout)
        for pane, since in self._hot.items():
            due.append(min(since + HOT_FOR, self._hot_look.get(pane, 0.0) + HOT_RECHECK))
        return max(0.0, min(due) - now)

    @staticmethod
    def _rechecked(session: Session) -> bool:
        """Busy or waiting: looked at every RECHECK_EVERY, in case the hook or the
        event that ends it is lost (a shell's look is one query, no capture)."""
        return session.state in ("busy", "waiting")

    # -- one look ----------------------------------------------------------------------

    async def tick(self) -> None:
        sessions = [s for s in self._registry.live() if s.pane_id]
        now = self._clock()
        if not sessions:
            self._reported.clear()
            self._hot.clear()
            return
        full = self._full_scan or now - self._last_full >= self._net_interval()
        # Taken before any await: a report arriving during this look waits for the next.
        reported, self._reported = self._reported, set()
        try:
            if full:
                self._full_scan = False
                self._last_full = now
                panes, brief = await self._list_panes()
                looks = sessions
                # Only panes with news get a full look (and a foreground read).
                detail = [s for s in sessions if (p := panes.get(s.pane_id or "")) and not p.dead
                          and (self._activity.get(p.pane_id) != p.activity
                               or self._due(s, now, reported))]
                if brief:
                    panes.update(await self._panes([s.pane_id or "" for s in detail]))
                quiet = {s.id for s in sessions} - {s.id for s in detail}
            else:
                looks = [s for s in sessions if self._due(s, now, reported)]
                panes = await self._panes([s.pane_id or "" for s in looks])
                quiet = set()
        except Unavailable as exc:
            self._reported |= reported
            if not self._tmux_down:
                log.error("tmux is not answering: %s", exc)
                self._tmux_down = True
            return
        self._tmux_down = False
        for pane in panes.values():
            self._window_pane[pane.window_id] = pane.pane_id
        rearm: list[Session] = []
        for session in looks:
            pane_id = session.pane_id or ""
            pane = panes.get(pane_id)
            if pane is None:
                # Its tmux session (or the whole server) is gone, but not its conversation:
                # lost, resumable (`sm resume`), its queue kept. Its old pane id means
                # nothing any more (a new server reuses ids).
                self._forget(session)
                await self._registry.update(session, pane_id=None)
                await self._states.set(session, State.LOST, Reason(ReasonKind.VANISHED, "tmux session vanished"),
                                       source="monitor")
                continue
            if pane.dead:
                await self._pane_died(session, pane)
                continue
            if session.id in quiet:
                continue
            changed = self._activity.get(pane_id) != pane.activity
            self._activity[pane_id] = pane.activity
            # A hooked agent's output matters only while it starts: after that
            # its window stays un-armed, and it raises no more events.
            screen_read = session.state == "starting" or not get_provider(session.provider).has_hooks
            if changed and screen_read and pane_id not in self._hot:
                self._hot[pane_id] = now  # output that no event reported: follow it up too
            hot = self._hot.get(pane_id)
            if hot is not None:
                self._hot_look[pane_id] = now
                if now - hot >= HOT_FOR or not screen_read:
                    del self._hot[pane_id]
                    self._hot_look.pop(pane_id, None)
                    if screen_read:
                        rearm.append(session)
            await self._read(session, pane, now, changed or pane_id in reported)
        if full and self._events.connected and not self._armed_all:
            # Windows whose alert fired before sm listened (or while it was away).
            self._armed_all = True
            rearm = [s for s in sessions if s.pane_id not in self._hot
                     and (s.state == "starting" or not get_provider(s.provider).has_hooks)]
        await self._rearm(rearm)
        # One more look after re-arming: output between the last look and the
        # re-arm raised no event.
        self._reported.update(s.pane_id for s in rearm if s.pane_id)
        for session in sessions:
            if (
                session.state == "idle"
                and not session.idle_reminded
                and now - session.state_since >= self.idle_timeout
            ):
                await self._registry.update(session, idle_reminded=1)
                self._bus.publish(IdleReminder(session=session.id, name=session.name,
                                               idle_seconds=round(now - session.state_since)))
        if full and self._events.connected:
            await self._events.clear_typed()

    def _due(self, session: Session, now: float, reported: set[str]) -> bool:
        pane = session.pane_id or ""
        if pane in reported or session.state == "starting" or session.id in self._dead_since:
            return True
        if pane in self._hot:
            since = self._hot[pane]
            return now - since >= HOT_FOR or now - self._hot_look.get(pane, 0.0) >= HOT_RECHECK
        return self._rechecked(session) \
            and now - self._last_capture.get(session.id, 0.0) >= RECHECK_EVERY

    def _forget(self, session: Session) -> None:
        pane = session.pane_id or ""
        for table in (self._activity, self._hot, self._hot_look):
            table.pop(pane, None)
        for by_session in (self._last_capture, self._screen_idle_since, self._dead_since):
            by_session.pop(session.id, None)

    async def _list_panes(self) -> tuple[dict[str, PaneInfo], bool]:
        """Every pane; True when brief (without the foreground program, which
        costs tmux a /proc read per pane)."""
        if self._events.connected:
            try:
                lines = await self._events.command(f"list-panes -a -F {quote(NET_FORMAT)}")
            except Refused:
                raise
            except Unavailable:
                lines = None  # the client just went away: fork this once
            if lines is not None:
                panes = {p.pane_id: p for p in map(parse_pane, lines) if p is not None}
                # sm-monitor's own pane is always there: a list without it is not
                # this command's answer, and must never bury every session.
                if not any(p.session_name == MONITOR_SESSION for p in panes.values()):
                    await self._lost_track(f"list-panes answered {lines[:2]!r}")
                return panes, True
        return {p.pane_id: p for p in await self._tmux.list_panes()}, False

    async def _panes(self, pane_ids: list[str]) -> dict[str, PaneInfo]:
        """Just these panes; a pane that is gone is left out."""
        if not pane_ids:
            return {}
        if not self._events.connected:
            return (await self._list_panes())[0]

        async def one(pane_id: str) -> PaneInfo | None:
            try:
                lines = await self._events.command(
                    f"display-message -p -t {quote(pane_id)} {quote(PANE_FORMAT)}")
            except Refused as exc:
                if "can't find" in str(exc) and pane_id in str(exc):
                    return None
                raise
            pane = parse_pane(lines[0]) if len(lines) == 1 else None
            if pane is None or pane.pane_id != pane_id:
                await self._lost_track(f"display-message -t {pane_id} answered {lines[:2]!r}")
            return pane

        found = await asyncio.gather(*(one(p) for p in pane_ids))
        return {p.pane_id: p for p in found if p is not None}

    async def _lost_track(self, what: str) -> None:
        """Replies out of step with commands: start the client afresh, look again."""
        log.error("tmux control client out of step (%s); reconnecting", what)
        await self._events.close()
        self._full_scan = True
        raise Unavailable("tmux control client out of step")

    async def _rearm(self, sessions: list[Session]) -> None:
        if not sessions or not self._events.connected:
            return
        results = await asyncio.gather(
            *(self._events.rearm(f"={s.tmux_session}") for s in sessions), return_exceptions=True)
        for session, result in zip(sessions, results):
            if isinstance(result, Exception):
                log.debug("could not re-arm %s: %s", session.label, result)

    async def _pane_died(self, session: Session, pane: PaneInfo) -> None:
        if session.gone:
            self._dead_since.pop(session.id, None)
            return
        first_seen = self._dead_since.setdefault(session.id, self._clock())
        code = pane.dead_status
        words: list[str] = []
        found_exit_line = False
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
                found_exit_line = True
                code = int(found.group(1)) if code is None else code
                continue
            words.append(line)
            if len(words) >= CAUSE_LINES:
                break
        # The wrapper's last line says the status when tmux has none yet; without
        # either, wait a moment for tmux to reap the process (DEAD_RECHECK).
        if code is None and not found_exit_line and self._clock() - first_seen < DEAD_STATUS_WAIT:
            return
        self._dead_since.pop(session.id, None)
        # A start that failed: the line naming the cause. An agent that ran: its last line.
        last = last_words(words) if session.state == State.STARTING else (words[0] if words else "")
        status = f"status {code}" if code is not None else "no status"
        if session.state == State.STARTING:
            reason = Reason(ReasonKind.START_FAILED, f"failed to start: exited with {status}")
        else:
            reason = Reason(ReasonKind.EXITED, f"agent exited with {status}")
        if last:
            reason = Reason(reason.kind, f"{reason.text}: {last[:200]}")
        await self._states.set(session, State.ERRORED, reason, source="monitor")
        await self._queue.fail_all(session.id, f"not delivered: {reason.text}")

    async def _read(self, session: Session, pane: PaneInfo, now: float, changed: bool) -> None:
        """Read a session's state from its pane; `changed`: it had output since the last look."""
        provider = get_provider(session.provider)
        # The screen decides for agents without hooks, while starting (no hook has
        # come yet), and for a dialog only the screen saw (a start-up nudge, a
        # trust question): the screen set it, the screen clears it.
        screen_owned = (not provider.has_hooks or session.state == State.STARTING
                        or (session.state == State.WAITING and session.state_kind == ReasonKind.DIALOG))
        overdue = (
            session.state in (State.STARTING, State.BUSY, State.WAITING)
            and now - self._last_capture.get(session.id, 0) >= RECHECK_EVERY
        )
        screen = ""
        if provider.name == "shell" and session.state != State.STARTING:
            # The foreground process says it all; no capture needed.
            reading = provider.read_screen("", pane.current_command)
        elif session.state == State.STARTING or overdue or (
                changed and (screen_owned or session.state == State.IDLE)):
            # Hooks report a hooked agent's turns: its output alone is no reason
            # to look (a busy one is checked every RECHECK_EVERY for a lost Stop).
            self._last_capture[session.id] = now
            screen = await self._tmux.capture(pane.pane_id)
            reading = provider.read_screen(screen, pane.current_command)
        else:
            return
        if reading.state is None:
            return
        if screen_owned:
            await self._from_screen(session, provider, reading, screen)
            return
        if session.state == State.IDLE and reading.state == State.WAITING:
            # A dialog came up with no hook to say so (one the person opened at the
            # terminal, a CLI's own question): the screen owns it from now on.
            await self._from_screen(session, provider, reading, screen)
            return
        # Hooks are the truth for this agent; the screen only repairs lost ones.
        if session.state in ("busy", "waiting") and reading.state == "idle":
            since = self._screen_idle_since.setdefault(session.id, now)
            if now - since >= LOST_STOP_AFTER:
                notice = limit_notice(screen, session.transcript_path) if session.state == State.BUSY else None
                if notice and self._limits is not None:
                    # The turn ended on a usage limit and its StopFailure was lost.
                    log.warning("%s: turn ended on a limit with no hook: %s", session.label, notice)
                    await self._limits.hit(session, notice, "screen (hook lost)")
                    return
                log.warning("%s: screen idle for %.0fs with no Stop hook; trusting the screen",
                            session.label, now - since)
                await self._states.set(session, "idle", source="screen (hook lost)")
        else:
            self._screen_idle_since.pop(session.id, None)

    async def _from_screen(self, session: Session, provider: Provider, reading: ScreenReading,
                           screen: str) -> None:
        """The screen's state becomes the session's; a dialog is announced with its options."""
        if reading.state != State.WAITING:
            await self._states.set(session, State(reading.state), None, source="screen")
            return
        dialog = reading.dialog
        if session.state == State.WAITING and session.reason and session.state_kind != ReasonKind.DIALOG:
            return  # a hook described this wait (a permission, a question): it stays the owner
        question = dialog.question if dialog and dialog.question else "a dialog on screen needs an answer"
        reason = Reason(ReasonKind.DIALOG, question[:300])
        if not await self._states.set(session, State.WAITING, reason, source="screen"):
            return  # the same dialog, already announced
        options = [[" ".join(o.keys), o.label[:60]] for o in dialog.options] if dialog else \
            [list(o) for o in dialog_options(screen, provider)]
        body = dialog.text if dialog and dialog.text else "\n".join(screen.splitlines()[-12:])
        self._bus.publish(PermissionNeeded(session=session.id, name=session.name, kind=ReasonKind.DIALOG,
                                           tool=provider.name, input=body, options=options))
