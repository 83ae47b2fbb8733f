"""The Telegram front end: the aiogram bot, the mirror and the outbox, in sm-bot's loop."""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramUnauthorizedError
from aiogram.types import BotCommand
from aiogram.utils.backoff import BackoffConfig
from aiogram.utils.i18n import SimpleI18nMiddleware

from bot.telegram.background import Background
from bot.telegram.handlers import routers
from bot.telegram.i18n import make_i18n
from bot.telegram.link import LinkWatch, QuietPollingErrors
from bot.telegram.live import Live
from bot.telegram.middlewares import AllowList
from bot.telegram.mirror import Mirror
from bot.telegram.titles import topic_name
from bot.telegram.outbox import Outbox
from bot.telegram import retention
from bot.telegram.acks import Acks
from bot.telegram.prompts import PermissionPrompts
from bot.telegram.ratelimit import RateLimiter
from bot.telegram.services import BotServices
from bot.telegram.settings import TelegramSettings
from bot.telegram.topics import Topics
from core.engine import Engine
from core.errors import SmError
from core.store import package_migrations

log = logging.getLogger(__name__)

# The owner of this door's tables in the store (bot/telegram/migrations.sql).
DOOR = "telegram"
# How long a look at who is attached to a session's tmux session holds (seconds).
ATTACHED_TTL = 3.0

COMMANDS = {
    "new": "Start a session: /new [path] [--worktree[=BRANCH]] [prompt]",
    "list": "Sessions and their state",
    "status": "A session's status",
    "screen": "A picture of a session's screen",
    "kill": "Kill a session",
    "open": "How to attach from a terminal",
    "send": "Send files from the session's directory: /send <path or glob>",
    "cost": "Tokens and cost: this topic's swarm, or everything today",
    "help": "Help",
}


def make_bot(settings: TelegramSettings) -> Bot:
    """Every text the bot sends is HTML (escaped by bot/telegram/render.py), without link previews."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.api_url))
    return Bot(settings.token, session=session,
               default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True))


class TelegramFrontEnd:
    def __init__(self, engine: Engine, settings: TelegramSettings) -> None:
        self.engine = engine
        self.settings = settings
        # The owner, as the mirror and the outbox see the engine on their behalf.
        self.caller = engine.caller_for_person("owner via telegram")
        self.bot = make_bot(settings)
        self.link = LinkWatch(lambda state, detail: engine.report_link(self.caller, "telegram", state, detail),
                              settings.refused_retry)
        self.bot.session.middleware(self.link)
        engine.report_link(self.caller, "telegram", self.link.state, "")
        self.i18n = make_i18n(settings.locale)
        self.limiter = RateLimiter(settings.group_per_window, settings.rate_window,
                                   reserve=min(settings.actionable_reserve, settings.group_per_window - 1))
        self.background = Background()
        self.outbox: Outbox | None = None
        self.mirror: Mirror | None = None
        self.live: Live | None = None
        self._polling: asyncio.Task[None] | None = None
        self._attached_seen: dict[str, tuple[float, bool]] = {}

    async def _topic_name(self, session_id: str) -> str:
        try:
            session = await self.engine.session(self.caller, session_id)
            return topic_name(session, self.engine.node_of(self.caller, session.id))
        except SmError:
            return session_id

    async def _attached(self, session_id: str) -> bool:
        """Whether a person sits at the session's terminal: asked of tmux at most every few seconds."""
        now = time.monotonic()
        seen = self._attached_seen.get(session_id)
        if seen is not None and now - seen[0] < ATTACHED_TTL:
            return seen[1]
        try:
            value = await self.engine.attached(self.caller, session_id)
        except SmError:
            value = False
        self._attached_seen[session_id] = (now, value)
        return value

    async def _live_changed(self, session_id: str) -> None:
        """A Live view started or stopped: the card's Live button says which."""
        assert self.mirror is not None and self.live is not None
        if self.live.running(session_id):
            self.mirror.live_sessions.add(session_id)
        else:
            self.mirror.live_sessions.discard(session_id)
        try:
            await self.mirror.card(await self.engine.session(self.caller, session_id))
        except SmError:
            pass  # gone meanwhile: no card to change

    async def _remember(self, item: object, message_id: int | None) -> None:
        """Mirrored messages map back to their session, so a reply to one is input to it."""
        session_id = getattr(item, "session_id", None)
        if message_id and session_id:
            await self.topics.remember(getattr(item, "chat_id"), message_id, session_id)

    async def start(self) -> None:
        settings = self.settings
        if not settings.chat_id:
            log.warning("SM_TELEGRAM_CHAT_ID is not set: commands work, but sessions are not mirrored")
        problem = settings.allow_list_problem()
        if problem:
            log.warning("%s", problem)
        store = await self.engine.door_store(DOOR, package_migrations("bot.telegram"))
        self.topics = Topics(store)
        self.engine.add_pruner(DOOR, functools.partial(retention.prune, store))
        self.prompts = PermissionPrompts(store)
        self.outbox = Outbox(store, self.bot, self.topics, self.limiter, self._topic_name,
                             attached=self._attached)
        self.outbox.on_sent.append(self._remember)
        self.mirror = Mirror(self.engine, self.caller, self.outbox, self.topics, self.prompts,
                             settings.chat_id or 0, self.i18n, self.background, Acks(store), settings)
        self.live = Live(self.engine, self.caller, self.outbox, self.background, settings.live_interval,
                         settings.live_max, self._live_changed)
        self.mirror.on_state.append(self.live.on_state)
        self.dp = Dispatcher(tg=BotServices(self.engine, self.outbox, self.topics, self.mirror,
                                            self.prompts, self.background, settings, live=self.live))
        self.dp.update.outer_middleware(AllowList(settings.allowed_chats(), settings.allowed_users(),
                                                  self.engine.caller_for_person))
        SimpleI18nMiddleware(self.i18n).setup(self.dp)
        self.dp.include_routers(*routers())
        await self.outbox.start()
        if settings.chat_id:
            await self.mirror.start()
            # Several hosts: this bot shows every node's sessions (none on a single host).
            self.engine.follow_other_nodes(self.caller)
        self._polling = asyncio.get_running_loop().create_task(self._poll(), name="telegram-polling")

    async def _poll(self) -> None:
        """Reach Telegram (however long it takes), then poll for good.

        aiogram's start_polling asks getMe once and gives up when that fails, so
        getMe is retried here first: with capped backoff while Telegram is
        unreachable, every `refused_retry` seconds while it refuses the token.
        Polling then retries on its own, with the same cap. The link's changes
        are logged once each (bot/telegram/link.py), not per attempt.
        """
        logging.getLogger("aiogram.dispatcher").addFilter(QuietPollingErrors())
        cap = max(self.settings.retry_max, 0.2)
        delay = min(1.0, cap)
        while True:
            try:
                await self.bot.me()
                break
            except asyncio.CancelledError:
                raise
            except TelegramUnauthorizedError:
                await asyncio.sleep(self.settings.refused_retry)
            except Exception:
                await asyncio.sleep(delay)
                delay = min(delay * 2, cap)
        log.info("Telegram bot running (chat %s)", self.settings.chat_id)
        try:
            await self.bot.set_my_commands([BotCommand(command=c, description=d) for c, d in COMMANDS.items()])
        except Exception as exc:  # gone again already: the commands are a nicety
            log.warning("could not register the bot's commands: %s", exc)
        await self.dp.start_polling(self.bot, handle_signals=False, close_bot_session=False,
                                    polling_timeout=10,
                                    backoff_config=BackoffConfig(min_delay=cap / 2 if cap < 2 else 1.0,
                                                                 max_delay=cap, factor=1.5, jitter=0.1))

    async def stop(self) -> None:
        if self._polling:
            try:
                await self.dp.stop_polling()
            except RuntimeError:
                pass
            self._polling.cancel()
            await asyncio.gather(self._polling, return_exceptions=True)
        await self.background.stop()
        if self.mirror:
            await self.mirror.stop()
        if self.outbox:
            await self.outbox.stop()
        await self.bot.session.close()
