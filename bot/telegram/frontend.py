"""The Telegram front end: the aiogram bot, the mirror and the outbox, in sm-bot's loop."""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import BotCommand
from aiogram.utils.i18n import SimpleI18nMiddleware

from bot.telegram.handlers import routers
from bot.telegram.i18n import make_i18n
from bot.telegram.middlewares import AllowList
from bot.telegram.mirror import Mirror, topic_name
from bot.telegram.outbox import Outbox
from bot.telegram.ratelimit import RateLimiter
from bot.telegram.services import BotServices
from bot.telegram.topics import Topics
from core.config import Settings
from core.engine import Engine

log = logging.getLogger(__name__)

COMMANDS = {
    "new": "Start a session: /new [path] [prompt]",
    "list": "Sessions and their state",
    "status": "A session's status",
    "kill": "Kill a session",
    "open": "How to attach from a terminal",
    "help": "Help",
}


class TelegramFrontEnd:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
        self.bot = Bot(settings.telegram_token, session=session)
        self.i18n = make_i18n(settings.telegram_locale)
        self.topics = Topics(engine.store)
        self.limiter = RateLimiter(settings.telegram_group_per_window, settings.telegram_rate_window)
        self.outbox = Outbox(engine.store, self.bot, self.topics, self.limiter, self._topic_name)
        chat_id = settings.telegram_chat_id or 0
        self.mirror = Mirror(engine, self.outbox, self.topics, chat_id, self.i18n)
        self.outbox.on_sent.append(self._remember)
        allowed_chats = set(settings.telegram_allowed_chat_ids)
        if settings.telegram_chat_id:
            allowed_chats.add(settings.telegram_chat_id)
        self.dp = Dispatcher(tg=BotServices(engine, self.outbox, self.topics, self.mirror, settings))
        self.dp.update.outer_middleware(AllowList(allowed_chats, set(settings.telegram_allowed_user_ids)))
        SimpleI18nMiddleware(self.i18n).setup(self.dp)
        self.dp.include_routers(*routers())
        self._polling: asyncio.Task[None] | None = None

    def _topic_name(self, session_id: str) -> str:
        session = self.engine.registry.get_live(session_id)
        return topic_name(session) if session else session_id

    async def _remember(self, item: object, message_id: int | None) -> None:
        """Mirrored messages map back to their session, so a reply to one is input to it."""
        session_id = getattr(item, "session_id", None)
        if message_id and session_id:
            await self.topics.remember(getattr(item, "chat_id"), message_id, session_id)

    async def start(self) -> None:
        if not self.settings.telegram_chat_id:
            log.warning("SM_TELEGRAM_CHAT_ID is not set: commands work, but sessions are not mirrored")
        if not self.settings.telegram_allowed_user_ids:
            log.warning("the Telegram allow-lists are empty: the bot answers no one "
                        "(set SM_TELEGRAM_ALLOWED_USER_IDS and SM_TELEGRAM_ALLOWED_CHAT_IDS)")
        await self.outbox.start()
        if self.settings.telegram_chat_id:
            await self.mirror.start()
        self._polling = asyncio.get_running_loop().create_task(self._poll(), name="telegram-polling")

    async def _poll(self) -> None:
        try:
            await self.bot.set_my_commands([BotCommand(command=c, description=d) for c, d in COMMANDS.items()])
        except Exception as exc:  # Telegram down at start: polling retries on its own
            log.warning("could not register the bot's commands: %s", exc)
        await self.dp.start_polling(self.bot, handle_signals=False, close_bot_session=False,
                                    polling_timeout=10)

    async def stop(self) -> None:
        if self._polling:
            try:
                await self.dp.stop_polling()
            except RuntimeError:
                pass
            self._polling.cancel()
            await asyncio.gather(self._polling, return_exceptions=True)
        await self.mirror.stop()
        await self.outbox.stop()
        await self.bot.session.close()
