"""The deliverer: the one way into a pane.

Each live session has one worker task. It wakes when a message is queued for
its session, when the session's state changes, when a hook says a prompt was
submitted or a clear happened, or when the time it set for its next look comes
(its only timer: `_Worker.due`). It then asks core.deliver_rules what to do,
does that, and asks again, until the answer is to hold.

Order: answers to a dialog (keys) at once; urgent messages interrupt a busy
agent; the rest wait for idle and go in together as one input (important
before sequential).

A short single line is typed and Enter follows at once; other text is pasted
and Enter follows after a settle (see core.deliver_rules for the measurements).
A batch is marked delivered in one place (`_finish`), when the rules see it
confirmed: by a prompt the UserPromptSubmit hook reported (live, or replayed
from the spool after a crash), or, without hooks or when the hook is lost, by
the input box emptying after our Enter. An unconfirmed batch gets Enter again,
never a second paste; after `max_attempts` Enters it is marked failed, which
`sm status` shows.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from core import deliver_rules as rules
from core.errors import SmError
from core.providers import Provider, ScreenReading, get_provider
from core.queue import Message, MessageQueue
from core.sessions import Session, SessionRegistry
from core.state import StateMachine
from core.tmux import Tmux

log = logging.getLogger(__name__)


@dataclass
class DeliveryTuning:
    # After a paste, before Enter. Claude Code is documented to fold an Enter
    # that lands within ~100 ms of a paste into it. 2.1.330 was measured not to
    # (no fold at 0-150 ms, single- and multi-line), so this is a margin for
    # other versions and the fake agent (80 ms); typed text needs none.
    paste_settle: float = 0.1
    confirm_timeout: float = 1.5  # per Enter, waiting for the hook before looking
    max_attempts: int = 5  # Enters for a batch before the messages are marked failed
    retry_delay: float = 2.0
    interrupt_timeout: float = 10.0
    clear_timeout: float = 15.0
    inline_bytes: int = 4096
    batch_bytes: int = 8192  # pending messages go in together up to this size
    type_max_chars: int = 300  # longer single lines are pasted

    def rules(self) -> rules.Tuning:
        names = {f.name for f in fields(rules.Tuning)}
        return rules.Tuning(**{k: v for k, v in vars(self).items() if k in names})


def sender_label(label: str) -> str:
    """A sender's name as it may appear in a header: one line, no brackets, bounded.

    A person's Telegram name can hold a newline (a shell would run the rest as
    a command) or a `]` (a fake end of the header).
    """
    text = "".join(ch if ch.isprintable() else " " for ch in label)
    text = " ".join(text.replace("[", "(").replace("]", ")").split())
    return text[:80] or "?"


def undeliverable(session: Session) -> bool:
    """An errored session can still take input after an API error (the agent is at
    its prompt); not when its process exited or never started."""
    return session.gone


class _Worker:
    """One session's delivery task and what it remembers between looks."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.wake = asyncio.Event()
        self.due: float | None = None  # monotonic time of the next look, if any
        self.task: asyncio.Task[None] | None = None
        self.entered_at: float | None = None
        self.prompts: collections.deque[str] = collections.deque(maxlen=20)
        self.clearing = False  # a clear we typed waits for its SessionStart(clear)
        self.cleared = False
        self.interrupted_at: float | None = None

    def memory(self) -> rules.Memory:
        return rules.Memory(time.monotonic(), self.entered_at, tuple(self.prompts),
                            self.cleared, self.interrupted_at)


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
        self._rules = self.tuning.rules()
        self._clock = clock
        self._workers: dict[str, _Worker] = {}
        self._delivered_listeners: list[Callable[[str], None]] = []
        queue.on_enqueue(self.wake)
        states.on_change(self._on_state)

    # -- signals from the rest of the engine ----------------------------------------

    def on_delivered(self, callback: Callable[[str], None]) -> None:
        self._delivered_listeners.append(callback)

    def wake(self, session_id: str) -> _Worker:
        worker = self._workers.get(session_id)
        if worker is None:
            worker = self._workers[session_id] = _Worker(session_id)
            worker.task = asyncio.get_running_loop().create_task(
                self._run(worker), name=f"deliver-{session_id}"
            )
            worker.task.add_done_callback(self._task_done)
        worker.wake.set()
        return worker

    @staticmethod
    def _task_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped", task.get_name(), exc_info=task.exception())

    async def _on_state(self, session: Session, previous: str) -> None:
        worker = self.wake(session.id)
        if session.state == "lost":
            # The pane our Enter went to is gone: a batch in flight is sent again
            # after a resume (the rules requeue it when the new box is empty).
            worker.entered_at, worker.clearing, worker.interrupted_at = None, False, None
            worker.prompts.clear()

    def note_submitted(self, session_id: str, prompt: str) -> None:
        """UserPromptSubmit arrived (live or replayed): remember its prompt and wake.

        Only a signal: the worker matches the prompt against the batch in flight
        and marks what it carries delivered. A late hook of an earlier batch
        cannot confirm the next one, since the text must match.
        """
        self.wake(session_id).prompts.append(prompt)

    def note_cleared(self, session_id: str) -> None:
        """SessionStart with source=clear arrived."""
        worker = self._workers.get(session_id)
        if worker and worker.clearing:
            worker.cleared = True
            worker.wake.set()

    def is_clearing(self, session_id: str) -> bool:
        """A clear sm started is waiting for its SessionStart (the old context's Stop is stale)."""
        worker = self._workers.get(session_id)
        return bool(worker and worker.clearing)

    async def stop(self) -> None:
        tasks = [w.task for w in self._workers.values() if w.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()

    # -- the worker ------------------------------------------------------------------

    async def _run(self, worker: _Worker) -> None:
        while True:
            timeout = None if worker.due is None else max(0.0, worker.due - time.monotonic())
            await _wait(worker.wake, timeout)
            worker.wake.clear()
            worker.due = None
            try:
                await self._work(worker)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery to %s failed; looking again in %.0f s",
                              worker.session_id, self.tuning.retry_delay)
                worker.due = time.monotonic() + self.tuning.retry_delay
            if self._registry.get_live(worker.session_id) is None:
                await self._queue.fail_all(worker.session_id, "session is dead")
                self._workers.pop(worker.session_id, None)
                return

    async def _work(self, worker: _Worker) -> None:
        """Ask the rules and act until they say hold."""
        while True:
            session = self._registry.get_live(worker.session_id)
            if session is None:
                return
            provider = get_provider(session.provider)
            pending = await self._queue.pending(session.id)

            def ask(reading: ScreenReading | None = None) -> rules.Decision:
                return rules.decide(session, provider, pending, worker.memory(),
                                    lambda m: self.render(m, provider), self._rules, reading,
                                    exited=undeliverable(session))

            decision = ask()
            if isinstance(decision, rules.Look):
                decision = ask(await self._read(session, provider))
            if isinstance(decision, rules.Hold):
                if decision.log:
                    log.info("%s: %s", session.label, decision.why)
                if decision.retry_in is not None:
                    worker.due = time.monotonic() + decision.retry_in
                return
            await self._act(worker, session, provider, decision)

    async def _act(self, worker: _Worker, session: Session, provider: Provider,
                   decision: rules.Decision) -> None:
        pane = session.pane_id or ""
        match decision:
            case rules.Delivered(batch, by, set_state):
                if by == "screen" and provider.has_hooks:
                    log.warning("%s: input went in but its hook never came", session.label)
                await self._finish(worker, session, batch, set_state, by)
            case rules.Fail(messages, error):
                worker.entered_at, worker.clearing = None, False
                await self._queue.mark_failed(messages, error)
            case rules.Requeue(batch, why):
                worker.entered_at, worker.clearing = None, False
                await self._queue.mark_retry(batch, why)
            case rules.PressKeys(message):
                await self._queue.mark_inflight([message])
                await self._tmux.press(pane, *message.body.split())
                await self._finish(worker, session, [message], None, "keys")
            case rules.Interrupt(key):
                worker.interrupted_at = time.monotonic()
                await self._tmux.press(pane, key)
            case rules.MarkIdle(why):
                await self._states.set(session, "idle", source=why)
            case rules.Resume(batch):
                log.info("%s: Enter not taken (attempt %d); pressing again", session.label,
                         max(m.attempts for m in batch))
                await self._queue.mark_inflight(batch)  # counts the attempt
                worker.entered_at = time.monotonic()
                await self._tmux.press(pane, "Enter")
            case rules.Clear(message):
                await self._queue.mark_inflight([message])
                worker.cleared, worker.clearing = False, True
                worker.prompts.clear()
                worker.entered_at = time.monotonic()
                # A slash command must be typed, not pasted; its menu needs a moment.
                await self._tmux.type_text(pane, provider.clear_command)
                await asyncio.sleep(self.tuning.paste_settle)
                await self._tmux.press(pane, "Enter")
            case rules.Submit(batch, text, typed):
                await self._queue.mark_inflight(batch)
                worker.prompts.clear()
                worker.interrupted_at = None
                try:
                    if typed:
                        await self._tmux.type_text(pane, text)
                    else:
                        await self._tmux.paste(pane, text)
                        await asyncio.sleep(self.tuning.paste_settle)
                    worker.entered_at = time.monotonic()
                    await self._tmux.press(pane, "Enter")
                except SmError as exc:
                    # Left in flight: the next look finds the text in the box (Enter
                    # again) or not (sent again).
                    await self._queue.note_error(batch, str(exc))
                    worker.due = time.monotonic() + self.tuning.retry_delay
                    raise
            case _:
                raise AssertionError(f"unhandled delivery decision {decision!r}")

    async def _finish(self, worker: _Worker, session: Session, batch: list[Message],
                      set_state: str | None, by: str) -> None:
        """The one place a batch is marked delivered, and those waiting on it told."""
        worker.entered_at, worker.clearing = None, False
        carried = {m.id for m in batch}
        if by == "hook":
            worker.prompts.clear()  # spent: the same text sent again needs its own prompt
        if set_state and session.state != set_state:
            # Confirmed by the screen, or a clear: no hook says what the agent does
            # now. Without this a wait on it could fire before its turn began.
            await self._states.set(session, set_state, source=f"delivery ({by})")
        changed = await self._queue.mark_delivered(batch)
        log.debug("%s: delivered %s (%s)", session.label, sorted(carried), by)
        if changed:
            for callback in self._delivered_listeners:
                callback(session.id)

    def render(self, message: Message, provider: Provider) -> str:
        body = message.body
        if message.kind == "command":
            return body  # a slash command: a header would make it text
        size = len(body.encode("utf-8"))
        if size > self.tuning.inline_bytes:
            # Rendered again on every check of a submitted prompt: write it once.
            # Named by its content too: a file left from an older database is never
            # taken for this message.
            digest = hashlib.sha256(message.body.encode("utf-8")).hexdigest()[:12]
            path = self._files_dir / f"message-{message.id}-{digest}.txt"
            if not path.exists():
                self._files_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(body)
            # For a shell the notice is a comment too, or bash would run it.
            body = f"{provider.header_prefix}(a {size}-byte message; read it from {path})"
        if message.sender_id is None and message.sender_label == "sm":
            return provider.header_prefix + body  # sm's own wake-ups already start with "[sm]"
        who = sender_label(message.sender_label)
        if message.sender_id:
            who = f"{who} ({message.sender_id})"
        return provider.with_header(f"[from {who}]", body)

    async def _read(self, session: Session, provider: Provider) -> ScreenReading:
        screen = await self._tmux.capture(session.pane_id or "")
        command = ""
        if not provider.has_hooks:
            command = await self._tmux.current_command(session.pane_id or "")
        return provider.read_screen(screen, command)


async def _wait(event: asyncio.Event, timeout: float | None) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        return False
