"""The engine's vocabulary: a session's state and the kinds of reason for it.

Behaviour depends on these enums, never on the wording of a reason, which is
free text for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


# The kinds of agent sm runs; core.providers describes each (one list, checked there).
PROVIDER_NAMES: tuple[str, ...] = ("claude", "codex", "gemini", "shell")


class State(StrEnum):
    STARTING = "starting"    # launched; the agent has not shown it is ready yet
    IDLE = "idle"            # at its prompt: the next message goes in
    BUSY = "busy"            # working on a turn
    WAITING = "waiting"      # a permission prompt, question, plan or other dialog needs a person
    LIMITED = "limited"      # stopped by a usage or rate limit; resumes when it resets
    ERRORED = "errored"      # an API error, an agent that exited, a start that failed
    LOST = "lost"            # its tmux is gone (a reboot), but the conversation can be resumed
    DEAD = "dead"            # final
    UNREACHABLE = "unreachable"  # on another host that is down


LIVE_STATES = frozenset(State) - {State.DEAD}


class ReasonKind(StrEnum):
    EXITED = "exited"              # the agent process exited
    START_FAILED = "start failed"  # it never started
    API_ERROR = "api error"        # the model API failed (StopFailure)
    USAGE_LIMIT = "usage limit"
    PERMISSION = "permission"      # a tool permission prompt
    QUESTION = "question"          # AskUserQuestion
    PLAN = "plan"                  # ExitPlanMode
    DIALOG = "dialog"              # any other dialog with choices, seen on the screen
    KILLED = "killed"
    VANISHED = "vanished"          # its tmux session disappeared


@dataclass(frozen=True)
class Reason:
    """Why a session is in its state: a kind to act on, and text for people."""

    kind: ReasonKind
    text: str = ""

    def __str__(self) -> str:
        return self.text or self.kind.value


# Kinds that mean the agent process is gone: no message can be delivered.
GONE = frozenset({ReasonKind.EXITED, ReasonKind.START_FAILED})
# Kinds whose dialog is announced with its own message (and buttons).
ASKS = frozenset({ReasonKind.PERMISSION, ReasonKind.QUESTION, ReasonKind.PLAN})


@dataclass(frozen=True)
class PaneScreen:
    """A pane's screen as the terminal shows it: the text with its escapes (colours, bold),
    its size in cells, and the cursor (x, y), which the escapes do not carry."""

    ansi: str
    cols: int
    rows: int
    cursor: tuple[int, int] | None


@dataclass(frozen=True)
class ToolbarKey:
    """A one-tap key on a session's card (`Engine.press_toolbar_key`): tmux key names
    pressed at once, or, with `text`, a slash command typed through the queue."""

    name: str                    # what the door's button sends: "esc", "enter", "mode", ...
    keys: tuple[str, ...] = ()   # tmux key names, pressed in order, never pasted
    text: str = ""               # typed as a message of its own, when the agent is idle


_ESC, _ENTER = ToolbarKey("esc", ("Escape",)), ToolbarKey("enter", ("Enter",))
# Each provider's one-tap keys, in the order the card shows them. Clear and Kill are
# the card's own buttons (they ask first); a person's text goes through the queue.
TOOLBAR: dict[str, tuple[ToolbarKey, ...]] = {
    # Esc interrupts; Shift+Tab cycles Claude's permission modes (default, accept edits, plan).
    "claude": (_ESC, _ENTER, ToolbarKey("mode", ("BTab",)), ToolbarKey("compact", text="/compact")),
    # Codex 0.171: Esc interrupts a turn; /compact summarises the conversation.
    "codex": (_ESC, _ENTER, ToolbarKey("compact", text="/compact")),
    # Gemini CLI: Esc cancels; Shift+Tab toggles accepting edits; /compress is its /compact.
    "gemini": (_ESC, _ENTER, ToolbarKey("mode", ("BTab",)), ToolbarKey("compact", text="/compress")),
    "shell": (ToolbarKey("ctrlc", ("C-c",)), _ENTER),
}
assert tuple(TOOLBAR) == PROVIDER_NAMES, "every provider has its toolbar"
