"""`sm wait` and `sm spawn --wait`: wake a waiting agent with a message, never by polling.

A wait is a row in SQLite, so it survives a restart. It fires when its target
is *settled*: idle with nothing queued or in flight for it. That is why
`sm send X task; sm wait X 600` never wakes early, even though X is still idle
when the wait is registered: the queued task keeps X unsettled until X has
taken it and finished. It also fires when the target dies, errors or is lost
(its tmux gone), and at its deadline; a limited target is not idle, so it
does not fire until the limit has reset and the queue is done. One timer task sleeps until the nearest deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from core.queue import MessageQueue
from core.sessions import Session, SessionRegistry
from core.state import State, StateMachine
from core.store import Store, Transaction

log = logging.getLogger(__name__)


class Waits:
    def __init__(
        self,
        store: Store,
        registry: SessionRegistry,
        states: StateMachine,
        queue: MessageQueue,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._registry = registry
        self._queue = queue
        self._clock = clock
        self._timer: asyncio.Task[None] | None = None
        self._rearm = asyncio.Event()
        self._lock = asyncio.Lock()
        self._checks: set[asyncio.Task[None]] = set()  # checks started by deliveries, kept till done
        # Wakes a waiter that is not here (another node's agent); True when it was sent there.
        self.elsewhere: Callable[[str, str], Awaitable[bool]] | None = None
        states.on_change(self._on_state)

    async def start(self) -> None:
        self._timer = asyncio.get_running_loop().create_task(self._run_timer(), name="waits-timer")
        for row in await self._store.fetchall(
            "SELECT DISTINCT target_id FROM waits WHERE fired_at IS NULL"
        ):
            await self.check(row[0])

    async def stop(self) -> None:
        tasks = [t for t in (self._timer, *self._checks) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def add(self, waiter: Session, target: Session, seconds: float, kind: str = "wait",
                  once: Callable[[Transaction], Awaitable[bool]] | None = None) -> int:
        """`once` (a wait another node asked for) records its command in the same transaction;
        when it was applied before, nothing is added and 0 is returned."""
        now = self._clock()
        insert = "INSERT INTO waits (waiter_id, target_id, kind, created_at, deadline) VALUES (?, ?, ?, ?, ?)"
        params = (waiter.id, target.id, kind, now, now + seconds)
        if once is None:
            wait_id = await self._store.execute(insert, params)
        else:
            async with self._store.transaction() as tx:
                if not await once(tx):
                    return 0
                wait_id = await tx.execute(insert, params)
        self._rearm.set()
        await self.check(target.id)
        return wait_id

    async def _on_state(self, session: Session, previous: str) -> None:
        await self.check(session.id)

    def on_delivered(self, target_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self.check(target_id), name=f"waits-check-{target_id}")
        self._checks.add(task)
        task.add_done_callback(self._checked)

    def _checked(self, task: asyncio.Task[None]) -> None:
        self._checks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("checking the waits after a delivery failed", exc_info=task.exception())

    async def check(self, target_id: str) -> None:
        """Fire the waits on `target_id` whose condition holds now."""
        async with self._lock:
            rows = await self._store.fetchall(
                "SELECT * FROM waits WHERE target_id = ? AND fired_at IS NULL", (target_id,)
            )
            if not rows:
                return
            target = self._registry.get_live(target_id)
            if target is None:
                dead = await self._registry.resolve(target_id)
                outcome, note = "dead", f"[sm] {dead.name} is dead" + (
                    f": {dead.state_reason}" if dead.state_reason else ""
                )
            elif target.gone:
                outcome, note = "dead", f"[sm] {target.name} stopped: {target.state_reason}"
            elif target.state == State.LOST:
                # Its tmux is gone: a parent must not wait forever. After `sm resume`
                # it can wait again.
                outcome, note = "lost", f"[sm] {target.name} was lost: {target.state_reason}"
            elif target.state == "idle" and not await self._queue.has_pending(target_id):
                outcome, note = "idle", f"[sm] {target.name} is idle"
            else:
                return
            for row in rows:
                after = f" (after {round(self._clock() - row['created_at'])}s)" if outcome == "idle" else ""
                await self._fire(row, outcome, note + after)

    async def _fire(self, row: object, outcome: str, text: str) -> None:
        wait_id, waiter_id = row["id"], row["waiter_id"]  # type: ignore[index]
        changed = await self._store.execute_rowcount(
            "UPDATE waits SET fired_at = ?, outcome = ? WHERE id = ? AND fired_at IS NULL",
            (self._clock(), outcome, wait_id),
        )
        if not changed:
            return
        if self._registry.get_live(waiter_id) is None:
            # A waiter on another node (several hosts) is woken there; else nobody is left to wake.
            if self.elsewhere is not None and await self.elsewhere(waiter_id, text):
                log.info("wait %s fired (%s) for %s on another node", wait_id, outcome, waiter_id)
            return
        await self._queue.enqueue(waiter_id, text, sender_id=None, sender_label="sm")
        log.info("wait %s fired (%s) for %s", wait_id, outcome, waiter_id)

    async def _run_timer(self) -> None:
        while True:
            self._rearm.clear()
            row = await self._store.fetchone(
                "SELECT MIN(deadline) FROM waits WHERE fired_at IS NULL"
            )
            nearest = row[0] if row else None
            timeout = None if nearest is None else max(0.0, nearest - self._clock())
            try:
                await asyncio.wait_for(self._rearm.wait(), timeout)
                continue
            except asyncio.TimeoutError:
                pass
            await self._fire_due()

    async def _fire_due(self) -> None:
        async with self._lock:
            due = await self._store.fetchall(
                "SELECT * FROM waits WHERE fired_at IS NULL AND deadline <= ?", (self._clock(),)
            )
            for row in due:
                target = self._registry.get_live(row["target_id"])
                name = target.name if target else row["target_id"]
                state = target.state if target else "dead"
                seconds = round(row["deadline"] - row["created_at"])
                await self._fire(row, "timeout", f"[sm] timeout: {name} still {state} after {seconds}s")
