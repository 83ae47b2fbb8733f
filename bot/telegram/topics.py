"""The forum topic of each session: the mapping, kept in SQLite."""

from __future__ import annotations

from dataclasses import dataclass

from core.store import Store


@dataclass
class Topic:
    session_id: str
    chat_id: int
    thread_id: int | None
    name: str
    card_message_id: int | None
    closed: int
    note: str | None = None  # the latest chatter folded into the card (bot/telegram/lanes.py)
    notify: str = "all"  # all | actionable | muted (bot/telegram/lanes.py: silent)
    verbose: int | None = None  # this topic's own verbose choice; None: the setting's
    renamed_at: float | None = None


class Topics:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, session_id: str) -> Topic | None:
        row = await self._store.fetchone("SELECT * FROM topics WHERE session_id = ?", (session_id,))
        return Topic(**dict(row)) if row else None

    async def in_chat(self, chat_id: int) -> list[Topic]:
        rows = await self._store.fetchall("SELECT * FROM topics WHERE chat_id = ? ORDER BY rowid", (chat_id,))
        return [Topic(**dict(row)) for row in rows]

    async def by_thread(self, chat_id: int, thread_id: int) -> Topic | None:
        row = await self._store.fetchone(
            "SELECT * FROM topics WHERE chat_id = ? AND thread_id = ?", (chat_id, thread_id)
        )
        return Topic(**dict(row)) if row else None

    async def ensure(self, session_id: str, chat_id: int, name: str) -> Topic:
        await self._store.execute(
            "INSERT OR IGNORE INTO topics (session_id, chat_id, name) VALUES (?, ?, ?)",
            (session_id, chat_id, name),
        )
        topic = await self.get(session_id)
        assert topic is not None
        return topic

    async def update(self, session_id: str, **changes: object) -> None:
        assignments = ", ".join(f"{key} = ?" for key in changes)
        await self._store.execute(
            f"UPDATE topics SET {assignments} WHERE session_id = ?", [*changes.values(), session_id]
        )

    async def remember(self, chat_id: int, message_id: int, session_id: str) -> None:
        await self._store.execute(
            "INSERT OR REPLACE INTO mirrored (chat_id, message_id, session_id) VALUES (?, ?, ?)",
            (chat_id, message_id, session_id),
        )

    async def session_of_message(self, chat_id: int, message_id: int) -> str | None:
        row = await self._store.fetchone(
            "SELECT session_id FROM mirrored WHERE chat_id = ? AND message_id = ?", (chat_id, message_id)
        )
        return row[0] if row else None
