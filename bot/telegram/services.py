"""What the bot's handlers are given (as `tg`, through the dispatcher's workflow data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiogram.types import InlineKeyboardMarkup, Message

from bot.telegram.actions import screen_photo
from bot.telegram.background import Background
from bot.telegram.confirmations import Confirmations
from bot.telegram.files import FileDoor
from bot.telegram.live import Live
from bot.telegram.mirror import Mirror
from bot.telegram.outbox import Outbox
from bot.telegram.prompts import PermissionPrompts
from bot.telegram.render import esc
from bot.telegram.settings import TelegramSettings
from bot.telegram.topics import Topics
from core.engine import Engine
from core.errors import SmError
from core.lifecycle import Caller
from core.sessions import Session


@dataclass
class BotServices:
    engine: Engine
    outbox: Outbox
    topics: Topics
    mirror: Mirror
    prompts: PermissionPrompts
    background: Background
    settings: TelegramSettings
    confirmations: Confirmations = field(default_factory=Confirmations)
    files: FileDoor = field(default_factory=FileDoor)
    live: Live | None = None

    async def is_bound(self, chat_id: int, message: Any, session_id: str) -> bool:
        """A button acts only on the session of the message it is on: one sm posted
        for that session, or one in that session's topic."""
        if message is None:
            return False
        if await self.topics.session_of_message(chat_id, message.message_id) == session_id:
            return True
        topic = await self.topics.get(session_id)
        return bool(topic and topic.chat_id == chat_id and topic.thread_id
                    and getattr(message, "message_thread_id", None) == topic.thread_id)

    async def topic_session(self, message: Message, caller: Caller) -> Session | None:
        """The session whose topic this message is in, if any."""
        if message.message_thread_id and message.is_topic_message:
            topic = await self.topics.by_thread(message.chat.id, message.message_thread_id)
            if topic:
                try:
                    return await self.engine.session(caller, topic.session_id)
                except SmError:
                    return None
        return None

    async def reply(self, message: Message, html: str, markup: InlineKeyboardMarkup | None = None,
                    session: Session | None = None, reply_to: bool = False) -> int:
        """Answer where the person wrote, through the outbox."""
        payload: dict[str, Any] = {"html": html}
        if markup is not None:
            payload["reply_markup"] = markup.model_dump(exclude_none=True)
        if reply_to:
            payload["reply_to"] = message.message_id
        in_topic = message.message_thread_id if message.is_topic_message else None
        topic = await self.topics.by_thread(message.chat.id, in_topic) if in_topic else None
        if topic is None:
            payload["thread_id"] = in_topic
        return await self.outbox.put(message.chat.id, "text", payload,
                                     topic.session_id if topic else None)

    async def post(self, chat_id: int, session: Session, html: str,
                   markup: InlineKeyboardMarkup | None = None) -> int:
        payload: dict[str, Any] = {"html": html}
        if markup is not None:
            payload["reply_markup"] = markup.model_dump(exclude_none=True)
        return await self.outbox.put(chat_id, "text", payload, session.id)

    async def screen(self, chat_id: int, session: Session, caller: Caller) -> None:
        """A picture of the session's screen into its topic; a line saying why not, if it has none."""
        try:
            payload = await screen_photo(self.engine, caller, session)
        except SmError as exc:
            await self.post(chat_id, session, "⚠️ " + esc(str(exc)))
            return
        await self.outbox.put(chat_id, "photo", payload, session.id)

    def topic_link(self, chat_id: int, thread_id: int) -> str | None:
        text = str(chat_id)
        if text.startswith("-100"):
            return f"https://t.me/c/{text[4:]}/{thread_id}"
        return None
