"""Live: a screenshot of a session that keeps itself up to date, for the topic you look at.

One live view per chat at a time (starting one stops the other). While the
agent is busy, the same photo is replaced (editMessageMedia) at most every
`interval` seconds, and only when the screen changed. The view stops when the
agent stops working (idle, or any state but busy, waiting and starting), when
Live is tapped again, or after `max_seconds`. Its photos are chatter: they never
use the actionable reserve, and while a view runs the chat's other chatter folds
into the cards (bot/telegram/outbox.py, `folding`), so the budget goes to the picture.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from bot.telegram.actions import screen_photo
from bot.telegram.background import Background
from bot.telegram.lanes import Lane
from bot.telegram.outbox import Outbox
from core.engine import Engine
from core.errors import SmError
from core.events import StateChanged
from core.lifecycle import Caller
from core.sessions import Session
from core.types import PaneScreen, State

KEEPS_RUNNING = frozenset({State.BUSY, State.WAITING, State.STARTING})


def screen_digest(screen: PaneScreen) -> str:
    return hashlib.sha256(f"{screen.cursor}\n{screen.ansi}".encode()).hexdigest()


@dataclass
class _View:
    session_id: str
    item: int  # the outbox item of the photo, whose message the view edits
    shown: str  # the digest of the screen the photo shows
    task: "asyncio.Task[None] | None" = None


class Live:
    def __init__(self, engine: Engine, caller: Caller, outbox: Outbox, background: Background,
                 interval: float, max_seconds: float, on_change: Callable[[str], Awaitable[None]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._caller = caller
        self._outbox = outbox
        self._background = background
        self._interval = interval
        self._max = max_seconds
        self._on_change = on_change  # a session's view started or stopped: its card's button changes
        self._clock = clock
        self._views: dict[int, _View] = {}  # chat id -> its one live view

    def running(self, session_id: str) -> bool:
        return any(v.session_id == session_id for v in self._views.values())

    async def toggle(self, chat_id: int, session: Session) -> bool:
        """Start a view of the session in the chat, or stop the one running; True if it runs now."""
        view = self._views.get(chat_id)
        if view is not None and view.session_id == session.id:
            await self.stop(chat_id)
            return False
        await self.start(chat_id, session)
        return True

    async def start(self, chat_id: int, session: Session) -> None:
        if chat_id in self._views:
            await self.stop(chat_id)
        screen = await self._engine.screen(self._caller, session.id)
        item = await self._outbox.put(chat_id, "photo", await screen_photo(self._engine, self._caller, session, screen),
                                      session.id, lane=Lane.CHATTER)
        view = _View(session.id, item, screen_digest(screen))
        self._views[chat_id] = view
        self._outbox.folding.add(chat_id)
        view.task = self._background.start(self._run(chat_id, view), f"live view of {session.id}")
        await self._on_change(session.id)

    async def stop(self, chat_id: int, final: bool = False) -> None:
        """End the chat's view; with `final`, the photo shows the screen as it is first."""
        view = self._views.pop(chat_id, None)
        if view is None:
            return
        self._outbox.folding.discard(chat_id)
        if view.task is not None and view.task is not asyncio.current_task():
            view.task.cancel()
        if final:
            await self._refresh(chat_id, view)
        await self._on_change(view.session_id)

    async def on_state(self, session: Session, event: StateChanged) -> None:
        """The agent stopped working: its view shows the last screen and ends."""
        if event.state in KEEPS_RUNNING:
            return
        for chat_id, view in list(self._views.items()):
            if view.session_id == session.id:
                await self.stop(chat_id, final=True)

    async def _run(self, chat_id: int, view: _View) -> None:
        deadline = self._clock() + self._max
        while self._clock() < deadline:
            await asyncio.sleep(min(self._interval, max(0.0, deadline - self._clock())))
            if self._views.get(chat_id) is not view:
                return
            try:
                session = await self._engine.session(self._caller, view.session_id)
            except SmError:
                break
            if session.state == State.BUSY:
                await self._refresh(chat_id, view)
        if self._views.get(chat_id) is view:
            await self.stop(chat_id, final=True)

    async def _refresh(self, chat_id: int, view: _View) -> None:
        """Replace the photo, if the screen changed since it was drawn."""
        try:
            session = await self._engine.session(self._caller, view.session_id)
            screen = await self._engine.screen(self._caller, session.id)
        except SmError:
            return  # the pane is gone: the photo keeps its last screen
        digest = screen_digest(screen)
        if digest == view.shown:
            return
        view.shown = digest
        payload = await screen_photo(self._engine, self._caller, session, screen)
        payload["item"] = view.item
        await self._outbox.put(chat_id, "photo", payload, session.id, coalesce=f"live:{chat_id}",
                               lane=Lane.CHATTER)
