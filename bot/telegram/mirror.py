"""The mirror: engine events become messages in each session's forum topic.

It subscribes to the engine's event bus and puts what a person should see
into the outbox, each in its priority lane (bot/telegram/lanes.py); it never
calls Telegram itself. Into a session's topic go: every `sm send` to it
(`engineer → architect (urgent): …`), the agent's final answer of each turn
(Markdown as Telegram HTML, the whole text as a .md file when long), what needs
the person (prompts, dialogs, failures, errors, deaths, limits), and a pinned
status card, a small dashboard, edited as the state changes: state changes
post nothing else. A person's own message is acknowledged with a reaction on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.telegram import files
from bot.telegram.background import Background
from bot.telegram.keyboards import (
    Action, Decision, card_keyboard, options_keyboard, permission_keyboard, resume_keyboard,
)
from bot.telegram.lanes import Lane
from bot.telegram.acks import Acks
from bot.telegram.markdown import head
from bot.telegram.outbox import Outbox
from bot.telegram.prompts import RESTARTED, PermissionPrompts, Prompt, outcome_text
from bot.telegram.render import STATE_ICONS, cut, esc
from bot.telegram.settings import TelegramSettings
from bot.telegram.titles import Titles
from bot.telegram.topics import Topic, Topics
from core.engine import Engine
from core.errors import SmError
from core.events import (
    Event, FilesShared, IdleReminder, MessageDelivered, MessageFailed, MessageQueued, PermissionNeeded,
    PermissionResolved, SessionDead, SessionErrored, SessionRenamed, SessionResumed, SessionSpawned, StateChanged,
    ToolStarted, TurnFinished, UsageUpdated,
)
from core.humanize import count, describe_input, usd
from core.lifecycle import Caller
from core.state import ASKS, ReasonKind, State
from core.types import TOOLBAR
from core.sessions import Session

log = logging.getLogger(__name__)

# Telegram's reaction emoji (only its own list is accepted: no ⏳, no ✅).
DELIVERED = "👍"
NOT_DELIVERED = "👎"
STILL_BUSY = "👀"  # the agent is busy and the message waits for it
ANSWER_CHARS = 3900  # an answer's head in its message; the whole text goes as a .md file


def button_labels(notify: str = "all", verbose: bool = False, live: bool = False) -> dict[Action, str]:
    """The card's buttons; the last three show the topic's own settings, which a tap changes."""
    modes = {"all": "🔔 " + _("All"), "actionable": "🔕 " + _("Actionable only"), "muted": "🔇 " + _("Muted")}
    return {Action.status: _("Status"), Action.output: _("Output"), Action.screen: _("Screen"), Action.what: _("What"),
            Action.attach: _("Attach"), Action.clear: _("Clear"), Action.kill: _("Kill"),
            Action.live: ("⏹ " if live else "📺 ") + _("Live"), Action.notify: modes.get(notify, modes["all"]),
            Action.verbose: "🔧 " + (_("Tools: on") if verbose else _("Tools: off"))}


def toolbar_labels(provider: str) -> list[tuple[str, str]]:
    """The provider's one-tap keys as the card shows them: (name, label)."""
    shown = {"esc": "⎋ Esc", "enter": "⏎ Enter", "mode": "⇧⇥ " + _("Mode"), "ctrlc": "^C"}
    return [(key.name, shown.get(key.name, key.text or key.name)) for key in TOOLBAR.get(provider, ())]


def clock_time(when: float) -> str:
    """A moment as the person's clock shows it: 14:02 today, else "3 May 14:02"."""
    moment = time.localtime(when)
    if time.strftime("%Y-%m-%d", moment) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M", moment)
    return time.strftime("%d %b %H:%M", moment).lstrip("0")


def spend_text(usage: dict[str, Any] | None) -> str:
    """Tokens and cost on one line (`Engine.usage`), or that the agent reports none."""
    if not usage or not usage.get("reported"):
        return _("tokens not reported")
    line = _("{input} in · {output} out · {read} cache read · {write} cache write").format(
        input=count(usage["input"]), output=count(usage["output"]), read=count(usage["cache_read"]),
        write=count(usage["cache_write"]))
    return line + " · " + (usd(usage["cost"]) if usage.get("cost") is not None else _("price unknown"))


def card_text(session: Session, queued: int = 0, doing: str = "", usage: dict[str, Any] | None = None) -> str:
    """The pinned card: a small dashboard that stays true between edits (a clock time, not "5s ago")."""
    icon = STATE_ICONS.get(session.state, "")
    lines = [f"{icon} <b>{esc(session.name)}</b> <code>{session.id}</code> · {esc(session.provider)}",
             _("{state} since {time}").format(state=f"<b>{esc(session.state)}</b>",
                                              time=clock_time(session.state_since))
             + (f" — {esc(session.state_reason)}" if session.state_reason else "")]
    if doing:
        lines.append("› " + esc(cut(doing, 200)[0]))
    lines.append(_("Directory: {dir}").format(dir=f"<code>{esc(session.workdir)}</code>"))
    if queued:
        lines.append(_("Queued messages: {n}").format(n=queued))
    if usage is not None:
        lines.append("💰 " + esc(spend_text(usage)))
    return "\n".join(lines)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


class Mirror:
    def __init__(self, engine: Engine, caller: Caller, outbox: Outbox, topics: Topics,
                 prompts: PermissionPrompts, chat_id: int, i18n: I18n, background: Background,
                 acks: Acks, settings: TelegramSettings | None = None, dialog_delay: float = 1.5) -> None:
        self._engine = engine
        self._caller = caller  # the owner, whom the mirror shows everything
        self._outbox = outbox
        self._topics = topics
        self._prompts = prompts
        self.chat_id = chat_id
        self._i18n = i18n
        self._background = background
        self._dialog_delay = dialog_delay
        self.settings = settings or TelegramSettings.model_construct()
        self.titles = Titles(outbox, topics, chat_id, background, self._session, self.settings.rename_interval,
                             node_of=lambda session_id: engine.node_of(caller, session_id))
        self.live_sessions: set[str] = set()  # sessions with a Live view running (bot/telegram/live.py)
        self.on_state: list[Any] = []  # called with each StateChanged (the Live view listens)
        self._task: asyncio.Task[None] | None = None
        # Cards wait here to be drawn, each once however many events asked (see card_soon).
        self._stale_cards: set[str] = set()
        self._cards_wake = asyncio.Event()
        self._cards_task: asyncio.Task[None] | None = None
        # A person's Telegram messages waiting for their reaction (stored: a restart keeps them).
        self.acks = acks
        # What each session is doing, for its card: its current tool, or the first line of its last answer.
        self.doing: dict[str, str] = {}

    async def start(self) -> None:
        subscription = self._engine.subscribe(self._caller)
        await self._adopt()
        await self._expire_prompts_of_before()
        self._task = asyncio.get_running_loop().create_task(self._run(subscription), name="mirror")
        self._cards_task = asyncio.get_running_loop().create_task(self._draw_cards(), name="mirror-cards")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._cards_task) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _adopt(self) -> None:
        """Every live session has an open topic whose title says its state now; reopen the
        topics of adopted ones; the open topics of sessions that died meanwhile close in their time."""
        live = {s.id for s in self._engine.sessions(self._caller)}
        for topic in await self._topics.in_chat(self.chat_id):
            if not topic.closed and topic.session_id not in live:
                self._close_later(topic.session_id)
        with self._i18n.context():
            for session in self._engine.sessions(self._caller):
                topic = await self._topics.get(session.id)
                if topic is None:
                    await self._new_topic(session)
                elif topic.closed:
                    await self._outbox.put(self.chat_id, "topic", {"action": "reopen"}, session.id,
                                           lane=Lane.CHATTER)
                    await self.card(session)
                else:
                    await self.titles.update(session)  # its state may have changed while sm-bot was down
                if session.state == State.LOST and self._engine.settings.resume_on_start == "ask":
                    await self._offer_resume(session, session.state_reason or "")

    async def _run(self, subscription: Any) -> None:
        with subscription, self._i18n.context():
            async for event in subscription:
                try:
                    await self.handle(event)
                except Exception:
                    log.exception("mirroring %s failed", event.type)

    async def _session(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        try:
            return await self._engine.session(self._caller, session_id)
        except SmError:
            return None

    async def text(self, session_id: str | None, html: str, full_text: str | None = None,
                   filename: str = "message.txt", lane: Lane = Lane.CONVERSATION) -> int:
        """A message into a topic; with `full_text`, also the whole text as a file."""
        item = await self._outbox.put(self.chat_id, "text", {"html": html}, session_id, lane=lane)
        if full_text is not None:
            await self._outbox.put(self.chat_id, "document",
                                   {"content": full_text, "filename": filename}, session_id, lane=lane)
        return item

    def card_soon(self, session: Session) -> None:
        """Redraw the session's card, off the event path: drawing reads the queue and the
        transcript's spend, and a prompt must never wait behind a minute of card redraws.
        Cards asked for meanwhile are drawn once each, with the state they have then."""
        self._stale_cards.add(session.id)
        self._cards_wake.set()

    async def _draw_cards(self) -> None:
        with self._i18n.context():
            while True:
                await self._cards_wake.wait()
                self._cards_wake.clear()
                while self._stale_cards:
                    session = await self._session(self._stale_cards.pop())
                    if session is None:
                        continue
                    try:
                        await self.card(session)
                    except Exception:
                        log.exception("drawing the card of %s failed", session.id)

    def verbose(self, topic: Topic | None) -> bool:
        """Whether the topic shows tool calls: its own choice, else the setting."""
        if topic is not None and topic.verbose is not None:
            return bool(topic.verbose)
        return self.settings.verbose

    async def card(self, session: Session) -> None:
        queued = (await self._engine.queue_counts(self._caller)).get(session.id, 0)
        try:
            usage = await self._engine.usage(self._caller, session.id)
        except SmError:
            usage = None
        topic = await self._topics.get(session.id)
        labels = button_labels(topic.notify if topic else "all", self.verbose(topic), session.id in self.live_sessions)
        await self._outbox.put(
            self.chat_id, "card",
            {"html": card_text(session, queued, self.doing.get(session.id, ""), usage),
             "reply_markup": card_keyboard(session.id, labels,
                                           toolbar_labels(session.provider)).model_dump(exclude_none=True)},
            session.id, coalesce=f"card:{session.id}", lane=Lane.CHATTER,
        )

    async def acknowledge(self, queued_id: int, telegram_message: int, session: Session) -> None:
        """React on the person's `telegram_message` once queued message `queued_id` is
        delivered (👍), or fails (👎 and the reason): no messages of its own."""
        await self.acks.add(queued_id, self.chat_id, telegram_message, session.id)

    async def _still_busy(self, session_id: str, message_id: int) -> None:
        await asyncio.sleep(self.settings.busy_reaction_after)
        telegram_message = await self.acks.waiting(message_id)  # gone once delivered, or failed
        session = await self._session(session_id)
        if telegram_message is not None and session is not None and session.state in (State.BUSY, State.WAITING):
            await self._react(session, telegram_message, STILL_BUSY)

    async def _react(self, session: Session, telegram_message: int, emoji: str) -> None:
        await self._outbox.put(self.chat_id, "reaction", {"message_id": telegram_message, "emoji": emoji},
                               session.id, lane=Lane.CHATTER)

    async def _new_topic(self, session: Session) -> None:
        await self._topics.ensure(session.id, self.chat_id, self.titles.title(session))
        await self._outbox.put(self.chat_id, "topic", {"action": "create"}, session.id, lane=Lane.CHATTER)
        self.card_soon(session)

    # Engine events this mirror shows, and those it leaves out on purpose: a test
    # checks that together they cover every event the engine publishes.
    SHOWS = (SessionSpawned, SessionRenamed, MessageQueued, MessageDelivered, MessageFailed,
             TurnFinished, StateChanged, IdleReminder, PermissionNeeded, PermissionResolved, FilesShared,
             SessionResumed, UsageUpdated, ToolStarted)
    IGNORES = (
        SessionErrored,  # StateChanged to errored already says it, with the reason
        SessionDead,     # likewise for dead
    )

    async def handle(self, event: Event) -> None:
        if isinstance(event, FilesShared):
            await self._files(event)  # to a topic, or to the owner's General (sm share --to owner)
            return
        session = await self._session(event.session)
        if session is None:
            return
        match event:
            case SessionSpawned(parent=parent_id):
                await self._new_topic(session)
                parent = await self._session(parent_id)
                who = esc(parent.name) if parent else _("you")
                await self.text(session.id, "🚀 " + _("Spawned by {who} in {dir}").format(
                    who=who, dir=f"<code>{esc(session.workdir)}</code>"), lane=Lane.CHATTER)
            case SessionRenamed():
                await self.titles.update(session)
                self.card_soon(session)
            case ToolStarted(tool=tool, detail=detail):
                await self._tool(session, tool, detail)
            case MessageQueued():
                await self._queued(session, event)
            case MessageDelivered(messages=ids):
                for message_id in ids:
                    telegram_message = await self.acks.take(message_id)
                    if telegram_message is not None:
                        await self._react(session, telegram_message, DELIVERED)
            case MessageFailed():
                await self._failed(session, event)
            case TurnFinished(text=answer):
                await self._answer(session, answer)
            case UsageUpdated():
                self.card_soon(session)  # the 💰 line (coalesced with the turn's state edit)
            case StateChanged():
                await self._state_changed(session, event)
            case IdleReminder(idle_seconds=seconds):
                minutes = max(1, round(seconds / 60))
                await self.text(session.id, "💤 " + _("idle for {n} min").format(n=minutes), lane=Lane.CHATTER)
            case PermissionNeeded():
                await self._permission(session, event)
            case PermissionResolved():
                await self._resolved(session, event)
            case SessionResumed(conversation=conversation):
                self.card_soon(session)
                await self.text(session.id, "▶️ " + (
                    _("resumed by {who}, continuing its conversation") if conversation else
                    _("resumed by {who}, starting afresh: there was no conversation it could continue")
                ).format(who=esc(event.by)))
            case _ if isinstance(event, self.IGNORES):
                pass
            case _:
                log.error("the mirror has no case for %s events", event.type)

    async def _files(self, event: FilesShared) -> None:
        session = await self._session(event.session)
        if event.session and session is None:
            return
        caption = event.caption
        if event.sender and event.sender != event.session:
            caption = f"📎 {event.sender_label} ({event.sender})" + (f": {caption}" if caption else "")
        max_bytes = int(self._engine.settings.share_max_mb * files.MB)
        for kind, paths in await asyncio.to_thread(files.plan, event.paths):
            payload: dict[str, Any] = {"as": kind, "paths": paths, "caption": caption, "max_bytes": max_bytes}
            if session is None:
                payload["thread_id"] = None
            await self._outbox.put(self.chat_id, "files", payload, session.id if session else None)
            caption = ""  # once, under the first photo or album

    async def _answer(self, session: Session, answer: str) -> None:
        """The turn's final answer in full: Markdown as Telegram HTML; past one message,
        the head here and the whole text as a .md file."""
        self.doing[session.id] = first_line(answer)
        html, was_cut = head(answer, ANSWER_CHARS)
        await self.text(session.id, "🤖 " + html, answer if was_cut else None, f"{session.name}-answer.md")

    async def _tool(self, session: Session, tool: str, detail: str) -> None:
        """The card says what the agent does now; in verbose topics, each tool call is a line too."""
        self.doing[session.id] = "🔧 " + (f"{tool}: {detail}" if detail else tool)
        self.card_soon(session)
        if self.verbose(await self._topics.get(session.id)):
            shown = f": <code>{esc(cut(detail, 300)[0])}</code>" if detail else ""
            await self.text(session.id, f"🔧 <b>{esc(tool)}</b>{shown}", lane=Lane.CHATTER)

    def _close_later(self, session_id: str) -> None:
        self._background.start(self._close_when_due(session_id), f"closing the topic of {session_id}")

    async def _close_when_due(self, session_id: str) -> None:
        """A dead session's topic stays open a while (its last words are read there), then closes."""
        await asyncio.sleep(self.settings.close_dead_after)
        session = await self._session(session_id)
        if session is None or session.state == State.DEAD:
            await self._outbox.put(self.chat_id, "topic", {"action": "close"}, session_id, lane=Lane.CHATTER)

    async def _state_changed(self, session: Session, event: StateChanged) -> None:
        """The card shows every state, the title what needs you; only that is also a message."""
        for listener in self.on_state:
            await listener(session, event)
        self.card_soon(session)
        await self.titles.update(session)
        reason = f": {esc(event.reason.text)}" if event.reason and event.reason.text else ""
        match event.state:
            case State.WAITING if not (event.reason and event.reason.kind in ASKS):
                # Permission prompts, questions and plans have a message of their own.
                await self.text(session.id, "✋ " + _("waiting for an answer") + reason, lane=Lane.ACTIONABLE)
            case State.ERRORED:
                await self.text(session.id, "⚠️ " + _("errored") + reason, lane=Lane.ACTIONABLE)
            case State.LIMITED:
                await self.text(session.id, "⏸ " + _("hit a usage limit") + reason, lane=Lane.ACTIONABLE)
            case State.LOST:
                await self._offer_resume(session, event.reason.text if event.reason else "")
            case State.DEAD:
                await self.text(session.id, "💀 " + _("dead") + reason, lane=Lane.ACTIONABLE)
                self._close_later(session.id)

    async def _offer_resume(self, session: Session, reason: str) -> None:
        """A lost session's topic says so, with a Resume button (sm resume from the phone)."""
        await self._outbox.put(self.chat_id, "text", {
            "html": "🔌 " + _("lost: {reason}; its queued messages wait for a resume").format(reason=esc(reason)),
            "reply_markup": resume_keyboard(session.id, _("Resume")).model_dump(exclude_none=True),
        }, session.id, lane=Lane.ACTIONABLE)

    async def _failed(self, session: Session, event: MessageFailed) -> None:
        """A message that could not be delivered: the person must know, whoever sent it.
        Their own message gets 👎 and a reply with the reason; another's is quoted."""
        telegram_message = await self.acks.take(event.message)
        html = "❗ " + _("not delivered to {name}: {error}").format(
            name=f"<b>{esc(session.name)}</b>", error=esc(event.error))
        if telegram_message is not None:
            await self._react(session, telegram_message, NOT_DELIVERED)
            await self._outbox.put(self.chat_id, "text", {"html": html, "reply_to": telegram_message},
                                   session.id, lane=Lane.ACTIONABLE)
            return
        snippet, _was_cut = cut(event.text, 300)
        if snippet:
            html += f"\n<blockquote>{esc(snippet)}</blockquote>"
        await self.text(session.id, html, lane=Lane.ACTIONABLE)

    async def _resolved(self, session: Session, event: PermissionResolved) -> None:
        prompt = await self._prompts.close(session.id, event.request, event.outcome, event.by)
        if prompt is not None:
            await self._prompt_ended(prompt, outcome_text(event.outcome, event.by))

    async def _permission(self, session: Session, event: PermissionNeeded) -> None:
        tool = esc(str(event.tool))
        detail, _cut = cut(describe_input(event.input), 800)
        body = f"\n<pre>{esc(detail)}</pre>" if detail else ""
        if event.kind == ReasonKind.PERMISSION and event.request is not None:
            labels = {Decision.allow: _("Allow"), Decision.always: _("Allow always"), Decision.deny: _("Deny")}
            item = await self._outbox.put(self.chat_id, "text", {
                "html": "✋ " + _("{tool} needs permission").format(tool=f"<b>{tool}</b>") + body,
                "reply_markup": permission_keyboard(session.id, event.request, labels).model_dump(exclude_none=True),
            }, session.id, lane=Lane.ACTIONABLE)
            # Another node's prompt (several hosts) is marked with its node: its hook waits there.
            await self._prompts.add(event.request, self.chat_id, session.id, item, event.tool,
                                    getattr(event, "node", None) or "")
            return
        options = event.options
        if not options:
            # The dialog is drawn a moment after its hook fires: read its options off
            # the screen a little later, without holding up the rest of the mirror.
            self._background.start(self._dialog_later(session, event, body), f"dialog options of {session.id}")
            return
        await self._post_dialog(session, event, body, options)

    async def _prompt_ended(self, prompt: Prompt, outcome: str) -> None:
        """The prompt's message says how it ended, and loses its buttons."""
        await self._outbox.put(prompt.chat_id, "edit", {
            "item": prompt.item_id, "html": "✋ <b>" + esc(prompt.tool) + "</b>: " + outcome}, prompt.session_id,
            lane=Lane.CONVERSATION)

    async def _expire_prompts_of_before(self) -> None:
        """This node's prompts left open by an earlier sm-bot: their hooks are gone, so they ended
        unanswered. Another node's still wait there; their outcome comes with that node's events."""
        with self._i18n.context():
            for prompt in await self._prompts.open():
                if await self._prompts.close(prompt.session_id, prompt.request_id, RESTARTED, None):
                    await self._prompt_ended(prompt, outcome_text(RESTARTED, None))

    async def _dialog_later(self, session: Session, event: PermissionNeeded, body: str) -> None:
        await asyncio.sleep(self._dialog_delay)
        with self._i18n.context():
            options = [list(o) for o in await self._engine.dialog_options(self._caller, session.id)]
            await self._post_dialog(session, event, body, options)

    async def _post_dialog(self, session: Session, event: PermissionNeeded, body: str,
                           options: list[list[str]]) -> None:
        title = {ReasonKind.QUESTION: _("{name} asks"), ReasonKind.PLAN: _("{name} wants its plan approved")}.get(
            event.kind, _("{name} is waiting for an answer")).format(name=f"<b>{esc(session.name)}</b>")
        payload: dict[str, Any] = {"html": "❓ " + title + body}
        if options:
            payload["reply_markup"] = options_keyboard(session.id, options).model_dump(exclude_none=True)
        await self._outbox.put(self.chat_id, "text", payload, session.id, lane=Lane.ACTIONABLE)

    async def _queued(self, target: Session, event: MessageQueued) -> None:
        if event.kind == "clear":
            await self.text(target.id, "🧹 " + _("clear queued by {who}").format(who=esc(event.sender_label)),
                            lane=Lane.CHATTER)
            return
        if event.origin == "telegram":
            # The person's own input: acknowledged where they typed it, with 👍 once it
            # goes in, and with 👀 first if the agent keeps it waiting long.
            if event.kind == "text" and target.state in (State.BUSY, State.WAITING):
                self._background.start(self._still_busy(target.id, event.message), f"👀 for message {event.message}")
            return
        # An agent is named with its id (names can be chosen to look like anyone); people by name.
        sender = f"{event.sender_label} ({event.sender})" if event.sender else event.sender_label
        arrow = f"<b>{esc(sender)} → {esc(target.name)}</b>"
        if event.mode != "sequential":
            arrow += f" ({esc(event.mode)})"
        text, was_cut = cut(event.text)
        await self.text(target.id, f"{arrow}: {esc(text)}", event.text if was_cut else None,
                        f"message-{event.message}.txt")
