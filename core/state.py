"""A session's state, and its one owner.

States and the kinds of reason are enums: behaviour depends on them, never on
the wording of a reason, which is free text for people. Hooks and the screen
reader feed `StateMachine` observations; nothing else writes
`sessions.state`. Each change is persisted, published as `StateChanged`, and
passed to the listeners (the deliverer, the waits, the locks) so they act at
once instead of polling.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Awaitable, Callable

from core.events import EventBus, SessionDead, SessionErrored, StateChanged
from core.types import ASKS, GONE, LIVE_STATES, Reason, ReasonKind, State

__all__ = ["ASKS", "GONE", "LIVE_STATES", "Reason", "ReasonKind", "State", "StateMachine"]

if TYPE_CHECKING:
    from core.sessions import Session, SessionRegistry

log = logging.getLogger(__name__)


Listener = Callable[["Session", str], Awaitable[None]]


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
        self, session: Session, state: State, reason: Reason | None = None, source: str = ""
    ) -> bool:
        """Move `session` to `state`; returns False when nothing changed."""
        state = State(state)
        if reason is not None and not isinstance(reason, Reason):
            raise TypeError(f"a state's reason is a Reason, not {type(reason).__name__}")
        if session.state == State.DEAD:
            return False  # dead is final
        if session.state == state and session.reason == reason:
            return False
        previous = State(session.state)
        now = self._clock()
        changes: dict[str, object] = {
            "state": state,
            "state_kind": reason.kind if reason else None,
            "state_reason": reason.text if reason else None,
            "state_since": now,
            "last_activity": now,
        }
        if state == State.BUSY:
            changes["idle_reminded"] = 0
        await self._registry.update(session, **changes)
        log.info("%s: %s -> %s%s (%s)", session.label, previous, state,
                 f" [{reason.kind}: {reason.text}]" if reason else "", source or "?")
        self._bus.publish(StateChanged(session=session.id, name=session.name, state=state,
                                       previous=previous, reason=reason, source=source))
        if state == State.DEAD:
            self._bus.publish(SessionDead(session=session.id, name=session.name, reason=reason))
        elif state == State.ERRORED:
            self._bus.publish(SessionErrored(session=session.id, name=session.name, reason=reason))
        for listener in self._listeners:
            try:
                await listener(session, previous)
            except Exception:
                log.exception("state listener failed for %s", session.label)
        return True
