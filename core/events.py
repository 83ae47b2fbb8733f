"""The engine's events, and the in-process bus that carries them.

Every event is a dataclass with a stable `type` name; `to_dict()` is its
wire form (`{"type", "at", "session", ...}`), also served as server-sent
events at GET /events. Consumers dispatch with `match` and list the events
they ignore on purpose (see `EVENT_TYPES`), so a new event that nobody
handles is caught by a test, not by a user.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar

from core.types import Reason, ReasonKind, State

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Event:
    type: ClassVar[str] = ""
    session: str | None
    at: float = 0.0  # set by the bus when published

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Reason):
                out[f.name] = value.text or value.kind.value
                out[f"{f.name}_kind"] = value.kind.value
                continue
            if f.name == "reason" and value is None:
                out["reason_kind"] = None
            out[f.name] = value
        return out


@dataclass(kw_only=True)
class SessionSpawned(Event):
    type: ClassVar[str] = "session.spawned"
    name: str
    provider: str
    parent: str | None
    workdir: str


@dataclass(kw_only=True)
class SessionRenamed(Event):
    type: ClassVar[str] = "session.renamed"
    name: str
    old_name: str


@dataclass(kw_only=True)
class StateChanged(Event):
    type: ClassVar[str] = "state.changed"
    name: str
    state: State
    previous: State
    reason: Reason | None = None
    source: str = ""


@dataclass(kw_only=True)
class SessionErrored(Event):
    type: ClassVar[str] = "session.errored"
    name: str
    reason: Reason | None = None


@dataclass(kw_only=True)
class SessionDead(Event):
    type: ClassVar[str] = "session.dead"
    name: str
    reason: Reason | None = None


@dataclass(kw_only=True)
class SessionResumed(Event):
    """A lost session runs again in tmux (same id, name, directory, parent and topic)."""

    type: ClassVar[str] = "session.resumed"
    name: str
    conversation: bool  # True: its agent continues its conversation; False: it starts afresh
    by: str = ""


@dataclass(kw_only=True)
class MessageQueued(Event):
    type: ClassVar[str] = "message.queued"
    message: int
    sender: str | None
    sender_label: str
    mode: str
    kind: str
    text: str
    origin: str | None = None


@dataclass(kw_only=True)
class MessageDelivered(Event):
    type: ClassVar[str] = "message.delivered"
    messages: list[int]


@dataclass(kw_only=True)
class MessageFailed(Event):
    type: ClassVar[str] = "message.failed"
    message: int
    error: str
    sender_label: str = ""
    text: str = ""
    origin: str | None = None


@dataclass(kw_only=True)
class PermissionNeeded(Event):
    """A person must answer: a permission prompt (with a `request` to decide),
    a question or plan (options from the hook), or a dialog seen on the screen."""

    type: ClassVar[str] = "permission.needed"
    name: str
    kind: ReasonKind
    tool: str
    input: Any = None
    request: int | None = None
    options: list[list[str]] = field(default_factory=list)


@dataclass(kw_only=True)
class PermissionResolved(Event):
    type: ClassVar[str] = "permission.resolved"
    request: int
    tool: str
    outcome: str  # allowed | allowed always | denied | answered at the terminal | expired
    by: str


@dataclass(kw_only=True)
class TurnFinished(Event):
    type: ClassVar[str] = "turn.finished"
    name: str
    text: str


@dataclass(kw_only=True)
class ToolStarted(Event):
    """The agent starts a tool (PreToolUse): what it is doing now, e.g. Bash: npm test."""

    type: ClassVar[str] = "tool.started"
    name: str
    tool: str
    detail: str = ""  # the command, file or pattern, cut to a line's length


@dataclass(kw_only=True)
class UsageUpdated(Event):
    """A session's tokens grew: read at the end of a turn (its card shows them)."""

    type: ClassVar[str] = "usage.updated"
    name: str


@dataclass(kw_only=True)
class IdleReminder(Event):
    type: ClassVar[str] = "idle.reminder"
    name: str
    idle_seconds: int


@dataclass(kw_only=True)
class FilesShared(Event):
    """Files an agent (`sm share`) or a person (`/send`) sends to the phone.

    `session` is the topic they go to; None: the owner's own place (`sm share --to owner`).
    """

    type: ClassVar[str] = "files.shared"
    paths: list[str]
    caption: str = ""
    sender: str | None = None  # the sharing agent's id; None: a person
    sender_label: str = ""


def _all_event_types() -> dict[str, type[Event]]:
    out: dict[str, type[Event]] = {}
    pending = list(Event.__subclasses__())
    while pending:
        cls = pending.pop()
        out[cls.type] = cls
        pending.extend(cls.__subclasses__())
    return out


EVENT_TYPES: dict[str, type[Event]] = _all_event_types()


def event_from_dict(wire: dict[str, Any]) -> Event | None:
    """An event back from its wire form (`to_dict`), e.g. another node's; None if its type is unknown."""
    import typing

    cls = EVENT_TYPES.get(str(wire.get("type")))
    if cls is None:
        return None
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in wire:
            continue
        value = wire[f.name]
        hint = str(hints.get(f.name))
        if "Reason" in hint and "ReasonKind" not in hint:
            kind = wire.get(f"{f.name}_kind")
            value = Reason(ReasonKind(kind), str(value or "")) if kind else None
        elif "ReasonKind" in hint and value is not None:
            value = ReasonKind(value)
        elif "State" in hint and value is not None:
            value = State(value)
        values[f.name] = value
    return cls(**values)


class EventBus:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._filters: dict[asyncio.Queue[Event], Callable[[Event], bool]] = {}
        self._taps: list[Callable[[Event], None]] = []
        self._clock = clock

    def tap(self, callback: Callable[[Event], None]) -> None:
        """Call `callback` with every event as it is published (it must not block: e.g. NATS's queue)."""
        self._taps.append(callback)

    def publish(self, event: Event) -> Event:
        event.at = self._clock()
        for tap in self._taps:
            tap(event)
        for queue in list(self._subscribers):
            only = self._filters.get(queue)
            if only is not None and not only(event):
                continue
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A stalled subscriber loses its oldest event, never blocks the engine.
                queue.get_nowait()
                queue.put_nowait(event)
                log.warning("event subscriber is not keeping up; dropped its oldest event")
        return event

    def subscribe(self, maxsize: int = 10000, only: Callable[[Event], bool] | None = None) -> "Subscription":
        """Events from now on (those `only` accepts); `with bus.subscribe() as events: async for ...`."""
        subscription = Subscription(self._subscribers, maxsize)
        if only is not None:
            self._filters[subscription.queue] = only
            subscription.on_close = lambda: self._filters.pop(subscription.queue, None)
        return subscription


class Subscription:
    def __init__(self, subscribers: set[asyncio.Queue[Event]], maxsize: int) -> None:
        self._subscribers = subscribers
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self.on_close: Callable[[], object] | None = None
        subscribers.add(self.queue)

    def close(self) -> None:
        self._subscribers.discard(self.queue)
        if self.on_close is not None:
            self.on_close()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Event:
        return await self.queue.get()
