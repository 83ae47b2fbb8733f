"""The durable message queue: every input to an agent is a row before anyone is told "queued"."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from core.events import EventBus, MessageDelivered, MessageFailed, MessageQueued
from core.store import Store, Transaction

MODES = ("sequential", "important", "urgent")
_MODE_RANK = {"urgent": 0, "important": 1, "sequential": 2}


@dataclass
class Message:
    id: int
    target_id: str
    sender_id: str | None
    sender_label: str
    mode: str
    kind: str
    body: str
    status: str
    attempts: int
    error: str | None
    created_at: float
    delivered_at: float | None

    @property
    def rank(self) -> tuple[int, int]:
        """Delivery order: urgent, then important, then sequential; FIFO within each."""
        return (_MODE_RANK.get(self.mode, 2), self.id)


class MessageQueue:
    def __init__(self, store: Store, bus: EventBus, clock: Callable[[], float] = time.time):
        self._store = store
        self._bus = bus
        self._clock = clock
        self._on_enqueue: list[Callable[[str], None]] = []

    def on_enqueue(self, callback: Callable[[str], None]) -> None:
        self._on_enqueue.append(callback)

    async def enqueue(
        self,
        target_id: str,
        body: str,
        *,
        sender_id: str | None,
        sender_label: str,
        mode: str = "sequential",
        kind: str = "text",
        origin: str | None = None,
        once: Callable[[Transaction], Awaitable[bool]] | None = None,
    ) -> Message | None:
        """Store the message, and announce it. `once` (a command from another node) records
        its id in the same transaction; when it says it was applied before, nothing is
        stored and None is returned."""
        now = self._clock()
        insert = ("INSERT INTO messages (target_id, sender_id, sender_label, mode, kind, body, created_at)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?)")
        params = (target_id, sender_id, sender_label, mode, kind, body, now)
        if once is None:
            message_id = await self._store.execute(insert, params)
        else:
            async with self._store.transaction() as tx:
                if not await once(tx):
                    return None
                message_id = await tx.execute(insert, params)
        message = Message(message_id, target_id, sender_id, sender_label, mode, kind, body,
                          "queued", 0, None, now, None)
        self._bus.publish(MessageQueued(
            session=target_id, message=message_id, sender=sender_id, sender_label=sender_label,
            mode=mode, kind=kind, text=body, origin=origin,
        ))
        for callback in self._on_enqueue:
            callback(target_id)
        return message

    async def pending(self, target_id: str) -> list[Message]:
        rows = await self._store.fetchall(
            "SELECT * FROM messages WHERE target_id = ? AND status IN ('queued', 'inflight')",
            (target_id,),
        )
        return sorted((Message(**dict(r)) for r in rows), key=lambda m: m.rank)

    async def has_pending(self, target_id: str) -> bool:
        row = await self._store.fetchone(
            "SELECT 1 FROM messages WHERE target_id = ? AND status IN ('queued', 'inflight') LIMIT 1",
            (target_id,),
        )
        return row is not None

    async def mark_inflight(self, messages: list[Message]) -> None:
        async with self._store.transaction() as tx:
            for m in messages:
                await tx.execute(
                    "UPDATE messages SET status = 'inflight', attempts = attempts + 1 WHERE id = ?",
                    (m.id,),
                )
                m.status, m.attempts = "inflight", m.attempts + 1

    async def mark_delivered(self, messages: list[Message]) -> list[int]:
        """Mark delivered; returns (and announces) the ids that were not already."""
        now = self._clock()
        changed = []
        async with self._store.transaction() as tx:
            for m in messages:
                rows = await tx.execute_rowcount(
                    "UPDATE messages SET status = 'delivered', delivered_at = ?, error = NULL"
                    " WHERE id = ? AND status != 'delivered'",
                    (now, m.id),
                )
                if rows:
                    changed.append(m.id)
        if changed:
            self._bus.publish(MessageDelivered(session=messages[0].target_id, messages=changed))
        return changed

    async def mark_retry(self, messages: list[Message], error: str) -> None:
        async with self._store.transaction() as tx:
            for m in messages:
                await tx.execute(
                    "UPDATE messages SET status = 'queued', error = ? WHERE id = ?", (error, m.id)
                )

    async def note_error(self, messages: list[Message], error: str) -> None:
        async with self._store.transaction() as tx:
            for m in messages:
                await tx.execute("UPDATE messages SET error = ? WHERE id = ?", (error, m.id))

    async def mark_failed(self, messages: list[Message], error: str) -> None:
        async with self._store.transaction() as tx:
            for m in messages:
                await tx.execute(
                    "UPDATE messages SET status = 'failed', error = ? WHERE id = ?", (error, m.id)
                )
        for m in messages:
            self._bus.publish(MessageFailed(session=m.target_id, message=m.id, error=error,
                                            sender_label=m.sender_label, text=m.body[:500]))

    async def fail_all(self, target_id: str, error: str) -> int:
        pending = await self.pending(target_id)
        await self.mark_failed(pending, error)
        return len(pending)

    UNDELIVERED = "(status = 'failed' OR (status IN ('queued','inflight') AND error IS NOT NULL))"

    async def undelivered(self, since: float = 0.0, limit: int = 50) -> list[Message]:
        """Failed messages and ones that needed retries, made since `since`: what `sm status` shows."""
        rows = await self._store.fetchall(
            f"SELECT * FROM messages WHERE {self.UNDELIVERED} AND created_at >= ? ORDER BY id DESC LIMIT ?",
            (since, limit))
        return [Message(**dict(r)) for r in rows]

    async def undelivered_before(self, before: float) -> int:
        """How many undelivered messages are older than `before` (what `sm status` leaves out)."""
        row = await self._store.fetchone(
            f"SELECT COUNT(*) FROM messages WHERE {self.UNDELIVERED} AND created_at < ?", (before,))
        return int(row[0]) if row else 0

    async def counts(self) -> dict[str, int]:
        rows = await self._store.fetchall(
            "SELECT target_id, COUNT(*) FROM messages WHERE status IN ('queued','inflight') GROUP BY target_id"
        )
        return {r[0]: r[1] for r in rows}
