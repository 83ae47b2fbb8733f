"""The in-process event bus.

Every event is `{"type", "at", "session", ...}`; the types (a stable schema,
also served as server-sent events at GET /events):

    session.spawned   session, name, provider, parent
    session.renamed   session, name, old_name
    session.dead      session, name, reason
    state.changed     session, name, state, previous, reason
    message.queued    session (target), message, sender, sender_label, mode, text
    message.delivered session (target), messages [ids]
    message.failed    session (target), message, error
    permission.needed session, name, kind (permission | question | plan | screen), tool, input,
                      request (permission: the id to decide), options (question/screen: labels)
    permission.resolved session, request, tool, outcome, by
    turn.finished     session, name, text (the agent's final answer of the turn)
    error             session, reason
    idle.reminder     session, name, idle_seconds
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

Event = dict[str, Any]


class EventBus:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._clock = clock

    def publish(self, type_: str, session: str | None = None, **fields: Any) -> Event:
        event: Event = {"type": type_, "at": self._clock(), "session": session, **fields}
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A stalled subscriber loses its oldest event, never blocks the engine.
                queue.get_nowait()
                queue.put_nowait(event)
                log.warning("event subscriber is not keeping up; dropped its oldest event")
        return event

    def subscribe(self, maxsize: int = 10000) -> "Subscription":
        """Events from now on; use as `with bus.subscribe() as events: async for ...`."""
        return Subscription(self._subscribers, maxsize)


class Subscription:
    def __init__(self, subscribers: set[asyncio.Queue[Event]], maxsize: int) -> None:
        self._subscribers = subscribers
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        subscribers.add(self.queue)

    def close(self) -> None:
        self._subscribers.discard(self.queue)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Event:
        return await self.queue.get()
