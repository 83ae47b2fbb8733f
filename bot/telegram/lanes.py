"""Priority lanes: which pending outbox item goes next, and what may wait or fold.

Pure functions over the outbox's pending items, tested with tables
(tests/test_telegram_outbox.py); the outbox only acts on their answers.

* **actionable** goes first: a permission prompt, a question or plan, a
  dialog, a message that failed, an agent that died, errored or hit a limit;
* **conversation** next: final answers, messages between agents, replies to
  the person, files;
* **chatter** last: cards, topic changes, spawn notices, reactions, Live.

Lanes overtake each other; within a lane each topic keeps its order. A share
of every group's budget (`reserve`) is kept for the actionable lane, so a
prompt never waits behind a minute of chatter; under that pressure chatter
texts fold into the topic's pinned card instead of being posted.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Protocol, Sequence, TypeVar

TEXT_LIMIT = 4000  # Telegram's 4096, less room for a session label
JOINER = "\n\n"


class Lane(IntEnum):
    ACTIONABLE = 0
    CONVERSATION = 1
    CHATTER = 2


class Pending(Protocol):
    id: int
    session_id: str | None
    kind: str
    lane: int
    payload: dict[str, Any]


P = TypeVar("P", bound=Pending)


def uses_reserve(lane: int) -> bool:
    """Only the actionable lane may use the share of the budget kept for it."""
    return lane == Lane.ACTIONABLE


def room(sent_in_window: int, limit: int, reserve: int, lane: int) -> bool:
    """Whether one more send of `lane` fits a group's window that holds `sent_in_window`."""
    if uses_reserve(lane):
        return sent_in_window < limit
    return sent_in_window < max(1, limit - reserve)


def _alone(item: Pending) -> bool:
    return item.kind != "text" or bool(item.payload.get("reply_markup")) or bool(item.payload.get("reply_to"))


def _same_topic(a: Pending, b: Pending) -> bool:
    if a.session_id != b.session_id:
        return False
    return a.session_id is not None or a.payload.get("thread_id") == b.payload.get("thread_id")


def next_batch(items: Sequence[P]) -> list[P]:
    """The most urgent lane's first item, with the texts of its topic and lane that can ride along.

    `items` are pending, in the order they were put. A text never overtakes a
    non-text of its own topic and lane (a card, a file, a message with buttons).
    """
    if not items:
        return []
    lane = min(item.lane for item in items)
    ours = [item for item in items if item.lane == lane]
    first = ours[0]
    if _alone(first):
        return [first]
    batch, size = [first], len(first.payload["html"])
    for item in ours[1:]:
        if not _same_topic(item, first):
            continue  # other topics keep their own order; skipping them is safe
        if _alone(item):
            break
        size += len(JOINER) + len(item.payload["html"])
        if size > TEXT_LIMIT:
            break
        batch.append(item)
    return batch


def foldable(item: Pending) -> bool:
    """Chatter that may become a line of its topic's card rather than a message of its own."""
    return item.lane == Lane.CHATTER and item.kind == "text" and item.session_id is not None and not _alone(item)


def to_fold(items: Sequence[P], pressed: bool) -> list[P]:
    """Under pressure (no room outside the reserve now), every foldable chatter text."""
    return [item for item in items if foldable(item)] if pressed else []


NOTIFY_MODES = ("all", "actionable", "muted")  # a topic's, cycled by its card's button


def silent(notify: str, lane: int, attached: bool) -> bool:
    """Whether a message goes without a sound: always while a person sits at the session's
    terminal, or when the topic is muted; in "actionable" mode, all but what needs you."""
    if attached or notify == "muted":
        return True
    return notify == "actionable" and lane != Lane.ACTIONABLE
