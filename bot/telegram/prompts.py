"""Permission prompts shown with buttons, kept in SQLite beside the outbox.

A prompt outlives sm-bot: after a restart the engine no longer knows the
request, so a tap on an old prompt is answered from here, with its outcome or
"expired", and never fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from aiogram.utils.i18n import gettext as _

from bot.telegram.render import esc
from core.store import Store

# What the engine's permission.resolved outcomes say to a person.
EXPIRED = "expired"
RESTARTED = "restarted"


def outcome_text(outcome: str, by: str | None) -> str:
    return {"allowed": _("allowed by {by}"), "allowed always": _("allowed always by {by}"),
            "denied": _("denied by {by}"), "answered at the terminal": _("answered at the terminal"),
            EXPIRED: _("expired: no answer came; the dialog waits at the terminal"),
            RESTARTED: _("expired: sm restarted; the dialog waits at the terminal"),
            }.get(outcome, outcome).format(by=esc(by or ""))


@dataclass
class Prompt:
    request_id: int
    chat_id: int
    session_id: str
    item_id: int
    tool: str
    outcome: str | None
    decided_by: str | None


class PermissionPrompts:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def add(self, request_id: int, chat_id: int, session_id: str, item_id: int, tool: str) -> None:
        await self._store.execute(
            "INSERT OR REPLACE INTO permission_prompts (request_id, chat_id, session_id, item_id, tool,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (request_id, chat_id, session_id, item_id, tool, self._clock()))

    async def get(self, request_id: int) -> Prompt | None:
        row = await self._store.fetchone(
            "SELECT request_id, chat_id, session_id, item_id, tool, outcome, decided_by"
            " FROM permission_prompts WHERE request_id = ?", (request_id,))
        return Prompt(*row) if row else None

    async def close(self, request_id: int, outcome: str, by: str | None) -> Prompt | None:
        """Record how an open prompt ended; the prompt, or None if it was not open."""
        async with self._store.transaction() as tx:
            changed = await tx.execute_rowcount(
                "UPDATE permission_prompts SET outcome = ?, decided_by = ?"
                " WHERE request_id = ? AND outcome IS NULL", (outcome, by, request_id))
        return await self.get(request_id) if changed else None

    async def open(self) -> list[Prompt]:
        rows = await self._store.fetchall(
            "SELECT request_id, chat_id, session_id, item_id, tool, outcome, decided_by"
            " FROM permission_prompts WHERE outcome IS NULL ORDER BY request_id")
        return [Prompt(*row) for row in rows]
