"""The one owner of a session's state.

Hooks and the screen reader feed it observations; nothing else writes
`sessions.state`. Each change is persisted, published as `state.changed`, and
passed to the listeners (the deliverer and the waits) so they act at once
instead of polling.
"""

from __future__ import annotations

import logging
import time
from typing import Awaitable, Callable

from core.events import EventBus
from core.sessions import Session, SessionRegistry

log = logging.getLogger(__name__)

Listener = Callable[[Session, str], Awaitable[None]]


class StateMachine:
    def __init__(
        self, registry: SessionRegistry, bus: EventBus, clock: Callable[[], float] = time.time
    ) -> None:
        self._registry = registry
        self._bus = bus
        self._clock = clock
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def set(
        self, session: Session, state: str, reason: str | None = None, source: str = ""
    ) -> bool:
        """Move `session` to `state`; returns False when nothing changed."""
        if session.state == "dead":
            return False  # dead is final
        if session.state == state and session.state_reason == reason:
            return False
        previous = session.state
        now = self._clock()
        changes: dict[str, object] = {
            "state": state,
            "state_reason": reason,
            "state_since": now,
            "last_activity": now,
        }
        if state == "busy":
            changes["idle_reminded"] = 0
        await self._registry.update(session, **changes)
        log.info("%s: %s -> %s%s (%s)", session.label, previous, state,
                 f" [{reason}]" if reason else "", source or "?")
        self._bus.publish(
            "state.changed",
            session.id,
            name=session.name,
            state=state,
            previous=previous,
            reason=reason,
            source=source,
        )
        if state == "dead":
            self._bus.publish("session.dead", session.id, name=session.name, reason=reason)
        elif state == "errored":
            self._bus.publish("error", session.id, name=session.name, reason=reason)
        for listener in self._listeners:
            try:
                await listener(session, previous)
            except Exception:
                log.exception("state listener failed for %s", session.label)
        return True
