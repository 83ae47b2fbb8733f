"""Usage limits: a limited agent is held, then continued when its limit resets.

Claude Code 2.1.330 ends a turn stopped by a limit with the `StopFailure`
hook, `error` "rate_limit" and the text it shows in `error_details` (e.g.
"You've hit your limit · resets 3pm (Europe/Berlin)"); no reset time as
data. So the time is read from the text where it is shown; otherwise sm
tries again after SM_LIMIT_RETRY seconds. Without the hook (lost), the
screen is the fallback (core/monitor.py: a turn that ends on a limit line).

A limited session is held by the deliverer (core/deliver_rules.py), and a
wait on it does not fire (it is not idle). At the reset (plus SM_LIMIT_MARGIN)
sm queues SM_LIMIT_CONTINUE ahead of everything, then marks it idle: the
continue message goes in first, the queue follows after that turn. A limit
hit again just starts the next round.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from typing import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.config import Settings
from core.queue import MessageQueue
from core.sessions import Session, SessionRegistry
from core.state import Reason, ReasonKind, State, StateMachine

log = logging.getLogger(__name__)

LIMIT_ERRORS = frozenset({"rate_limit"})
LIMIT_TEXT_RE = re.compile(r"(hit your limit|limit reached|usage limit)", re.IGNORECASE)
RESET_RE = re.compile(
    r"resets\s+(?:at\s+)?(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>am|pm)?"
    r"(?:\s*\((?P<tz>[A-Za-z_]+(?:/[A-Za-z_+\-0-9]+)*)\))?",
    re.IGNORECASE,
)


def is_limit(error: str, text: str = "") -> bool:
    """A StopFailure (or a line on screen) that says a usage or rate limit stopped the agent."""
    return error in LIMIT_ERRORS or bool(LIMIT_TEXT_RE.search(text or ""))


def limit_line(screen: str) -> str | None:
    """The limit notice among a screen's last lines, if one is there."""
    for line in reversed(screen.splitlines()[-15:]):
        if LIMIT_TEXT_RE.search(line):
            return line.strip(" │⎿●")[:300]
    return None


def limit_notice(screen: str, transcript: str | None) -> str | None:
    """A turn that ended on a limit with no hook to say so: the notice on the screen,
    else in the last assistant message of the transcript (the CLI writes the API's
    error there too, and it stays after the screen has scrolled or been redrawn)."""
    from core.what import last_assistant_messages  # a reader of transcripts, pure

    return limit_line(screen) or limit_line("\n".join(last_assistant_messages(transcript, 1)))


def reset_time(text: str, now: float, local: dt.tzinfo | None = None) -> float | None:
    """The reset shown in `text` ("resets 3pm", "resets 3:30pm (Europe/Berlin)",
    "resets at 15:00") as the next such time after `now`; None when none is shown."""
    found = RESET_RE.search(text or "")
    if not found:
        return None
    hour, minute = int(found["hour"]), int(found["minute"] or 0)
    ampm = (found["ampm"] or "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    elif found["minute"] is None:
        return None  # a bare number ("resets 5") is not a time
    if hour > 23 or minute > 59:
        return None
    zone = local
    if found["tz"]:
        try:
            zone = ZoneInfo(found["tz"])
        except (ZoneInfoNotFoundError, ValueError):
            zone = local
    current = dt.datetime.fromtimestamp(now, zone or dt.datetime.now().astimezone().tzinfo)
    at = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at.timestamp() <= now:
        at += dt.timedelta(days=1)
    return at.timestamp()


def retry_at(text: str, now: float, retry: float, margin: float) -> tuple[float, bool]:
    """When to try a limited agent again, and whether the agent said when its limit resets."""
    shown = reset_time(text, now)
    return (shown + margin, True) if shown is not None else (now + retry, False)


class Limits:
    """Marks sessions limited and continues them when the limit resets (one timer each)."""

    def __init__(self, settings: Settings, registry: SessionRegistry, states: StateMachine,
                 queue: MessageQueue, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._registry = registry
        self._states = states
        self._queue = queue
        self._clock = clock
        self._timers: dict[str, asyncio.Task[None]] = {}
        states.on_change(self._on_state)

    async def hit(self, session: Session, text: str, source: str) -> None:
        """A limit stopped `session`; `text` is what the agent said about it."""
        now = self._clock()
        due, shown = retry_at(text, now, self._settings.limit_retry, self._settings.limit_margin)
        when = dt.datetime.fromtimestamp(due).strftime("%H:%M")
        said = text.strip() or "usage limit"
        reason = f"{said[:200]}; sm continues it at {when}" + ("" if shown else " (no reset time shown)")
        await self._registry.update(session, limit_resets_at=due)
        await self._states.set(session, State.LIMITED, Reason(ReasonKind.USAGE_LIMIT, reason), source=source)

    def start(self) -> None:
        for session in self._registry.live():
            if session.state == State.LIMITED:
                self._schedule(session)

    async def stop(self) -> None:
        timers = list(self._timers.values())
        for task in timers:
            task.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        self._timers.clear()

    async def _on_state(self, session: Session, previous: str) -> None:
        if session.state == State.LIMITED:
            self._schedule(session)
        elif (task := self._timers.pop(session.id, None)) is not None and task is not asyncio.current_task():
            task.cancel()

    def _schedule(self, session: Session) -> None:
        old = self._timers.pop(session.id, None)
        if old is not None:
            old.cancel()
        task = asyncio.get_running_loop().create_task(self._continue_later(session.id),
                                                      name=f"limit-{session.id}")
        task.add_done_callback(_log_failure)
        self._timers[session.id] = task

    async def _continue_later(self, session_id: str) -> None:
        session = self._registry.get_live(session_id)
        if session is None:
            return
        due = session.limit_resets_at or (session.state_since + self._settings.limit_retry)
        await asyncio.sleep(max(0.0, due - self._clock()))
        session = self._registry.get_live(session_id)
        if session is None or session.state != State.LIMITED:
            return
        self._timers.pop(session_id, None)
        log.info("%s: the usage limit should have reset; sending %r", session.label, self._settings.limit_continue)
        # Queued first (urgent: ahead of everything), then idle: the deliverer wakes
        # to a queue whose head is the continue message.
        await self._queue.enqueue(session.id, self._settings.limit_continue, sender_id=None,
                                  sender_label="sm", mode="urgent")
        await self._registry.update(session, limit_resets_at=None)
        await self._states.set(session, State.IDLE, source="usage limit reset")


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
