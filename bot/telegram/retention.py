"""The Telegram door's part of retention: its rows that are only history (core/retention.py)."""

from __future__ import annotations

from core.store import Store


async def prune(store: Store, cutoff: float, gone: list[str]) -> int:
    """Sent outbox rows, decided permission prompts and never-settled acknowledgements older
    than `cutoff`, and the topics, mirrored messages and acknowledgements of the dead
    sessions in `gone` (deleted next by the engine)."""
    async with store.transaction() as tx:
        removed = await tx.execute_rowcount(
            "DELETE FROM outbox WHERE status = 'sent' AND sent_at < ?", (cutoff,))
        removed += await tx.execute_rowcount(
            "DELETE FROM permission_prompts WHERE outcome IS NOT NULL AND created_at < ?", (cutoff,))
        removed += await tx.execute_rowcount("DELETE FROM acks WHERE created_at < ?", (cutoff,))
        if gone:
            marks = ",".join("?" for _ in gone)
            removed += await tx.execute_rowcount(f"DELETE FROM mirrored WHERE session_id IN ({marks})", gone)
            removed += await tx.execute_rowcount(f"DELETE FROM topics WHERE session_id IN ({marks})", gone)
            removed += await tx.execute_rowcount(f"DELETE FROM acks WHERE session_id IN ({marks})", gone)
    return removed
