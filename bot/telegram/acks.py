"""A person's messages waiting for their reaction (👍 once delivered, 👎 if it fails), in SQLite."""

from __future__ import annotations

import time
from typing import Callable

from core.store import Store


class Acks:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def add(self, queued_id: int, chat_id: int, message_id: int, session_id: str) -> None:
        """Acknowledge the Telegram message `message_id` when queued message `queued_id` settles."""
        await self._store.execute(
            "INSERT OR REPLACE INTO acks (queued_id, chat_id, message_id, session_id, created_at)"
            " VALUES (?, ?, ?, ?, ?)", (queued_id, chat_id, message_id, session_id, self._clock()))

    async def take(self, queued_id: int) -> int | None:
        """The Telegram message waiting on `queued_id`, forgotten as it is taken; None if none."""
        row = await self._store.fetchone("SELECT message_id FROM acks WHERE queued_id = ?", (queued_id,))
        if row is None:
            return None
        await self._store.execute("DELETE FROM acks WHERE queued_id = ?", (queued_id,))
        return row["message_id"]
