"""Who may talk to the bot: chat and user allow-lists, deny by default."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update, User

from core.lifecycle import Caller

log = logging.getLogger(__name__)

# Telegram's stand-in for anonymous group admins.
ANONYMOUS_ADMIN = 1087968824


def person(user: User) -> str:
    """How a person is named in sm: their Telegram username, else their first name."""
    return user.username or user.first_name


class AllowList(BaseMiddleware):
    """An outer middleware on every update: messages and button presses alike.

    A chat must be the configured chat or on the chat allow-list, and the
    person on the user allow-list. Empty lists let no one in; the refused ids
    are logged so the owner can add their own. Whoever passes reaches the
    handlers as `caller`, the engine's caller for that person.
    """

    def __init__(self, chat_ids: set[int], user_ids: set[int],
                 caller_for_person: Callable[[str], Caller]) -> None:
        self.chat_ids = chat_ids
        self.user_ids = user_ids
        self._caller_for_person = caller_for_person
        self._logged: set[tuple[int | None, int | None]] = set()

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        chat = data.get("event_chat")
        user = data.get("event_from_user")
        message = event.message or event.edited_message
        anonymous = user is None or user.id == ANONYMOUS_ADMIN or bool(message and message.sender_chat)
        chat_id = chat.id if chat else None
        if anonymous or chat_id not in self.chat_ids or user.id not in self.user_ids:  # type: ignore[union-attr]
            key = (chat_id, user.id if user else None)
            if key not in self._logged:
                self._logged.add(key)
                log.warning("ignoring update from chat %s, user %s: not on the allow-lists "
                            "(SM_TELEGRAM_ALLOWED_CHAT_IDS, SM_TELEGRAM_ALLOWED_USER_IDS)", *key)
            return None
        data["caller"] = self._caller_for_person(f"owner via telegram ({person(user)})")  # type: ignore[arg-type]
        return await handler(event, data)
