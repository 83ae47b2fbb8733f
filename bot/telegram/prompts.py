"""Permission prompts shown with buttons, kept in SQLite beside the outbox.

A prompt outlives sm-bot: after a restart the engine no longer knows the
request, so a tap on an old prompt is answered from here, with its outcome or
"expired", and never fails. A prompt is its session's and request's: request
ids are per node, and the bot shows every node's prompts (several hosts).
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


COLUMNS = "request_id, chat_id, session_id, item_id, tool, outcome, decided_by"


class PermissionPrompts:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def add(self, request_id: int, chat_id: int, session_id: str, item_id: int, tool: str,
                  node: str = "") -> None:
        """`node`: the node whose hook asks ('' this one's)."""
        await self._store.execute(
            "INSERT OR REPLACE INTO permission_prompts (session_id, request_id, node, chat_id, item_id, tool,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (session_id, request_id, node, chat_id, item_id, tool, self._clock()))

    async def get(self, session_id: str, request_id: int) -> Prompt | None:
        row = await self._store.fetchone(
            f"SELECT {COLUMNS} FROM permission_prompts WHERE session_id = ? AND request_id = ?",
            (session_id, request_id))
        return Prompt(*row) if row else None

    async def close(self, session_id: str, request_id: int, outcome: str, by: str | None) -> Prompt | None:
        """Record how an open prompt ended; the prompt, or None if it was not open."""
        async with self._store.transaction() as tx:
            changed = await tx.execute_rowcount(
                "UPDATE permission_prompts SET outcome = ?, decided_by = ?"
                " WHERE session_id = ? AND request_id = ? AND outcome IS NULL",
                (outcome, by, session_id, request_id))
        return await self.get(session_id, request_id) if changed else None

    async def open(self, node: str = "") -> list[Prompt]:
        """The open prompts of `node`'s sessions ('' this node's)."""
        rows = await self._store.fetchall(
            f"SELECT {COLUMNS} FROM permission_prompts WHERE outcome IS NULL AND node = ? ORDER BY created_at",
            (node,))
        return [Prompt(*row) for row in rows]
