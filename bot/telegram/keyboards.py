"""Inline keyboards and their callback data (aiogram CallbackData factories).

Callback data stays far inside Telegram's 64 bytes: a short prefix, an action
of a few letters and a 6-character session id (e.g. `s:kill:a1b2c3:9f2c41d07a3e`). The
enums' values are what buttons already posted carry, so they must not change.
"""

from __future__ import annotations

from enum import Enum

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder


class Action(str, Enum):
    """A button on a session's status card."""

    status = "status"
    output = "output"
    screen = "screen"
    what = "what"
    attach = "attach"
    clear = "clear"
    kill = "kill"
    live = "live"        # a self-updating screenshot (bot/telegram/live.py)
    notify = "notify"    # cycles the topic's notifications: all, actionable only, muted
    verbose = "verbose"  # the topic's tool calls posted, or not
    resume = "resume"  # on a lost session's message, not on the card
    reopen = "reopen"  # on /list, for a dead session's closed topic


class Decision(str, Enum):
    """A button on a permission prompt; the engine's decision of the same name."""

    allow = "allow"
    always = "always"
    deny = "deny"


# The card's buttons, in rows of 4, 3 and 3 (under the provider's one-tap keys).
ACTIONS = (Action.status, Action.output, Action.screen, Action.what, Action.live, Action.notify, Action.verbose,
           Action.attach, Action.clear, Action.kill)
CONFIRM_FIRST = frozenset({Action.clear, Action.kill})


class SessionAction(CallbackData, prefix="s"):
    action: Action
    sid: str
    nonce: str = ""  # a Kill or Clear confirmation's one-time nonce (bot/telegram/confirmations.py)


class ToolbarPress(CallbackData, prefix="t"):
    """A one-tap key of the card (core.types.TOOLBAR), by its name: "esc", "mode", ..."""

    sid: str
    key: str


def card_keyboard(session_id: str, labels: dict[Action, str],
                  keys: list[tuple[str, str]] = ()) -> InlineKeyboardMarkup:  # type: ignore[assignment]
    """The card's one toolbar: the provider's one-tap keys (name, label) on top, then the actions."""
    builder = InlineKeyboardBuilder()
    for name, label in keys:
        builder.button(text=label, callback_data=ToolbarPress(sid=session_id, key=name))
    for action in ACTIONS:
        builder.button(text=labels[action], callback_data=SessionAction(action=action, sid=session_id))
    builder.adjust(*([len(keys)] if keys else []), 4, 3, 3)
    return builder.as_markup()


def resume_keyboard(session_id: str, label: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=label, callback_data=SessionAction(action=Action.resume, sid=session_id))
    return builder.as_markup()


def confirm_keyboard(action: Action, session_id: str, nonce: str, yes: str, no: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=yes, callback_data=SessionAction(action=action, sid=session_id, nonce=nonce))
    builder.button(text=no, callback_data=SessionAction(action=Action.status, sid=session_id))
    return builder.as_markup()


def list_keyboard(sessions: list[tuple[str, str]], link: dict[str, str],
                  closed: list[tuple[str, str]] = ()) -> InlineKeyboardMarkup | None:  # type: ignore[assignment]
    """One button per session: a link to its topic where there is one; then one to reopen
    each closed topic of a dead session."""
    builder = InlineKeyboardBuilder()
    for session_id, label in sessions:
        if session_id in link:
            builder.button(text=label, url=link[session_id])
        else:
            builder.button(text=label, callback_data=SessionAction(action=Action.status, sid=session_id))
    for session_id, label in closed:
        builder.button(text=label, callback_data=SessionAction(action=Action.reopen, sid=session_id))
    builder.adjust(1)
    return builder.as_markup() if sessions or closed else None


class PermissionDecision(CallbackData, prefix="p"):
    """A prompt's button from before several hosts: a request of this node."""

    rid: int
    d: Decision


class PermissionAnswer(CallbackData, prefix="pa"):
    """A prompt's button: its request, the decision, and its session, whose node has the request
    (request ids are per node; several hosts)."""

    rid: int
    d: Decision
    sid: str


class DialogKey(CallbackData, prefix="k"):
    sid: str
    key: str  # the keys that choose the option: its digit, or e.g. "Down Enter"


def permission_keyboard(session_id: str, request_id: int, labels: dict[Decision, str]) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for decision in Decision:
        builder.button(text=labels[decision],
                       callback_data=PermissionAnswer(rid=request_id, d=decision, sid=session_id))
    builder.adjust(3)
    return builder.as_markup()


def options_keyboard(session_id: str, options: list[list[str]]) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for keys, label in options:
        # A numbered option shows its digit; one chosen with arrows shows just its label.
        text = f"{keys}. {label}" if keys.isdigit() else label
        builder.button(text=text[:64], callback_data=DialogKey(sid=session_id, key=keys))
    builder.adjust(1)
    return builder.as_markup()
