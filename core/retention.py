"""Retention: what sm keeps, and for how long (`SM_RETENTION_DAYS`, default 14).

At start and then daily, everything older than the cutoff that is only history
goes: dead sessions (with their messages and waits), delivered messages, fired
waits, and long-message files. A door's own tables are pruned by the door, through
a pruner it registers (`Engine.add_pruner`): it gets the cutoff and the sessions
about to go, and removes its rows for them (the Telegram door: its topics, sent
outbox rows, mirrored messages, decided prompts) before they are deleted.

A dead session is kept while a live or recent descendant still names it as its
parent (an agent's family tree must stay whole), and while a door's table still
refers to it (a door that has not started yet prunes it on the next run).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Awaitable, Callable

from core.store import Store

log = logging.getLogger(__name__)

DAY = 24 * 3600.0

# (cutoff, ids of the dead sessions about to be deleted) -> rows removed
Pruner = Callable[[float, list[str]], Awaitable[int]]

# The engine's own references to a session, removed with it.
OWN_REFERENCES = {("messages", "target_id"), ("waits", "waiter_id"), ("waits", "target_id"),
                  ("locks", "holder_id"), ("sessions", "parent_id")}


class Retention:
    def __init__(self, store: Store, days: float, files_dir: Path,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 every: float = DAY) -> None:
        self._store = store
        self._keep = days * DAY
        self._files_dir = files_dir
        self._clock = clock
        self._sleep = sleep
        self._every = every
        self._pruners: dict[str, Pruner] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, owner: str, pruner: Pruner) -> None:
        """A door's pruner; a run follows soon, so the door's rows are pruned at its start too."""
        self._pruners[owner] = pruner
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="retention")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.prune()
            except Exception:
                log.exception("pruning old history failed; trying again in a day")
            sleeper = asyncio.ensure_future(self._sleep(self._every))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait([sleeper, waker], return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    async def prune(self) -> dict[str, int]:
        """One run: what went, by kind."""
        cutoff = self._clock() - self._keep
        gone = await self._dead_sessions(cutoff)
        counts: dict[str, int] = {}
        for owner, pruner in list(self._pruners.items()):
            try:
                counts[owner] = await pruner(cutoff, gone)
            except Exception:
                log.exception("the %s door could not prune its tables", owner)
        gone = await self._unreferenced(gone)
        marks = ",".join("?" for _ in gone)
        async with self._store.transaction() as tx:
            counts["messages"] = await tx.execute_rowcount(
                "DELETE FROM messages WHERE status = 'delivered' AND delivered_at < ?", (cutoff,))
            counts["waits"] = await tx.execute_rowcount(
                "DELETE FROM waits WHERE fired_at IS NOT NULL AND fired_at < ?", (cutoff,))
            if gone:
                counts["messages"] += await tx.execute_rowcount(
                    f"DELETE FROM messages WHERE target_id IN ({marks})", gone)
                counts["waits"] += await tx.execute_rowcount(
                    f"DELETE FROM waits WHERE waiter_id IN ({marks}) OR target_id IN ({marks})", gone + gone)
                await tx.execute_rowcount(f"DELETE FROM locks WHERE holder_id IN ({marks})", gone)
                counts["sessions"] = await tx.execute_rowcount(
                    f"DELETE FROM sessions WHERE id IN ({marks})", gone)
        counts["files"] = await asyncio.to_thread(self._prune_files, cutoff)
        if any(counts.values()):
            log.info("pruned history older than %g days: %s", self._keep / DAY,
                     ", ".join(f"{n} {what}" for what, n in counts.items() if n))
        return counts

    async def _dead_sessions(self, cutoff: float) -> list[str]:
        """Sessions dead since before the cutoff whose descendants are all going too."""
        rows = await self._store.fetchall("SELECT id, parent_id, state, state_since FROM sessions")
        old = {r["id"] for r in rows if r["state"] == "dead" and r["state_since"] < cutoff}
        parents = {r["id"]: r["parent_id"] for r in rows}
        kept: set[str] = set()
        for session_id in parents:
            if session_id in old:
                continue
            parent = parents.get(session_id)
            while parent and parent not in kept:  # every ancestor of one that stays, stays
                kept.add(parent)
                parent = parents.get(parent)
        return sorted(old - kept)

    async def _unreferenced(self, ids: list[str]) -> list[str]:
        """Leave out sessions that a table other than the engine's own still refers to."""
        if not ids:
            return ids
        tables = [r[0] for r in await self._store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")]
        held: set[str] = set()
        for table in tables:
            for fk in await self._store.fetchall(f"PRAGMA foreign_key_list({table})"):
                if fk["table"] != "sessions" or (table, fk["from"]) in OWN_REFERENCES:
                    continue
                marks = ",".join("?" for _ in ids)
                rows = await self._store.fetchall(
                    f'SELECT DISTINCT "{fk["from"]}" FROM "{table}" WHERE "{fk["from"]}" IN ({marks})', ids)
                held |= {r[0] for r in rows}
        return [i for i in ids if i not in held]

    def _prune_files(self, cutoff: float) -> int:
        removed = 0
        try:
            files = list(self._files_dir.iterdir())
        except FileNotFoundError:
            return 0
        for path in files:
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError as exc:
                log.warning("could not remove the old message file %s: %s", path, exc)
        return removed
