"""The fake Bot API (tests/fake_telegram.py) on its own event loop thread.

The sm-bot under test is a separate process that talks to it over loopback;
the test itself is synchronous, so the fake lives in a thread and every
look at its state runs on that thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot.telegram.outbox import Outbox
from bot.telegram.ratelimit import RateLimiter
from bot.telegram.topics import Topics
from core.store import Store, package_migrations

from fake_telegram import FakeTelegram

CHAT = -1001234567890
OWNER_ID = 111
STRANGER_ID = 666


class ThreadedTelegram:
    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.fake: FakeTelegram = self.do(lambda: FakeTelegram(**kwargs))
        self.url = asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)
        self.token = self.fake.token
        self.owner = FakeTelegram.user(OWNER_ID, "Owner", "owner")
        self.stranger = FakeTelegram.user(STRANGER_ID, "Mallory", "mallory")
        self.do(lambda: self.fake.add_forum_group(CHAT, "swarm"))

    def do(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the fake's loop thread and return its result."""
        async def call() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "SM_TELEGRAM_TOKEN": self.token,
            "SM_TELEGRAM_API_URL": self.url,
            "SM_TELEGRAM_CHAT_ID": str(CHAT),
            "SM_TELEGRAM_ALLOWED_USER_IDS": str(OWNER_ID),
            **extra,
        }

    # -- looking -----------------------------------------------------------------------

    def topics(self) -> dict[int, dict[str, Any]]:
        return self.do(lambda: self.fake.topics(CHAT))

    def messages(self, thread_id: int | None = None) -> list[dict[str, Any]]:
        return self.do(lambda: self.fake.messages(CHAT, thread_id))

    def texts(self, thread_id: int | None = None) -> list[str]:
        return [m["text"] or "" for m in self.messages(thread_id)]

    def wait(self, predicate: Callable[["ThreadedTelegram"], Any], timeout: float = 40,
             message: str = "the fake Telegram to see it") -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate(self)
            if last:
                return last
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")

    def topic_of(self, session: dict[str, Any], timeout: float = 20) -> int:
        name = f"{session['name']} · {session['id']}"
        return self.wait(lambda t: next((tid for tid, topic in t.topics().items()
                                         if topic["name"] == name), None), timeout,
                         f"the topic {name}")

    # -- acting as people --------------------------------------------------------------

    def say(self, text: str, thread_id: int | None = None, user: dict[str, Any] | None = None,
            reply_to: int | None = None) -> dict[str, Any]:
        return self.do(lambda: self.fake.send_text(CHAT, user or self.owner, text, thread_id=thread_id,
                                                   reply_to_message_id=reply_to))

    def send_media(self, kind: str, content: bytes, thread_id: int | None = None,
                   user: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """A person's photo, document, audio, voice or video (see tests/fake_telegram_files.py)."""
        return self.do(lambda: self.fake.send_media(CHAT, user or self.owner, kind, content,
                                                    thread_id=thread_id, **kwargs))

    def press(self, message_id: int, data: str, user: dict[str, Any] | None = None) -> str:
        return self.do(lambda: self.fake.press(CHAT, user or self.owner, message_id, data))

    def button(self, thread_id: int, text: str) -> tuple[int, str]:
        """The newest message in a topic with a button labelled `text`: (message id, callback data)."""
        def find(t: "ThreadedTelegram") -> tuple[int, str] | None:
            for m in reversed(t.messages(thread_id)):
                for row in (m.get("reply_markup") or {}).get("inline_keyboard", []):
                    for b in row:
                        if b.get("text") == text and b.get("callback_data"):
                            return m["message_id"], b["callback_data"]
            return None
        return self.wait(find, 20, f"a {text!r} button")

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


# -- the outbox in-process, on virtual time ------------------------------------------------

class QuickCloseSession(AiohttpSession):
    """aiogram's close() sleeps 250 ms for TLS shutdown; nothing to wait for on loopback."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


SID = "a1b2c3"


class VirtualTime:
    """A clock that passes only when slept on: `sleep(n)` moves it on by n at once."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)  # let others run, as a real sleep would


async def until(condition: Callable[[], Any], timeout: float = 30.0, message: str = "condition") -> Any:
    """Wait (on the wall clock, with a deadline) for `condition`; for tests on the event loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class OutboxRig:
    """An Outbox in this process: a real store, the real aiogram client, the fake Bot API, virtual time."""

    CHAT = -1001234

    def __init__(self, fake: FakeTelegram, store: Store, clock: VirtualTime) -> None:
        self.fake = fake
        self.store = store
        self.clock = clock
        self.bot = Bot(fake.token, session=QuickCloseSession(api=TelegramAPIServer.from_base(fake.url)),
                       default=DefaultBotProperties(parse_mode="HTML"))
        self.topics = Topics(store)
        self.limiter = RateLimiter(clock=clock, sleep=clock.sleep)
        self.outbox = Outbox(store, self.bot, self.topics, self.limiter, self.topic_name,
                             clock=clock, sleep=clock.sleep)

    @staticmethod
    async def topic_name(session_id: str) -> str:
        return f"eng · {session_id}"

    def texts(self, thread: int | None = None) -> list[str]:
        return [m["text"] or "" for m in self.fake.messages(self.CHAT, thread)]

    async def status(self, item_id: int) -> str:
        return (await self.store.fetchone("SELECT status FROM outbox WHERE id = ?", (item_id,)))[0]


@asynccontextmanager
async def outbox_rig(tmp_path: Path) -> AsyncIterator[OutboxRig]:
    """A started outbox for session SID ("eng") in a forum group; stopped and closed after."""
    clock = VirtualTime()
    store = await Store.open(tmp_path / "sm.db")
    await store.migrate("telegram", package_migrations("bot.telegram"))
    await store.execute(
        "INSERT INTO sessions (id, name, provider, workdir, tmux_session, token_hash, state, state_since,"
        " created_at, last_activity) VALUES (?, 'eng', 'claude', '/', 'sm-x', 'h', 'idle', 0, 0, 0)", (SID,))
    async with FakeTelegram(clock=clock) as fake:
        fake.add_forum_group(OutboxRig.CHAT, "swarm")
        rig = OutboxRig(fake, store, clock)
        await rig.outbox.start()
        try:
            yield rig
        finally:
            await rig.outbox.stop()
            await rig.bot.session.close()
            await store.close()
