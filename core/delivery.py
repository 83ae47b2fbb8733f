"""The deliverer: the one way into a pane.

Each live session has one worker task. It wakes when a message is queued for
its session or the session's state changes, never on a timer of its own, and
delivers what the queue holds in order:

* urgent messages first: interrupt the agent, wait for its prompt, deliver;
* otherwise, only when the agent is idle: important ones, then sequential, all
  pending ones together as one input.

Text goes in as a bracketed paste, then Enter as its own key after a settle
(Claude Code folds an Enter that lands within ~100 ms of a paste into the
paste). A message is marked delivered only once submission is confirmed: the
UserPromptSubmit hook for agents with hooks, the input box emptying (or the
shell running something) otherwise. Enter is retried a bounded number of
times; a batch that still won't go in goes back to the queue, and after
`max_attempts` is marked failed, which `sm status` shows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.errors import SmError
from core.providers import Provider, ScreenReading, get_provider
from core.queue import Message, MessageQueue
from core.sessions import Session, SessionRegistry
from core.state import StateMachine
from core.tmux import Tmux

log = logging.getLogger(__name__)


@dataclass
class DeliveryTuning:
    paste_settle: float = 0.15  # after a paste, before Enter
    confirm_timeout: float = 1.5  # per Enter, waiting for the hook / screen
    enter_retries: int = 3
    max_attempts: int = 5  # batches tried before the messages are marked failed
    retry_delay: float = 2.0
    interrupt_timeout: float = 10.0
    clear_timeout: float = 15.0
    inline_bytes: int = 4096
    batch_bytes: int = 8192  # pending messages go in together up to this size


def undeliverable(session: Session) -> bool:
    """An errored session can still take input after an API error (the agent is at
    its prompt); not when its process exited or never started."""
    return session.gone


class _Worker:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.wake = asyncio.Event()
        self.state_changed = asyncio.Event()
        self.submitted = asyncio.Event()
        self.cleared = asyncio.Event()
        self.expect = ""  # the start of the text in flight
        self.task: asyncio.Task[None] | None = None
        self.retry_handle: asyncio.TimerHandle | None = None


class Delivery:
    def __init__(
        self,
        registry: SessionRegistry,
        states: StateMachine,
        queue: MessageQueue,
        tmux: Tmux,
        files_dir: Path,
        tuning: DeliveryTuning | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._states = states
        self._queue = queue
        self._tmux = tmux
        self._files_dir = files_dir
        self.tuning = tuning or DeliveryTuning()
        self._clock = clock
        self._workers: dict[str, _Worker] = {}
        self._clearing: set[str] = set()
        self._delivered_listeners: list[Callable[[str], None]] = []
        queue.on_enqueue(self.wake)
        states.on_change(self._on_state)

    # -- signals from the rest of the engine ----------------------------------------

    def on_delivered(self, callback: Callable[[str], None]) -> None:
        self._delivered_listeners.append(callback)

    def wake(self, session_id: str) -> None:
        worker = self._workers.get(session_id)
        if worker is None:
            worker = self._workers[session_id] = _Worker(session_id)
            worker.task = asyncio.get_running_loop().create_task(
                self._run(worker), name=f"deliver-{session_id}"
            )
        worker.wake.set()

    async def _on_state(self, session: Session, previous: str) -> None:
        worker = self._workers.get(session.id)
        if worker:
            worker.state_changed.set()
        self.wake(session.id)

    def note_submitted(self, session_id: str, prompt: str | None = None) -> None:
        """UserPromptSubmit arrived: the batch in flight went in, if this is its prompt.

        A late hook of an earlier batch (one the screen confirmed) must not
        confirm the next one, so the prompt's text is checked when it has any.
        """
        worker = self._workers.get(session_id)
        if worker and (not prompt or not worker.expect or worker.expect in prompt):
            worker.submitted.set()

    async def confirm_prompt(self, session: Session, prompt: str) -> list[int]:
        """Mark in-flight messages whose text the submitted prompt carries as delivered.

        This is what settles a batch that a crash of the server left in flight,
        when its UserPromptSubmit hook is replayed from the spool.
        """
        provider = get_provider(session.provider)
        inflight = [m for m in await self._queue.pending(session.id) if m.status == "inflight"]
        matched = [m for m in inflight if self.render(m, provider)[:200] in prompt]
        if not matched:
            return []
        return await self._delivered(session.id, matched)

    async def _delivered(self, session_id: str, batch: list[Message]) -> list[int]:
        """Mark a batch delivered and tell those waiting on it (the waits)."""
        changed = await self._queue.mark_delivered(batch)
        for callback in self._delivered_listeners:
            callback(session_id)
        return changed

    def note_cleared(self, session_id: str) -> None:
        """SessionStart with source=clear arrived."""
        self._clearing.discard(session_id)
        worker = self._workers.get(session_id)
        if worker:
            worker.cleared.set()

    def is_clearing(self, session_id: str) -> bool:
        return session_id in self._clearing

    async def stop(self) -> None:
        tasks = [w.task for w in self._workers.values() if w.task]
        for worker in self._workers.values():
            if worker.retry_handle:
                worker.retry_handle.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()

    # -- the worker ------------------------------------------------------------------

    async def _run(self, worker: _Worker) -> None:
        while True:
            await worker.wake.wait()
            worker.wake.clear()
            try:
                while await self._step(worker):
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery to %s failed; retrying", worker.session_id)
                self._retry_later(worker, self.tuning.retry_delay)
            if self._registry.get_live(worker.session_id) is None:
                await self._queue.fail_all(worker.session_id, "session is dead")
                self._workers.pop(worker.session_id, None)
                return

    def _retry_later(self, worker: _Worker, delay: float) -> None:
        if worker.retry_handle:
            worker.retry_handle.cancel()
        worker.retry_handle = asyncio.get_running_loop().call_later(delay, worker.wake.set)

    async def _step(self, worker: _Worker) -> bool:
        """Deliver one batch if possible; True when it is worth looking again at once."""
        session = self._registry.get_live(worker.session_id)
        if session is None:
            return False
        pending = await self._queue.pending(session.id)
        if not pending:
            return False
        if undeliverable(session):
            await self._queue.fail_all(session.id, f"not delivered: {session.state_reason}")
            return False
        if session.pane_id is None or session.state == "starting":
            return False
        provider = get_provider(session.provider)

        keys = [m for m in pending if m.kind == "keys"]
        if keys:
            # Answers to a dialog on the screen (its digits): pressed at once, as keys,
            # never pasted, never followed by Enter; and only while a dialog is
            # there: a stale button must not type a digit into the input box, or
            # pick an option of a newer dialog it was never meant for.
            reading = await self._read(session, provider)
            if session.state != "waiting" and reading.state != "waiting":
                await self._queue.mark_failed(keys[:1], "no dialog is waiting for an answer now")
                return True
            await self._queue.mark_inflight(keys[:1])
            await self._tmux.press(session.pane_id, *keys[0].body.split())
            await self._delivered(session.id, keys[:1])
            return True

        if pending[0].mode == "urgent":
            batch = _batch([m for m in pending if m.mode == "urgent"], self.tuning.batch_bytes)
            if session.state in ("busy", "waiting"):
                await self._tmux.press(session.pane_id, provider.interrupt_key)
                if not await self._await_idle(worker, session, provider):
                    self._retry_later(worker, self.tuning.retry_delay)
                    return False
        else:
            if session.state not in ("idle", "errored"):
                return False
            batch = _batch(pending, self.tuning.batch_bytes)

        reading = await self._read(session, provider)
        if reading.state == "waiting":
            # A dialog is up (permission, trust, a start-up question): a paste and
            # an Enter would answer it. Wait until it is gone.
            self._retry_later(worker, self.tuning.retry_delay)
            return False
        leftover = [m for m in batch if m.status == "inflight"]
        if leftover:
            # A crash of the server left this batch in flight: finish it, never paste twice.
            return await self._resume(worker, session, provider, leftover, reading)
        if batch[0].kind == "clear" and not reading.input_text:
            return await self._clear(worker, session, provider, batch[0])
        if reading.input_text:
            # Someone is typing in this pane: never type over them.
            log.info("%s: input box holds text; holding %d message(s)", session.label, len(batch))
            self._retry_later(worker, self.tuning.retry_delay)
            return False

        await self._queue.mark_inflight(batch)
        text = "\n\n".join(self.render(m, provider) for m in batch)
        try:
            confirmed = await self._submit(worker, session, provider, text)
        except SmError as exc:
            confirmed, error = False, str(exc)
        else:
            error = "submission not confirmed"
        if confirmed:
            if session.state == "idle":
                # Confirmed by the screen (no hook, or a late one): the agent is on it
                # now. Without this a wait on it could fire before its turn began.
                await self._states.set(session, "busy", source="delivery")
            await self._delivered(session.id, batch)
            return True
        if max(m.attempts for m in batch) >= self.tuning.max_attempts:
            await self._queue.mark_failed(batch, f"{error} after {self.tuning.max_attempts} attempts")
            return True
        # Left in flight: the next try looks at the input box first, presses Enter
        # if the text is still there, and pastes again only if it is not.
        await self._queue.note_error(batch, error)
        self._retry_later(worker, self.tuning.retry_delay)
        return False

    async def _resume(self, worker: _Worker, session: Session, provider: Provider,
                      batch: list[Message], reading: ScreenReading) -> bool:
        box = reading.input_text
        if box and not _looks_like_ours(box, provider):
            self._retry_later(worker, self.tuning.retry_delay)  # a person's text: wait
            return False
        if not box and reading.state is not None:
            # The box is empty and no replayed hook said the batch went in: it never did.
            await self._queue.mark_retry(batch, "in flight when sm stopped; sent again")
            for m in batch:
                m.status = "queued"
            return True
        # Our text is still in the box, or the box can't be seen (a long paste can
        # push its top off the screen): press Enter; never paste a second copy.
        log.info("%s: finishing a batch left in flight (Enter, not a new paste)", session.label)
        worker.submitted.clear()
        worker.expect = self.render(batch[0], provider).split("\n", 1)[0][:60]
        for _ in range(self.tuning.enter_retries):
            await self._tmux.press(session.pane_id or "", "Enter")
            if provider.has_hooks:
                confirmed = await _wait(worker.submitted, self.tuning.confirm_timeout)
            else:
                confirmed = await self._screen_confirms(session, provider)
            if confirmed:
                await self._delivered(session.id, batch)
                return True
        if max(m.attempts for m in batch) >= self.tuning.max_attempts:
            # Nothing confirms it: rather twice than never.
            await self._queue.mark_retry(batch, "in flight and unconfirmed; sent again")
            return True
        await self._queue.mark_inflight(batch)  # counts the attempt; stays in flight
        self._retry_later(worker, self.tuning.retry_delay)
        return False

    def render(self, message: Message, provider: Provider) -> str:
        body = message.body
        size = len(body.encode("utf-8"))
        if size > self.tuning.inline_bytes:
            # Rendered again on every check of a submitted prompt: write it once.
            path = self._files_dir / f"message-{message.id}.txt"
            if not path.exists():
                self._files_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(body, encoding="utf-8")
            body = f"(a {size}-byte message; read it from {path})"
        if message.sender_label == "sm":
            return provider.header_prefix + body  # already starts with "[sm]"
        who = message.sender_label
        if message.sender_id:
            who = f"{who} ({message.sender_id})"
        return provider.with_header(f"[from {who}]", body)

    async def _read(self, session: Session, provider: Provider) -> ScreenReading:
        screen = await self._tmux.capture(session.pane_id or "")
        command = ""
        if not provider.has_hooks:
            command = await self._current_command(session)
        return provider.read_screen(screen, command)

    async def _current_command(self, session: Session) -> str:
        return await self._tmux.current_command(session.pane_id or "")

    async def _submit(
        self, worker: _Worker, session: Session, provider: Provider, text: str
    ) -> bool:
        pane = session.pane_id or ""
        worker.submitted.clear()
        worker.expect = text.split("\n", 1)[0][:60]
        await self._tmux.paste(pane, text)
        await asyncio.sleep(self.tuning.paste_settle)
        for attempt in range(self.tuning.enter_retries):
            await self._tmux.press(pane, "Enter")
            if provider.has_hooks:
                if await _wait(worker.submitted, self.tuning.confirm_timeout):
                    return True
                reading = await self._read(session, provider)
                if reading.state is not None and not reading.input_text:
                    log.warning("%s: input went in but its hook never came", session.label)
                    return True
            elif await self._screen_confirms(session, provider):
                return True
            log.info("%s: Enter not taken (attempt %d); pressing again", session.label, attempt + 1)
        return False

    async def _screen_confirms(self, session: Session, provider: Provider) -> bool:
        deadline = time.monotonic() + self.tuning.confirm_timeout
        while time.monotonic() < deadline:
            reading = await self._read(session, provider)
            if reading.state == "busy" or (reading.state is not None and not reading.input_text):
                return True
            await asyncio.sleep(0.05)
        return False

    async def _await_idle(self, worker: _Worker, session: Session, provider: Provider) -> bool:
        """After an interrupt: wait for the prompt (hooks may not report it)."""
        deadline = time.monotonic() + self.tuning.interrupt_timeout
        while time.monotonic() < deadline:
            if session.state == "idle":
                return True
            reading = await self._read(session, provider)
            if reading.state == "idle":
                await self._states.set(session, "idle", source="screen after interrupt")
                return True
            worker.state_changed.clear()
            await _wait(worker.state_changed, 0.1)
        return False

    async def _clear(
        self, worker: _Worker, session: Session, provider: Provider, message: Message
    ) -> bool:
        await self._queue.mark_inflight([message])
        pane = session.pane_id or ""
        worker.cleared.clear()
        self._clearing.add(session.id)
        try:
            # A slash command must be typed, not pasted.
            await self._tmux.type_text(pane, provider.clear_command)
            await asyncio.sleep(self.tuning.paste_settle)
            await self._tmux.press(pane, "Enter")
            if provider.has_hooks:
                ok = await _wait(worker.cleared, self.tuning.clear_timeout)
            else:
                ok = await self._screen_confirms(session, provider)
        finally:
            self._clearing.discard(session.id)
        if ok:
            await self._delivered(session.id, [message])
            await self._states.set(session, "idle", source="clear")
            return True
        await self._queue.mark_failed([message], "clear not confirmed by the agent")
        return True


def _looks_like_ours(box: str, provider: Provider) -> bool:
    """Text in an input box that sm put there: every message starts with its header."""
    text = box.lstrip()
    if provider.header_prefix and text.startswith(provider.header_prefix.strip()):
        text = text[len(provider.header_prefix.strip()) :].lstrip()
    return text.startswith(("[from ", "[sm]", "[Pasted text"))


def _batch(pending: list[Message], limit: int) -> list[Message]:
    """Pending messages that go in together: up to (not past) a clear, within `limit` bytes."""
    if pending[0].kind == "clear":
        return pending[:1]
    batch: list[Message] = []
    size = 0
    for message in pending:
        size += len(message.body.encode("utf-8"))
        if message.kind == "clear" or (batch and size > limit):
            break
        batch.append(message)
    return batch


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        return False
