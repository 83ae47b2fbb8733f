"""Telegram's sending limits, kept on our side so that 429s are the exception.

* a group: `group_per_window` sends per `window` seconds (20 a minute), all of
  its topics together, edits and topic changes included; `reserve` of them are
  kept for the actionable lane (bot/telegram/lanes.py), which the others never use;
* a private chat: one a second;
* the whole bot: 30 a second.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Awaitable, Callable

from bot.telegram.lanes import Lane, room, uses_reserve


class RateLimiter:
    def __init__(
        self,
        group_per_window: int = 20,
        window: float = 60.0,
        private_interval: float = 1.0,
        global_per_second: int = 30,
        reserve: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.group_per_window = group_per_window
        self.window = window
        self.private_interval = private_interval
        self.global_per_second = global_per_second
        self.reserve = reserve
        self._clock = clock
        self._sleep = sleep
        self._chats: dict[int, deque[float]] = {}
        self._global: deque[float] = deque()
        self._lock = asyncio.Lock()

    def _delay(self, chat_id: int, now: float, lane: int) -> float:
        sent = self._chats.setdefault(chat_id, deque())
        if chat_id < 0:
            limit, window, reserve = self.group_per_window, self.window, self.reserve
        else:
            limit, window, reserve = 1, self.private_interval, 0
        while sent and now - sent[0] >= window:
            sent.popleft()
        while self._global and now - self._global[0] >= 1.0:
            self._global.popleft()
        delay = 0.0
        if not room(len(sent), limit, reserve, lane):
            # Free once enough of the oldest sends have left the window.
            allowed = limit if uses_reserve(lane) else max(1, limit - reserve)
            delay = max(delay, sent[len(sent) - allowed] + window - now)
        if len(self._global) >= self.global_per_second:
            delay = max(delay, self._global[0] + 1.0 - now)
        return delay

    def delay(self, chat_id: int, lane: int = Lane.ACTIONABLE) -> float:
        """How long until `lane` has a free slot in `chat_id` (0: now); takes nothing."""
        return self._delay(chat_id, self._clock(), lane)

    def note(self, chat_id: int) -> None:
        """Count a call already made as part of another send (a topic's creation, a card's
        pin): it uses the window like any other, but nothing waits for it, so the worker
        is never stuck behind the chatter lane while a prompt comes in."""
        now = self._clock()
        self._delay(chat_id, now, Lane.ACTIONABLE)  # drops what left the windows
        self._chats[chat_id].append(now)
        self._global.append(now)

    async def acquire(self, chat_id: int, lane: int = Lane.ACTIONABLE) -> None:
        """Wait for a free slot of `lane` for `chat_id`, then take it."""
        while True:
            async with self._lock:
                now = self._clock()
                delay = self._delay(chat_id, now, lane)
                if delay <= 0:
                    self._chats[chat_id].append(now)
                    self._global.append(now)
                    return
            await self._sleep(delay)
