"""Workspace locks: one agent writes to a repository at a time.

The scope is the git root of the holder's working directory (or the
directory itself outside git). Locks live in SQLite, never in the repository.
A lock is re-entrant for its holder, has a lease that the holder's activity
renews (`SM_LOCK_LEASE`), and dies with its holder: on kill, death, or clear.
A lock taken by the file-write hook (`sm auto-lock`) ends with the holder's
turn; one taken with `sm lock` stays until `sm unlock`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

from core.errors import Conflict, Forbidden, NotFound
from core.sessions import Session, SessionRegistry
from core.store import Store


@dataclass
class Lock:
    workspace: str
    holder_id: str
    reason: str
    auto: int
    acquired_at: float
    renewed_at: float


class Locks:
    def __init__(self, store: Store, registry: SessionRegistry, lease: float,
                 workspace_of: Callable[[str], str], clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._registry = registry
        self.lease = lease
        self._workspace_of = workspace_of
        self._clock = clock
        self._released = asyncio.Condition()

    async def workspace(self, session: Session) -> str:
        return await asyncio.to_thread(self._workspace_of, session.workdir)

    async def get(self, workspace: str) -> Lock | None:
        row = await self._store.fetchone("SELECT * FROM locks WHERE workspace = ?", (workspace,))
        return Lock(**dict(row)) if row else None

    async def all(self) -> list[Lock]:
        return [Lock(**dict(r)) for r in await self._store.fetchall("SELECT * FROM locks ORDER BY acquired_at")]

    def _alive(self, lock: Lock) -> bool:
        holder = self._registry.get_live(lock.holder_id)
        return holder is not None and self._clock() - lock.renewed_at < self.lease

    def describe(self, lock: Lock) -> str:
        holder = self._registry.get_live(lock.holder_id)
        who = holder.label if holder else lock.holder_id
        return f"workspace locked by {who}: {lock.reason}"

    async def acquire(self, session: Session, reason: str, auto: bool = False) -> Lock:
        """Take the caller's workspace lock, or raise Conflict naming the holder."""
        workspace = await self.workspace(session)
        now = self._clock()
        async with self._store.transaction() as tx:
            rows = await tx.fetchall("SELECT * FROM locks WHERE workspace = ?", (workspace,))
            current = Lock(**dict(rows[0])) if rows else None
            if current and current.holder_id != session.id and self._alive(current):
                raise Conflict(self.describe(current))
            if current and current.holder_id == session.id:
                # Re-entrant: a manual lock stays manual; an auto lock becomes manual if asked.
                keep_auto = current.auto and auto
                await tx.execute("UPDATE locks SET renewed_at = ?, auto = ?, reason = ? WHERE workspace = ?",
                                 (now, int(keep_auto), reason if not auto else current.reason, workspace))
            else:
                await tx.execute("INSERT OR REPLACE INTO locks VALUES (?, ?, ?, ?, ?, ?)",
                                 (workspace, session.id, reason, int(auto), now, now))
        lock = await self.get(workspace)
        assert lock is not None
        return lock

    async def acquire_waiting(self, session: Session, reason: str, auto: bool, timeout: float) -> Lock:
        """Acquire, waiting up to `timeout` seconds for the holder to let go."""
        deadline = self._clock() + timeout
        while True:
            try:
                return await self.acquire(session, reason, auto)
            except Conflict:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise
                async with self._released:
                    try:
                        # Re-check at least every second: leases expire without a notify.
                        await asyncio.wait_for(self._released.wait(), min(remaining, 1.0))
                    except asyncio.TimeoutError:
                        pass

    async def release(self, session: Session | None, workspace: str | None = None) -> Lock:
        """`sm unlock`: by the holder (its own workspace), or the owner (any)."""
        if workspace is None:
            if session is None:
                raise NotFound("name the workspace to unlock (the owner has none of its own)")
            workspace = await self.workspace(session)
        lock = await self.get(workspace)
        if lock is None:
            raise NotFound(f"{workspace} is not locked")
        if session is not None and lock.holder_id != session.id:
            raise Forbidden(f"only the holder or the owner may release it: {self.describe(lock)}")
        await self._delete("workspace = ?", (workspace,))
        return lock

    async def release_auto(self, session: Session) -> None:
        await self._delete("holder_id = ? AND auto = 1", (session.id,))

    async def release_all(self, session: Session) -> None:
        await self._delete("holder_id = ?", (session.id,))

    async def renew(self, session: Session) -> None:
        await self._store.execute("UPDATE locks SET renewed_at = ? WHERE holder_id = ?",
                                  (self._clock(), session.id))

    async def _delete(self, where: str, params: tuple[object, ...]) -> None:
        count = await self._store.execute_rowcount(f"DELETE FROM locks WHERE {where}", params)
        if count:
            async with self._released:
                self._released.notify_all()
