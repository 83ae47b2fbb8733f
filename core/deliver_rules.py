"""What the deliverer does next for one session: a pure decision, no I/O.

`decide` looks at the session, its pending messages, what this process
remembers of the batch in flight (`Memory`) and, when it needs one, a reading
of the screen. It returns one small decision; core/delivery.py carries it out
and asks again. Without a reading it may answer `Look`: read the screen and
ask again with it, so a screen is captured only when the answer depends on it.

In order:

1. A batch in flight that a submitted prompt carries is `Delivered` (the
   UserPromptSubmit hook, live or replayed after a crash, only records the
   prompt: this is the one place a batch is confirmed).
2. Nothing can reach an agent that exited: `Fail` everything. A lost
   session (its tmux gone) and a limited one hold everything, keys included.
3. A card's one-tap keys (`toolbar`) are pressed at once, whatever the
   state. Answers to a dialog (`keys`) are pressed at once, and only while a
   dialog is up.
4. A batch in flight is finished before anything new goes in: wait for its
   confirmation, then look: an empty box after our Enter means it went in
   (the hook was lost), our text still in the box means `Resume` (Enter
   again, never a second paste), an empty box after a crash means it never
   went in (`Requeue`), and `max_attempts` Enters end in `Fail`.
5. Urgent messages `Interrupt` a busy agent, then wait for its prompt.
6. Everything else waits for idle, for a dialog to go, and for a person's
   typing to be cleared, then a `Clear` or a `Submit` (a toolbar's slash
   command, `command`, is typed alone and without a header).

How text goes in (`Submit.typed`), measured with Claude Code 2.1.330 (see
bench/delivery.py and the commit that introduced this module):

* A short single line is typed (`send-keys -l`) and Enter follows at once:
  there is no paste, so no window in which Claude folds an Enter into a
  paste. Typed text reached the model in ~50 ms; a paste of the same text
  took ~180 ms.
* Text with a newline or a tab, or longer than `type_max_chars`, is pasted.
  A typed tab is lost (Claude takes it as a key); typed text of ~800 chars is
  detected as a paste anyway. Enter follows after `paste_settle`.
* A trailing backslash makes Claude's Enter insert a newline instead of
  submitting, typed or pasted; a space after it keeps the backslash and
  submits (Claude trims the space).
* The first character is always `[`, from the sender header, so the text is
  never a slash command, a `!` shell command or a `#` memory note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Union

from core.providers import Provider, ScreenReading
from core.queue import Message
from core.sessions import Session

# Providers whose input box was measured to take typed text and an Enter right
# after it (bench/delivery.py). Others get a paste, as before.
TYPING_PROVIDERS = frozenset({"claude"})

@dataclass(frozen=True)
class Tuning:
    """The numbers the rules use (core.delivery.DeliveryTuning carries them)."""

    confirm_timeout: float = 1.5  # after an Enter, waiting for the hook, before looking
    screen_poll: float = 0.05  # without hooks, how often the screen is read to confirm
    max_attempts: int = 5  # Enters for one batch before its messages are marked failed
    retry_delay: float = 2.0  # looking again while a dialog or a person's text is up
    interrupt_timeout: float = 10.0  # after an interrupt, waiting for the prompt
    interrupt_poll: float = 0.1
    clear_timeout: float = 15.0  # after /clear, waiting for SessionStart(clear)
    batch_bytes: int = 8192  # pending messages go in together up to this size
    type_max_chars: int = 300  # longer text is pasted


@dataclass(frozen=True)
class Memory:
    """What this process knows that neither the queue nor the screen says."""

    now: float  # monotonic
    entered_at: float | None = None  # Enter pressed for the batch in flight, by us
    prompts: tuple[str, ...] = ()  # prompts UserPromptSubmit reported since the last Submit
    cleared: bool = False  # SessionStart(clear) arrived since the last Clear
    interrupted_at: float | None = None  # the last interrupt we pressed


# -- decisions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Look:
    """Read the screen, then ask again with the reading."""


@dataclass(frozen=True)
class Hold:
    why: str
    retry_in: float | None = None  # None: until something wakes the worker
    log: bool = False  # worth a line in the log (a person's typing, a dialog)


@dataclass(frozen=True)
class Delivered:
    batch: list[Message]
    by: str  # "hook", "screen", "keys", "clear"
    set_state: str | None = None  # the state the agent is in now, when no hook says so


@dataclass(frozen=True)
class Fail:
    messages: list[Message]
    error: str


@dataclass(frozen=True)
class Requeue:
    batch: list[Message]
    why: str


@dataclass(frozen=True)
class PressKeys:
    message: Message


@dataclass(frozen=True)
class Interrupt:
    key: str


@dataclass(frozen=True)
class MarkIdle:
    why: str


@dataclass(frozen=True)
class Resume:
    batch: list[Message]  # press Enter for it; never paste it again


@dataclass(frozen=True)
class Clear:
    message: Message


@dataclass(frozen=True)
class Submit:
    batch: list[Message]
    text: str
    typed: bool  # send-keys -l and Enter at once; otherwise a paste, a settle, Enter


Decision = Union[Look, Hold, Delivered, Fail, Requeue, PressKeys, Interrupt, MarkIdle, Resume,
                 Clear, Submit]


# -- the rules --------------------------------------------------------------------------------


def decide(
    session: Session,
    provider: Provider,
    pending: list[Message],
    memory: Memory,
    render: Callable[[Message], str],
    tuning: Tuning = Tuning(),
    reading: ScreenReading | None = None,
    exited: bool = False,
) -> Decision:
    """The next step for `session`. `pending` is the queue's order (urgent first);
    `exited` says the agent can take nothing more (core.delivery.undeliverable)."""
    if not pending:
        return Hold("nothing to deliver")
    inflight = [m for m in pending if m.status == "inflight"]

    matched = [m for m in inflight if m.kind in ("text", "command") and _carried(render(m), memory.prompts)]
    if matched:
        return Delivered(matched, "hook")
    if exited:
        return Fail(pending, f"not delivered: {session.state_reason}")
    if session.state == "lost":
        # Its tmux is gone: everything waits for `sm resume`, nothing fails.
        return Hold("the session is lost; waiting for it to be resumed")
    if session.state == "limited":
        # Text now would only meet the limit again; sm types the continue message
        # (first in the queue) when the limit resets.
        return Hold("the agent is at a usage limit; holding until it resets")
    if session.pane_id is None or session.state == "starting":
        return Hold("the agent is starting")

    toolbar = [m for m in pending if m.kind == "toolbar"]
    if toolbar:
        # A one-tap key of the card (Esc, Enter, Shift+Tab, Ctrl-C): the person
        # pressed it knowing the screen, so it goes in at once, whatever the state.
        return PressKeys(toolbar[0])

    keys = [m for m in pending if m.kind == "keys"]
    if keys:
        # Answers to a dialog on the screen (its digits): pressed at once, as keys,
        # never pasted, never followed by Enter; and only while a dialog is
        # there: a stale button must not type a digit into the input box, or
        # pick an option of a newer dialog it was never meant for.
        if session.state == "waiting":
            return PressKeys(keys[0])
        if reading is None:
            return Look()
        if reading.state == "waiting":
            return PressKeys(keys[0])
        return Fail(keys[:1], "no dialog is waiting for an answer now")

    if inflight:
        return _finish(session, provider, inflight, memory, render, tuning, reading)

    queued = [m for m in pending if m.status == "queued"]
    if queued[0].mode == "urgent":
        batch = _batch([m for m in queued if m.mode == "urgent"], tuning.batch_bytes)
        if session.state in ("busy", "waiting"):
            since = memory.interrupted_at
            if since is None or memory.now - since >= tuning.interrupt_timeout:
                return Interrupt(provider.interrupt_key)
            # Hooks may not report the prompt coming back: the screen does.
            if reading is None:
                return Look()
            if reading.state == "idle":
                return MarkIdle("screen after interrupt")
            return Hold("waiting for the prompt after an interrupt", tuning.interrupt_poll)
    elif session.state not in ("idle", "errored"):
        return Hold(f"waiting for idle ({session.state})")
    else:
        batch = _batch(queued, tuning.batch_bytes)

    if reading is None:
        return Look()
    if reading.state == "waiting":
        # A dialog is up (permission, trust, a start-up question): text and an
        # Enter would answer it. Wait until it is gone.
        return Hold("a dialog is on the screen", tuning.retry_delay)
    if reading.input_text:
        # Someone is typing in this pane: never type over them.
        return Hold(f"input box holds text; holding {len(batch)} message(s)", tuning.retry_delay,
                    log=True)
    if batch[0].kind == "clear":
        return Clear(batch[0])
    if batch[0].kind == "command":
        # A slash command of the toolbar (/compact): typed as it is, with no sender
        # header (which would make it text), and alone.
        return Submit(batch[:1], batch[0].body, typed=True)
    text = input_text("\n\n".join(render(m) for m in batch))
    return Submit(batch, text, typed=can_type(text, provider, tuning))


def _finish(session: Session, provider: Provider, inflight: list[Message], memory: Memory,
            render: Callable[[Message], str], tuning: Tuning,
            reading: ScreenReading | None) -> Decision:
    """A batch is in flight: confirm it, press Enter again, or put it back."""
    if inflight[0].kind == "clear":
        return _finish_clear(session, provider, inflight[0], memory, tuning, reading)
    since = memory.entered_at
    waiting = since is not None and memory.now - since < tuning.confirm_timeout
    if waiting and provider.has_hooks:
        return Hold("waiting for the agent to take the input",
                    tuning.confirm_timeout - (memory.now - since))
    if reading is None:
        return Look()
    if reading.state == "waiting":
        # Whatever put it there, an Enter now would answer it.
        return Hold("a dialog is on the screen", tuning.retry_delay)
    box = reading.input_text
    went_in = (reading.state is not None and not box) or (
        reading.state == "busy" and not provider.has_hooks)
    if since is not None and went_in:
        # Our Enter emptied the box (or the agent is working) and no hook came.
        return Delivered(inflight, "screen", "busy" if session.state == "idle" else None)
    if waiting:
        return Hold("waiting for the screen to show the input taken", tuning.screen_poll)
    if box and not looks_like_ours(box, provider):
        return Hold("input box holds someone's text; holding the batch in flight",
                    tuning.retry_delay, log=True)
    if reading.state is not None and not box:
        # A crash of the server left it in flight, and no replayed hook said it
        # went in: it never did.
        return Requeue(inflight, "in flight when sm stopped; sent again")
    # Our text is in the box, or the box can't be seen (a long paste can push
    # its top off the screen): Enter again, never a second copy.
    if max(m.attempts for m in inflight) >= tuning.max_attempts:
        return Fail(inflight, f"submission not confirmed after {tuning.max_attempts} attempts")
    return Resume(inflight)


def _finish_clear(session: Session, provider: Provider, message: Message, memory: Memory,
                  tuning: Tuning, reading: ScreenReading | None) -> Decision:
    if memory.cleared:
        return Delivered([message], "clear", "idle")
    since = memory.entered_at
    if since is None:
        return Requeue([message], "clear in flight when sm stopped; sent again")
    if provider.has_hooks:
        if memory.now - since < tuning.clear_timeout:
            return Hold("waiting for the agent to clear", tuning.clear_timeout - (memory.now - since))
        return Fail([message], "clear not confirmed by the agent")
    if reading is None:
        return Look()
    if reading.state == "busy" or (reading.state is not None and not reading.input_text):
        return Delivered([message], "clear", "idle")
    if memory.now - since < tuning.confirm_timeout:
        return Hold("waiting for the screen to show the clear", tuning.screen_poll)
    return Fail([message], "clear not confirmed by the agent")


# -- helpers ----------------------------------------------------------------------------------


def input_text(text: str) -> str:
    """The text as it goes into the box: a trailing backslash gets a space after it,
    or Claude's Enter would insert a newline instead of submitting."""
    return text + " " if text.endswith("\\") else text


def can_type(text: str, provider: Provider, tuning: Tuning) -> bool:
    return (provider.name in TYPING_PROVIDERS and len(text) <= tuning.type_max_chars
            and "\n" not in text and "\t" not in text)


_SPACE_RE = re.compile(r"\s+")


def _carried(text: str, prompts: tuple[str, ...]) -> bool:
    """A submitted prompt carries this message (whitespace aside: Claude turns a
    pasted tab into spaces and trims the end)."""
    key = _SPACE_RE.sub(" ", text[:200]).strip()
    return any(key in _SPACE_RE.sub(" ", p) for p in prompts)


def looks_like_ours(box: str, provider: Provider) -> bool:
    """Text in an input box that sm put there: every message starts with its header."""
    text = box.lstrip()
    if provider.header_prefix and text.startswith(provider.header_prefix.strip()):
        text = text[len(provider.header_prefix.strip()) :].lstrip()
    return text.startswith(("[from ", "[sm]", "[Pasted text"))


# Kinds that go in on their own, never batched with text: a clear, a toolbar's slash command.
ALONE = frozenset({"clear", "command"})


def _batch(pending: list[Message], limit: int) -> list[Message]:
    """Pending messages that go in together: up to (not past) a clear, within `limit` bytes."""
    if pending[0].kind in ALONE:
        return pending[:1]
    batch: list[Message] = []
    size = 0
    for message in pending:
        size += len(message.body.encode("utf-8"))
        if message.kind in ALONE or (batch and size > limit):
            break
        batch.append(message)
    return batch
