"""A topic's title says whether its session needs you: the topic list is then a dashboard.

Only the states that need a person put an emoji in front of the name (waiting,
limited, errored, lost, dead); busy and idle flip many times a minute and never
rename, since every rename posts a "topic edited" line into the topic. Renames
are chatter, at most one per topic per `interval` (counted from when the last
one was sent, which the outbox notes): a change that comes sooner waits for its turn, and what is renamed then is the state at that moment (the
latest wins, and a state that came and went costs nothing).
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

from bot.telegram.background import Background
from bot.telegram.lanes import Lane
from bot.telegram.outbox import Outbox
from bot.telegram.render import STATE_ICONS
from bot.telegram.topics import Topics
from core.sessions import Session
from core.types import State

NEEDS_YOU = frozenset({State.WAITING, State.LIMITED, State.ERRORED, State.LOST, State.DEAD})


def topic_name(session: Session, node: str | None = None) -> str:
    """`name · id`, and `@node` for a session on another node (several hosts)."""
    return f"{session.name} · {session.id}" + (f" @{node}" if node else "")


def title(session: Session, node: str | None = None) -> str:
    """The topic's title: its name, behind an emoji while the session needs you."""
    if session.state in NEEDS_YOU:
        return f"{STATE_ICONS[session.state]} {topic_name(session, node)}"
    return topic_name(session, node)


class Titles:
    def __init__(self, outbox: Outbox, topics: Topics, chat_id: int, background: Background,
                 session: Callable[[str], Awaitable[Session | None]], interval: float,
                 clock: Callable[[], float] = time.time,
                 node_of: Callable[[str], str | None] = lambda session_id: None) -> None:
        self._outbox = outbox
        self._topics = topics
        self._chat_id = chat_id
        self._background = background
        self._session = session  # the session as it is now, or None when it is gone
        self._interval = interval
        self._clock = clock
        self._later: set[str] = set()  # topics with a rename waiting for its turn
        self._node_of = node_of  # the node of another node's session, None for this one's

    def title(self, session: Session) -> str:
        return title(session, self._node_of(session.id))

    async def update(self, session: Session) -> None:
        """Rename the topic if its title should change: now, or once its last rename is `interval` old."""
        topic = await self._topics.get(session.id)
        if topic is None:
            return
        wanted = self.title(session)
        if wanted == topic.name or session.id in self._later:
            return
        if topic.thread_id is None:
            await self._topics.update(session.id, name=wanted)  # not made yet: made with this title
            return
        wait = (topic.renamed_at or 0) + self._interval - self._clock()
        if wait > 0:
            self._later.add(session.id)
            self._background.start(self._when_due(session.id, wait), f"title of {session.id}")
            return
        # A rename still pending is replaced (the latest wins); the outbox notes when one is sent.
        await self._topics.update(session.id, name=wanted)
        await self._outbox.put(self._chat_id, "topic", {"action": "rename", "name": wanted}, session.id,
                               coalesce=f"rename:{session.id}", lane=Lane.CHATTER)

    async def _when_due(self, session_id: str, wait: float) -> None:
        await asyncio.sleep(wait)
        self._later.discard(session_id)
        session = await self._session(session_id)
        if session is not None:
            await self.update(session)
