"""The one way out to Telegram: a durable, rate-limited, coalescing outbox.

Everything the bot sends is first a row in `outbox`, in one of three
priority lanes (bot/telegram/lanes.py). One worker per chat sends the most
urgent lane first, each topic's items of a lane in order:

* a share of the group's budget is kept for the actionable lane; under
  pressure, chatter texts fold into their topic's pinned card (its note)
  instead of being posted, and the card is edited once;
* an edit to exactly what a message already shows is never sent;
* consecutive texts for one topic go out as one message (up to 4096
  characters); a status card edit replaces any older pending edit of that card
  (the latest edit wins);
* our own rate limiter keeps inside Telegram's limits; a 429 pauses the whole
  chat for `retry_after`;
* a 5xx or a network error is retried with backoff, forever: after an outage
  everything queued goes out, in order; nothing is dropped;
* "message is not modified" counts as sent; a deleted topic is made again;
  a closed one is reopened.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup, InputMediaPhoto, ReactionTypeEmoji

from bot.telegram import files
from bot.telegram.lanes import JOINER, TEXT_LIMIT, Lane, next_batch, silent, to_fold, uses_reserve
from bot.telegram.ratelimit import RateLimiter
from bot.telegram.render import cut, esc, plain
from bot.telegram.topics import Topics
from core.store import Store

log = logging.getLogger(__name__)

NO_TOPIC = 0  # topics.thread_id of a session mirrored into a chat without topics
MAX_BACKOFF = 10.0
FLIGHT_GRACE = 10.0  # seconds a stop waits for calls under way to land and be recorded
# Chatter folds into the card when its lane would wait longer than this for room.
FOLD_AFTER = 1.0
NOTE_CHARS = 300
__all__ = ["Item", "Outbox", "TEXT_LIMIT", "Lane"]


def digest(html: str, markup: dict[str, Any] | None) -> str:
    """What a message shows, as Telegram compares it for "message is not modified"."""
    raw = json.dumps([html, markup or None], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def card_html(html: str, note: str | None) -> str:
    """The card as sent: the mirror's text, and the latest chatter folded into it."""
    return f"{html}\n🗒 {note}" if note else html


@dataclass
class Item:
    id: int
    chat_id: int
    session_id: str | None
    kind: str
    coalesce: str | None
    payload: dict[str, Any]
    lane: int = Lane.CONVERSATION


class Outbox:
    def __init__(
        self,
        store: Store,
        bot: Bot,
        topics: Topics,
        limiter: RateLimiter,
        topic_name: Callable[[str], Awaitable[str]],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        attached: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._store = store
        self._attached = attached  # whether a person sits at the session's terminal now
        self._bot = bot
        self._topics = topics
        self._limiter = limiter
        self._topic_name = topic_name
        self._clock = clock
        self._sleep = sleep  # backoff and Telegram's retry_after, passed in so tests need not wait
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._wakes: dict[int, asyncio.Event] = {}
        self.on_sent: list[Callable[[Item, int | None], Any]] = []
        self._flights: set[asyncio.Future[None]] = set()  # calls under way, with their recording
        # Chats whose chatter folds into the cards whatever the budget: a Live view runs there.
        self.folding: set[int] = set()

    # -- putting things in ------------------------------------------------------------

    async def put(self, chat_id: int, kind: str, payload: dict[str, Any],
                  session_id: str | None = None, coalesce: str | None = None,
                  lane: Lane = Lane.CONVERSATION) -> int:
        if coalesce:
            await self._store.execute(
                "DELETE FROM outbox WHERE chat_id = ? AND coalesce = ? AND status = 'pending'",
                (chat_id, coalesce),
            )
        item_id = await self._store.execute(
            "INSERT INTO outbox (chat_id, session_id, kind, coalesce, payload, created_at, lane)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (chat_id, session_id, kind, coalesce, json.dumps(payload), self._clock(), int(lane)),
        )
        self._wake(chat_id)
        return item_id

    async def message_id_of(self, item_id: int) -> int | None:
        row = await self._store.fetchone("SELECT message_id FROM outbox WHERE id = ?", (item_id,))
        return row[0] if row else None

    def _wake(self, chat_id: int) -> None:
        event = self._wakes.setdefault(chat_id, asyncio.Event())
        event.set()
        if chat_id not in self._workers or self._workers[chat_id].done():
            self._workers[chat_id] = asyncio.get_running_loop().create_task(
                self._run(chat_id), name=f"outbox-{chat_id}")

    async def start(self) -> None:
        for row in await self._store.fetchall(
            "SELECT DISTINCT chat_id FROM outbox WHERE status = 'pending'"
        ):
            self._wake(row[0])

    async def stop(self) -> None:
        tasks = list(self._workers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        if self._flights:  # calls under way: let them land and be recorded (bounded)
            await asyncio.wait(set(self._flights), timeout=FLIGHT_GRACE)

    # -- the worker -------------------------------------------------------------------

    async def _pending(self, chat_id: int) -> list[Item]:
        rows = await self._store.fetchall(
            "SELECT id, chat_id, session_id, kind, coalesce, payload, lane FROM outbox"
            " WHERE chat_id = ? AND status = 'pending' ORDER BY lane, id LIMIT 500",
            (chat_id,),
        )
        return [Item(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

    async def _run(self, chat_id: int) -> None:
        wake = self._wakes[chat_id]
        backoff = 1.0
        while True:
            wake.clear()
            items = await self._pending(chat_id)
            if not items:
                await wake.wait()
                continue
            folded = to_fold(items, chat_id in self.folding or self._limiter.delay(chat_id, Lane.CHATTER) > FOLD_AFTER)
            if folded:
                await self._fold(folded)
                continue
            batch = self._next_batch(items)
            lane = batch[0].lane
            if await self._unchanged(batch):
                continue
            room_in = self._limiter.delay(chat_id, lane)
            if room_in > 0 and not uses_reserve(lane):
                # Wait for room, but wake for anything more urgent put meanwhile.
                await self._wait(wake, room_in)
                continue
            await self._limiter.acquire(chat_id, lane)
            # A call and the row that records it go together: a stop (sm-bot's SIGTERM)
            # that cancels this worker lets the flight land, so a message Telegram took
            # is never sent again after the restart, nor left without its message id.
            flight = asyncio.ensure_future(self._send_and_finish(batch))
            self._flights.add(flight)
            flight.add_done_callback(self._landed)
            try:
                await asyncio.shield(flight)
            except TelegramRetryAfter as exc:
                log.warning("Telegram asked chat %s to wait %ss", chat_id, exc.retry_after)
                await self._sleep(exc.retry_after)
                continue
            except (TelegramNetworkError, TelegramServerError, TelegramForbiddenError,
                    TelegramUnauthorizedError, ClientDecodeError, OSError, asyncio.TimeoutError) as exc:
                # A refused token too: the rows wait for it to be fixed. The link's
                # state is logged once per change (bot/telegram/link.py), not per retry.
                await self._note_attempt(batch, f"{type(exc).__name__}: {exc}")
                log.debug("Telegram unreachable for chat %s (%s); retrying in %.0fs",
                          chat_id, exc, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            except TelegramBadRequest as exc:
                try:
                    repaired = await self._repair(batch, str(exc))
                except (TelegramRetryAfter, TelegramNetworkError, TelegramServerError,
                        TelegramBadRequest, ClientDecodeError, OSError) as repair_error:
                    log.warning("repairing outbox item %s failed (%s); retrying in %.0fs",
                                batch[0].id, repair_error, backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                if repaired:
                    continue
                log.error("Telegram refused outbox item %s: %s", batch[0].id, exc)
                await self._finish(batch, None, status="failed", error=str(exc))
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not stall the chat forever
                log.exception("outbox item %s failed", batch[0].id)
                await self._finish(batch, None, status="failed", error=repr(exc))
                continue
            backoff = 1.0

    def _landed(self, flight: asyncio.Future[None]) -> None:
        self._flights.discard(flight)
        if not flight.cancelled() and flight.exception() is not None and not self._workers:
            log.warning("a call under way at stop failed: %r", flight.exception())

    async def _send_and_finish(self, batch: list[Item]) -> None:
        await self._finish(batch, await self._send(batch))

    @staticmethod
    def _next_batch(items: list[Item]) -> list[Item]:
        """The most urgent lane's first item, with the texts of its topic that can ride along."""
        return next_batch(items)

    async def _wait(self, wake: asyncio.Event, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waker = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    async def _fold(self, items: list[Item]) -> None:
        """Chatter under pressure: each topic's latest becomes its card's note; the card is edited once."""
        latest: dict[str, Item] = {}
        now = self._clock()
        async with self._store.transaction() as tx:
            for item in items:
                latest[item.session_id or ""] = item
                await tx.execute("UPDATE outbox SET status = 'folded', sent_at = ? WHERE id = ?", (now, item.id))
        for session_id, item in latest.items():
            note = item.payload["html"]
            if len(note) > 2 * NOTE_CHARS:
                note = esc(cut(plain(note), NOTE_CHARS)[0])
            await self._topics.update(session_id, note=note)
            await self._recard(item.chat_id, session_id)

    async def _recard(self, chat_id: int, session_id: str) -> None:
        """Edit the topic's card again (its latest text, with the new note), unless an edit is pending."""
        if await self._store.fetchone(
                "SELECT 1 FROM outbox WHERE chat_id = ? AND session_id = ? AND kind = 'card'"
                " AND status = 'pending'", (chat_id, session_id)):
            return
        row = await self._store.fetchone(
            "SELECT payload FROM outbox WHERE chat_id = ? AND session_id = ? AND kind = 'card'"
            " ORDER BY id DESC LIMIT 1", (chat_id, session_id))
        if row is not None:
            payload = json.loads(row[0])
            payload.pop("message_id", None)
            await self.put(chat_id, "card", payload, session_id, coalesce=f"card:{session_id}", lane=Lane.CHATTER)

    async def _edit_target(self, item: Item) -> tuple[int | None, str]:
        """The message an edit item changes, and what it would show after it."""
        markup = item.payload.get("reply_markup")
        if item.kind == "card":
            topic = await self._topics.get(item.session_id or "")
            if topic is None or not topic.card_message_id:
                return None, ""
            return topic.card_message_id, digest(card_html(item.payload["html"], topic.note), markup)
        if item.kind == "edit":
            target = item.payload.get("message_id") or await self.message_id_of(item.payload["item"])
            return target, digest(item.payload["html"], markup)
        return None, ""

    async def _unchanged(self, batch: list[Item]) -> bool:
        """An edit to exactly what the message shows: done, without a call."""
        target, shows = await self._edit_target(batch[0])
        if target is None:
            return False
        row = await self._store.fetchone("SELECT digest FROM shown WHERE chat_id = ? AND message_id = ?",
                                         (batch[0].chat_id, target))
        if row is None or row[0] != shows:
            return False
        await self._finish(batch, target)
        return True

    async def _shows(self, chat_id: int, message_id: int, html: str, markup: dict[str, Any] | None) -> None:
        await self._store.execute(
            "INSERT OR REPLACE INTO shown (chat_id, message_id, digest) VALUES (?, ?, ?)",
            (chat_id, message_id, digest(html, markup)))

    async def _note_attempt(self, batch: list[Item], error: str) -> None:
        async with self._store.transaction() as tx:
            for item in batch:
                await tx.execute("UPDATE outbox SET attempts = attempts + 1, error = ? WHERE id = ?",
                                 (error, item.id))

    async def _finish(self, batch: list[Item], message_id: int | None, status: str = "sent",
                      error: str | None = None) -> None:
        now = self._clock()
        async with self._store.transaction() as tx:
            for item in batch:
                await tx.execute(
                    "UPDATE outbox SET status = ?, sent_at = ?, message_id = ?, error = ? WHERE id = ?",
                    (status, now, message_id, error, item.id),
                )
        if status == "sent":
            for item in batch:
                for callback in self.on_sent:
                    result = callback(item, message_id)
                    if asyncio.iscoroutine(result):
                        await result

    async def _repair(self, batch: list[Item], error: str) -> bool:
        """Fix what a 400 says is wrong, if it can be fixed; True to try again."""
        text = error.lower()
        item = batch[0]
        if "message is not modified" in text:
            await self._finish(batch, item.payload.get("message_id"))
            return True
        if item.session_id and ("thread not found" in text or "topic_deleted" in text
                                or "topic was deleted" in text):
            log.warning("topic of %s was deleted; making a new one", item.session_id)
            await self._topics.update(item.session_id, thread_id=None, card_message_id=None, closed=0)
            return True
        if item.session_id and "topic_closed" in text:
            topic = await self._topics.get(item.session_id)
            if topic and topic.thread_id:
                await self._limiter.acquire(item.chat_id, item.lane)
                await self._bot.reopen_forum_topic(item.chat_id, topic.thread_id)
                await self._topics.update(item.session_id, closed=0)
                return True
        if item.kind == "card" and "message to edit not found" in text:
            await self._topics.update(item.session_id, card_message_id=None)
            return True
        return False

    # -- sending ----------------------------------------------------------------------

    async def _thread(self, item: Item) -> int | None:
        """The topic's thread id, creating the topic first if it has none yet."""
        if not item.session_id:
            return item.payload.get("thread_id")
        topic = await self._topics.get(item.session_id)
        if topic is None:
            topic = await self._topics.ensure(item.session_id, item.chat_id,
                                              await self._topic_name(item.session_id))
        if topic.thread_id is None:
            try:
                created = await self._bot.create_forum_topic(item.chat_id, topic.name[:128])
            except TelegramBadRequest as exc:
                reason = str(exc).lower()
                if "not a forum" not in reason and "not enough rights" not in reason:
                    raise
                # No topics here (a private chat without them, or no right to make
                # them): the session is mirrored into the chat itself, its messages
                # labelled with its name.
                log.warning("cannot make a topic in chat %s (%s); mirroring into the chat", item.chat_id, exc)
                await self._topics.update(item.session_id, thread_id=NO_TOPIC)
                self._limiter.note(item.chat_id)
                return None
            await self._topics.update(item.session_id, thread_id=created.message_thread_id, closed=0)
            # The creation used a slot of the window. Counted, not waited for: waiting here
            # in the item's lane (or charging the actionable lane, as before) held prompts up.
            self._limiter.note(item.chat_id)
            return created.message_thread_id
        return None if topic.thread_id == NO_TOPIC else topic.thread_id

    async def _silent(self, item: Item) -> bool | None:
        """disable_notification for a new message of this item: True, or None (rings)."""
        if not item.session_id:
            return None
        topic = await self._topics.get(item.session_id)
        attached = bool(self._attached and await self._attached(item.session_id))
        return silent(topic.notify if topic else "all", item.lane, attached) or None

    async def _send(self, batch: list[Item]) -> int | None:
        item = batch[0]
        payload = item.payload
        if item.kind == "topic":
            return await self._topic_action(item)
        thread = await self._thread(item)
        quiet = await self._silent(item) if item.kind in ("text", "document", "files", "photo") else None
        markup = InlineKeyboardMarkup.model_validate(payload["reply_markup"]) if payload.get("reply_markup") else None
        if item.kind == "text":
            html = JOINER.join(i.payload["html"] for i in batch)
            if thread is None and item.session_id and item.payload.get("thread_id") is None:
                html = f"<b>[{esc(await self._topic_name(item.session_id))}]</b>\n{html}"
            reply_to = payload.get("reply_to")
            sent = await self._bot.send_message(
                item.chat_id, html, message_thread_id=thread,
                reply_markup=markup, reply_to_message_id=reply_to,
                allow_sending_without_reply=True if reply_to else None, disable_notification=quiet,
            )
            await self._shows(item.chat_id, sent.message_id, html, payload.get("reply_markup"))
            return sent.message_id
        if item.kind == "edit":
            target = payload.get("message_id") or await self.message_id_of(payload["item"])
            if target is None:
                return None  # the message it would edit was never sent
            payload["message_id"] = target
            await self._bot.edit_message_text(payload["html"], chat_id=item.chat_id, message_id=target,
                                              reply_markup=markup)
            await self._shows(item.chat_id, target, payload["html"], payload.get("reply_markup"))
            return target
        if item.kind == "document":
            sent_doc = await self._bot.send_document(
                item.chat_id,
                BufferedInputFile(payload["content"].encode("utf-8"), filename=payload["filename"]),
                caption=payload.get("caption"), message_thread_id=thread, disable_notification=quiet,
            )
            return sent_doc.message_id
        if item.kind == "card":
            return await self._card(item, thread, markup)
        if item.kind == "files":
            return await files.send(self._bot, item.chat_id, thread, payload, quiet)
        if item.kind == "reaction":
            await self._bot.set_message_reaction(item.chat_id, payload["message_id"],
                                                 reaction=[ReactionTypeEmoji(emoji=payload["emoji"])])
            return payload["message_id"]
        if item.kind == "photo":
            photo = BufferedInputFile(base64.b64decode(payload["png"]), filename="screen.png")
            if payload.get("message_id") or payload.get("item"):
                # A Live view's new screen: the same photo, replaced (bot/telegram/live.py).
                target = payload.get("message_id") or await self.message_id_of(payload["item"])
                if target is None:
                    return None  # the photo it would replace was never sent
                await self._bot.edit_message_media(
                    InputMediaPhoto(media=photo, caption=payload.get("caption")),
                    chat_id=item.chat_id, message_id=target, reply_markup=markup)
                return int(target)
            sent_photo = await self._bot.send_photo(item.chat_id, photo, caption=payload.get("caption"),
                                                    message_thread_id=thread, reply_markup=markup,
                                                    disable_notification=quiet)
            return sent_photo.message_id
        raise ValueError(f"unknown outbox kind {item.kind}")

    async def _card(self, item: Item, thread: int | None, markup: InlineKeyboardMarkup | None) -> int:
        topic = await self._topics.get(item.session_id or "")
        html = card_html(item.payload["html"], topic.note if topic else None)
        shown_markup = item.payload.get("reply_markup")
        if topic and topic.card_message_id:
            item.payload["message_id"] = topic.card_message_id
            await self._bot.edit_message_text(html, chat_id=item.chat_id,
                                              message_id=topic.card_message_id, reply_markup=markup)
            await self._shows(item.chat_id, topic.card_message_id, html, shown_markup)
            return topic.card_message_id
        sent = await self._bot.send_message(item.chat_id, html, message_thread_id=thread,
                                            reply_markup=markup, disable_notification=await self._silent(item))
        await self._shows(item.chat_id, sent.message_id, html, shown_markup)
        if item.session_id:
            await self._topics.update(item.session_id, card_message_id=sent.message_id)
        self._limiter.note(item.chat_id)  # the pin's slot: counted, not waited for (see _thread)
        try:
            await self._bot.pin_chat_message(item.chat_id, sent.message_id, disable_notification=True)
        except TelegramBadRequest as exc:
            log.warning("could not pin the status card: %s", exc)
        return sent.message_id

    async def _topic_action(self, item: Item) -> int | None:
        action = item.payload["action"]
        topic = await self._topics.get(item.session_id or "")
        if action == "create":
            await self._thread(item)
            return None
        if topic is None or not topic.thread_id:
            return None  # nothing to rename or close (yet, or ever: no topics here)
        try:
            if action == "rename":
                await self._topics.update(topic.session_id, name=item.payload["name"])
                await self._bot.edit_forum_topic(item.chat_id, topic.thread_id, name=item.payload["name"][:128])
                await self._topics.update(topic.session_id, renamed_at=self._clock())  # bot/telegram/titles.py
            elif action == "close":
                await self._bot.close_forum_topic(item.chat_id, topic.thread_id)
                await self._topics.update(topic.session_id, closed=1)
            elif action == "reopen":
                await self._bot.reopen_forum_topic(item.chat_id, topic.thread_id)
                await self._topics.update(topic.session_id, closed=0)
        except TelegramBadRequest as exc:
            # Closing a closed topic, renaming to the same name: already as wanted.
            if "topic_not_modified" not in str(exc).lower() and "not modified" not in str(exc).lower():
                raise
        return None

