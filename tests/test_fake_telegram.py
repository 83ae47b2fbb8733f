"""The fake Telegram Bot API (tests/fake_telegram.py), driven by the real aiogram client."""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from fake_telegram import GENERAL, NOT_MODIFIED, FakeTelegram
from telegram_harness import QuickCloseSession

GROUP = -100123
ANN = FakeTelegram.user(42, "Ann", username="ann")
STRANGER = FakeTelegram.user(666, "Mallory")


def make_bot(fake: FakeTelegram, token: str | None = None) -> Bot:
    return Bot(token or fake.token,
               session=QuickCloseSession(api=TelegramAPIServer.from_base(fake.url)))


def kb(*buttons: InlineKeyboardButton) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[list(buttons)])


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as f:
        f.add_forum_group(GROUP, "swarm")
        f.add_private_chat(ANN)
        yield f


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    b = make_bot(fake)
    yield b
    await b.session.close()


def bad(exc: pytest.ExceptionInfo[TelegramBadRequest]) -> str:
    return exc.value.message


# -- basics ------------------------------------------------------------------------------------

async def test_get_me_and_topics_flag(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456 and me.is_bot and me.username == "sm_test_bot"
    assert me.has_topics_enabled is False
    fake.has_topics_enabled = True
    assert (await bot.get_me()).has_topics_enabled is True
    assert ("getMe", {}) in fake.calls


async def test_wrong_token_unknown_method_and_raw_shapes(fake: FakeTelegram) -> None:
    wrong = make_bot(fake, "999:WRONG-TOKEN")
    with pytest.raises(TelegramUnauthorizedError):
        await wrong.get_me()
    await wrong.session.close()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.url}/bot{fake.token}/noSuchMethod") as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        async with http.post(f"{fake.url}/bot{fake.token}/sendMessage",
                             data={"chat_id": "-100999", "text": "x"}) as resp:
            assert resp.status == 400
            assert await resp.json() == {"ok": False, "error_code": 400,
                                         "description": "Bad Request: chat not found"}
        # method names are case-insensitive, GET with a query string works, JSON bodies too
        async with http.get(f"{fake.url}/bot{fake.token}/getme") as resp:
            assert (await resp.json())["result"]["id"] == 123456
        async with http.post(f"{fake.url}/bot{fake.token}/sendMessage",
                             json={"chat_id": GROUP, "text": "json body"}) as resp:
            assert (await resp.json())["result"]["text"] == "json body"
    assert [m["text"] for m in fake.messages(GROUP)] == ["json body"]


async def test_send_edit_and_not_modified(fake: FakeTelegram, bot: Bot) -> None:
    markup = kb(InlineKeyboardButton(text="Go", callback_data="go"))
    sent = await bot.send_message(GROUP, "hello", reply_markup=markup)
    assert sent.chat.id == GROUP and sent.text == "hello" and sent.message_thread_id is None
    edited = await bot.edit_message_text("hello <b>world</b>", chat_id=GROUP,
                                         message_id=sent.message_id, parse_mode="HTML",
                                         reply_markup=markup)
    assert edited.text == "hello world" and edited.entities[0].type == "bold"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.edit_message_text("hello <b>world</b>", chat_id=GROUP,
                                    message_id=sent.message_id, parse_mode="HTML",
                                    reply_markup=markup)
    assert bad(exc) == NOT_MODIFIED
    # same text but without the markup: the keyboard goes, so it is a change
    await bot.edit_message_text("hello <b>world</b>", chat_id=GROUP, message_id=sent.message_id,
                                parse_mode="HTML")
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.edit_message_reply_markup(chat_id=GROUP, message_id=sent.message_id)
    assert "message is not modified" in bad(exc)
    await bot.edit_message_reply_markup(chat_id=GROUP, message_id=sent.message_id,
                                        reply_markup=markup)
    [view] = fake.messages(GROUP)
    assert view["text"] == "hello world" and view["edits"] == 3
    assert view["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "go"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.edit_message_text("x", chat_id=GROUP, message_id=9999)
    assert bad(exc) == "Bad Request: message to edit not found"
    assert await bot.delete_message(GROUP, sent.message_id) is True
    assert fake.messages(GROUP) == []
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.delete_message(GROUP, sent.message_id)
    assert bad(exc) == "Bad Request: message to delete not found"


async def test_text_length_limits(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(GROUP, "a" * 4096)
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(GROUP, "a" * 4097)
    assert bad(exc) == "Bad Request: message is too long"
    # the limit applies after tags are removed and entities decoded
    await bot.send_message(GROUP, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    await bot.send_message(GROUP, "&amp;" * 4096, parse_mode="HTML")
    with pytest.raises(TelegramBadRequest):
        await bot.send_message(GROUP, "&amp;" * 4097, parse_mode="HTML")
    for empty in ("", "   \n ", "<b></b>"):
        with pytest.raises(TelegramBadRequest) as exc:
            await bot.send_message(GROUP, empty, parse_mode="HTML")
        assert bad(exc) == "Bad Request: message text is empty"
    assert [len(m["text"]) for m in fake.messages(GROUP)] == [4096, 4096, 4096]


@pytest.mark.parametrize("text, error", [
    ("a < b", 'Unsupported start tag "" at byte offset 2'),
    ("<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 0'),
    ("<b>x", "Can't find end tag corresponding to start tag b"),
    ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
    ("x</b>", "Unexpected end tag at byte offset 1"),
    ("x<3", "Unclosed start tag at byte offset 1"),
    ("AT&T", 'Unescaped "&" at byte offset 2'),
    ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
])
async def test_bad_html_rejected(fake: FakeTelegram, bot: Bot, text: str, error: str) -> None:
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(GROUP, text, parse_mode="HTML")
    assert bad(exc) == "Bad Request: can't parse entities: " + error
    # the same text without parse_mode is fine
    await bot.send_message(GROUP, text)
    assert fake.rejected[-1][3].endswith(error)


async def test_good_html_accepted(fake: FakeTelegram, bot: Bot) -> None:
    code = 'if a < b && c > d:\n    print("<&>", \'q\')'
    sent = await bot.send_message(GROUP, f"<pre>{html.escape(code)}</pre>", parse_mode="HTML")
    assert sent.text == code and sent.entities[0].type == "pre"
    good = [
        f'<pre><code class="language-python">{html.escape(code)}</code></pre>',
        '<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins><s>s</s><strike>k</strike>'
        '<del>d</del><span class="tg-spoiler">p</span><tg-spoiler>t</tg-spoiler>'
        '<a href="https://example.com/?a=1&amp;b=2">link</a><code>c</code>',
        "<blockquote expandable>long quote</blockquote> <blockquote>q</blockquote>",
        "&lt;tag&gt; &quot;q&quot; &#38; &#x41; a > b",
        "<b>bold <i>both</i></b>",
    ]
    for text in good:
        await bot.send_message(GROUP, text, parse_mode="HTML")
    views = fake.messages(GROUP)
    assert views[1]["text"] == code
    assert views[1]["entities"] == [{"type": "pre", "offset": 0, "length": len(code),
                                     "language": "python"}]
    assert views[4]["text"] == '<tag> "q" & A a > b'
    assert views[3]["entities"][0]["type"] == "expandable_blockquote"
    # bare & is allowed when the fake is set to tdlib's leniency
    fake.strict_ampersand = False
    assert (await bot.send_message(GROUP, "AT&T", parse_mode="HTML")).text == "AT&T"


async def test_callback_data_limits_and_buttons(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(GROUP, "ok", reply_markup=kb(
        InlineKeyboardButton(text="64", callback_data="é" * 32),       # 64 bytes
        InlineKeyboardButton(text="url", url="https://example.com")))
    for data in ("a" * 65, "é" * 32 + "a"):
        with pytest.raises(TelegramBadRequest) as exc:
            await bot.send_message(GROUP, "x", reply_markup=kb(
                InlineKeyboardButton(text="b", callback_data=data)))
        assert bad(exc) == "Bad Request: BUTTON_DATA_INVALID"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(GROUP, "x", reply_markup=kb(InlineKeyboardButton(text="b")))
    assert "Text buttons are unallowed in the inline keyboard" in bad(exc)
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(GROUP, "x", reply_markup=kb(
            InlineKeyboardButton(text="b", url="example.com")))
    assert bad(exc) == ("Bad Request: inline keyboard button URL 'example.com' is invalid: "
                        "Wrong HTTP URL")
    assert len(fake.messages(GROUP)) == 1


# -- topics ------------------------------------------------------------------------------------

async def test_forum_topics(fake: FakeTelegram, bot: Bot) -> None:
    topic = await bot.create_forum_topic(GROUP, "agent-1")
    tid = topic.message_thread_id
    assert topic.name == "agent-1" and topic.icon_color == 0x6FB9F0
    assert fake.message(GROUP, tid)["forum_topic_created"]["name"] == "agent-1"
    sent = await bot.send_message(GROUP, "in topic", message_thread_id=tid)
    assert sent.message_thread_id == tid and sent.is_topic_message
    assert sent.reply_to_message.message_id == tid            # the topic's creation message
    assert [m["text"] for m in fake.messages(GROUP, tid)] == ["in topic"]
    assert fake.messages(GROUP, GENERAL) == []

    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(GROUP, "x", message_thread_id=9999)
    assert bad(exc) == "Bad Request: message thread not found"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(-100999, "x")
    assert bad(exc) == "Bad Request: chat not found"

    await bot.edit_forum_topic(GROUP, tid, name="agent-1 (busy)")
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.edit_forum_topic(GROUP, tid, name="agent-1 (busy)")
    assert bad(exc) == "Bad Request: TOPIC_NOT_MODIFIED"
    await bot.close_forum_topic(GROUP, tid)
    assert fake.topics(GROUP)[tid] == {"name": "agent-1 (busy)", "icon_color": 0x6FB9F0,
                                       "icon_custom_emoji_id": None, "closed": True,
                                       "deleted": False}
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(GROUP, "x", message_thread_id=tid)
    assert bad(exc) == "Bad Request: TOPIC_CLOSED"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.close_forum_topic(GROUP, tid)
    assert bad(exc) == "Bad Request: TOPIC_NOT_MODIFIED"
    await bot.reopen_forum_topic(GROUP, tid)
    again = await bot.send_message(GROUP, "back", message_thread_id=tid)
    assert again.message_thread_id == tid

    await bot.pin_chat_message(GROUP, again.message_id)
    assert fake.pinned(GROUP, tid) == [again.message_id] and fake.pinned(GROUP, GENERAL) == []
    await bot.unpin_chat_message(GROUP, message_id=again.message_id)
    assert fake.pinned(GROUP) == []

    await bot.delete_forum_topic(GROUP, tid)
    assert fake.topics(GROUP) == {} and fake.messages(GROUP, tid) == []
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(GROUP, "x", message_thread_id=tid)
    assert bad(exc) == "Bad Request: message thread not found"


async def test_topic_errors_and_private_topics(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.create_forum_topic(ANN["id"], "x")
    assert bad(exc) == "Bad Request: the chat is not a forum"
    fake.has_topics_enabled = True
    fake.limits.private_per_second = None       # createForumTopic + send would be 2 in 1 s
    topic = await bot.create_forum_topic(ANN["id"], "chat with Ann")
    msg = await bot.send_message(ANN["id"], "hi", message_thread_id=topic.message_thread_id)
    assert msg.is_topic_message and msg.chat.type == "private"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.create_forum_topic(GROUP, "x" * 129)
    assert bad(exc) == "Bad Request: TOPIC_NAME_INVALID"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.create_forum_topic(GROUP, "x", icon_color=0x123456)
    assert bad(exc) == "Bad Request: ICON_COLOR_INVALID"
    fake.bot_can_manage_topics(GROUP, False)
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.create_forum_topic(GROUP, "x")
    assert bad(exc) == "Bad Request: not enough rights to create a topic"
    fake.add_group(-100555, "plain")
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.create_forum_topic(-100555, "x")
    assert bad(exc) == "Bad Request: the chat is not a forum"


# -- rate limits -------------------------------------------------------------------------------

async def test_group_rate_limit_scaled_window() -> None:
    now = [time.monotonic()]                                      # the fake's clock, moved by hand
    async with FakeTelegram(window_scale=0.05, clock=lambda: now[0]) as fake:  # 60 s -> 3 s
        fake.add_forum_group(GROUP)
        bot = make_bot(fake)
        try:
            topic = await bot.create_forum_topic(GROUP, "t")      # counts: 1
            first = await bot.send_message(GROUP, "m0")           # 2
            for i in range(1, 19):                                # 3..20
                await bot.send_message(GROUP, f"m{i}", message_thread_id=topic.message_thread_id)
            with pytest.raises(TelegramRetryAfter) as exc:
                await bot.send_message(GROUP, "m19")
            assert 1 <= exc.value.retry_after <= 3                # whole seconds until free
            assert f"Too Many Requests: retry after {exc.value.retry_after}" in exc.value.message
            with pytest.raises(TelegramRetryAfter):               # edits count too
                await bot.edit_message_text("edited", chat_id=GROUP, message_id=first.message_id)
            assert len(fake.messages(GROUP)) == 19                # refused calls were not sent
            assert fake.rejected[-1][2] == 429
            # another chat is not affected (only the 30/s global limit is shared)
            fake.add_private_chat(ANN)
            await bot.send_message(ANN["id"], "private")
            now[0] += exc.value.retry_after                       # wait as told, on the fake's clock
            await bot.send_message(GROUP, "m19")
            assert len(fake.messages(GROUP)) == 20
        finally:
            await bot.session.close()


async def test_private_and_global_limits_with_injected_clock() -> None:
    now = [1000.0]
    async with FakeTelegram(clock=lambda: now[0]) as fake:
        users = [FakeTelegram.user(100 + i) for i in range(31)]
        for u in users:
            fake.add_private_chat(u)
        bot = make_bot(fake)
        try:
            await bot.send_message(users[0]["id"], "one")
            with pytest.raises(TelegramRetryAfter) as exc:
                await bot.send_message(users[0]["id"], "two")
            assert exc.value.retry_after == 1
            now[0] += 0.5
            with pytest.raises(TelegramRetryAfter):
                await bot.send_message(users[0]["id"], "two")
            now[0] += 0.6
            await bot.send_message(users[0]["id"], "two")
            # 30 per second overall
            for u in users[1:30]:
                await bot.send_message(u["id"], "hi")
            with pytest.raises(TelegramRetryAfter) as exc:
                await bot.send_message(users[30]["id"], "hi")
            assert exc.value.retry_after == 1
            fake.limits.enabled = False
            await bot.send_message(users[30]["id"], "hi")
        finally:
            await bot.session.close()


# -- failures ----------------------------------------------------------------------------------

async def test_outage_and_recovery(fake: FakeTelegram, bot: Bot) -> None:
    fake.outage(True)
    with pytest.raises(TelegramServerError):
        await bot.send_message(GROUP, "lost")
    with pytest.raises(TelegramServerError):
        await bot.get_updates(timeout=0)
    fake.outage(True, mode="drop")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(GROUP, "lost")
    fake.outage(True, mode="html")                 # what nginx in front of Telegram sends
    with pytest.raises(ClientDecodeError):
        await bot.send_message(GROUP, "lost")
    fake.outage(False)
    await bot.send_message(GROUP, "back")
    assert [m["text"] for m in fake.messages(GROUP)] == ["back"]
    assert fake.sent("sendMessage") == [{"chat_id": GROUP, "text": "back"}]


async def test_injected_errors_and_blocked_user(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(GROUP, "x")
    assert exc.value.retry_after == 7
    await bot.send_message(GROUP, "x")
    fake.block(ANN["id"])
    with pytest.raises(TelegramForbiddenError) as forbidden:
        await bot.send_message(ANN["id"], "x")
    assert forbidden.value.message == "Forbidden: bot was blocked by the user"


# -- updates -----------------------------------------------------------------------------------

async def test_get_updates_long_poll_offset_and_conflict(fake: FakeTelegram, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await fake.wait_for(lambda f: f.polls_started == 1)        # the long poll is in flight
    started = time.monotonic()
    fake.send_text(ANN["id"], ANN, "/start")
    updates = await asyncio.wait_for(poll, 2)
    assert time.monotonic() - started < 1                          # returned at once
    assert updates[0].message.text == "/start"
    assert updates[0].message.entities[0].type == "bot_command"
    assert updates[0].message.chat.type == "private"
    # not confirmed yet: delivered again; confirmed by offset: gone
    assert (await bot.get_updates(timeout=0))[0].update_id == updates[0].update_id
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == []
    assert fake.pending_updates == 0
    # a newer getUpdates terminates an older one, like Telegram
    polls = fake.polls_started
    older = asyncio.create_task(bot.get_updates(timeout=10))
    await fake.wait_for(lambda f: f.polls_started > polls)
    newer = asyncio.create_task(bot.get_updates(timeout=0))
    with pytest.raises(TelegramConflictError):
        await asyncio.wait_for(older, 2)
    assert await newer == []
    # an empty long poll waits for its timeout
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    assert time.monotonic() - started >= 0.9


async def test_dispatcher_polling_topic_message_and_callback(fake: FakeTelegram, bot: Bot) -> None:
    seen: dict[str, Any] = {"messages": [], "callbacks": []}
    router = Router()

    @router.message(F.text)
    async def on_text(message: Message) -> None:
        seen["messages"].append(message)
        await message.answer(f"echo: {message.text}", reply_markup=kb(
            InlineKeyboardButton(text="OK", callback_data="ok:1")))

    @router.callback_query(F.data.startswith("ok:"))
    async def on_press(query: CallbackQuery) -> None:
        seen["callbacks"].append(query)
        await query.answer("done")
        await query.message.edit_text(f"pressed by {query.from_user.id}")

    dp = Dispatcher()
    dp.include_router(router)
    topic = await bot.create_forum_topic(GROUP, "agent")
    tid = topic.message_thread_id
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False,
                                                   close_bot_session=False, polling_timeout=10))
    try:
        incoming = fake.send_text(GROUP, ANN, "hello", thread_id=tid)
        assert incoming["reply_to_message"]["message_id"] == tid
        replies = await fake.wait_for(lambda f: f.messages(GROUP, tid), timeout=20)
        message = seen["messages"][0]
        assert message.message_thread_id == tid and message.is_topic_message is True
        assert message.reply_to_message.message_id == tid        # not a real reply
        assert message.from_user.id == ANN["id"]
        assert replies[0]["text"] == "echo: hello"                # answer() kept the topic
        assert fake.sent("sendMessage")[0]["message_thread_id"] == tid

        # a real reply to the bot's message
        bot_msg_id = replies[0]["message_id"]
        fake.send_text(GROUP, ANN, "re", thread_id=tid, reply_to_message_id=bot_msg_id)
        await fake.wait_for(lambda f: len(f.messages(GROUP, tid)) == 2)
        assert seen["messages"][1].reply_to_message.message_id == bot_msg_id
        assert seen["messages"][1].reply_to_message.text == "echo: hello"

        # a press on the first reply's button, by a stranger
        query_id = fake.press(GROUP, STRANGER, bot_msg_id, "ok:1")
        await fake.wait_for(lambda f: f.answered_callbacks and
                            f.messages(GROUP, tid)[0]["edits"] == 1)
        assert fake.answered_callbacks == [{
            "callback_query_id": query_id, "text": "done", "show_alert": False, "url": None,
            "cache_time": None, "data": "ok:1", "from": STRANGER, "message_id": bot_msg_id}]
        assert seen["callbacks"][0].from_user.id == STRANGER["id"]
        assert seen["callbacks"][0].message.message_thread_id == tid
        assert fake.messages(GROUP, tid)[0]["text"] == f"pressed by {STRANGER['id']}"
        await fake.wait_for(lambda f: f.pending_updates == 0)    # offsets were confirmed
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 5)
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.answer_callback_query(query_id, text="again")
    assert bad(exc) == ("Bad Request: query is too old and response timeout expired or query ID "
                        "is invalid")


# -- documents and the rest ----------------------------------------------------------------------

async def test_send_document(fake: FakeTelegram, bot: Bot) -> None:
    content = b"line 1\nline 2 \x00\xff binary\n"
    topic = await bot.create_forum_topic(GROUP, "files")
    sent = await bot.send_document(GROUP, BufferedInputFile(content, "transcript.txt"),
                                   caption="<b>log</b> &amp; more", parse_mode="HTML",
                                   message_thread_id=topic.message_thread_id)
    assert sent.document.file_name == "transcript.txt" and sent.document.file_size == len(content)
    assert sent.caption == "log & more" and sent.message_thread_id == topic.message_thread_id
    [view] = fake.messages(GROUP, topic.message_thread_id)
    assert view["document"]["content"] == content
    assert view["document"]["mime_type"] == "text/plain" and view["caption"] == "log & more"
    call = fake.sent("sendDocument")[0]
    assert call["document"]["filename"] == "transcript.txt" and call["document"]["content"] == content
    downloaded = await bot.download(sent.document.file_id)
    assert downloaded.read() == content
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_document(GROUP, BufferedInputFile(b"x", "a.txt"), caption="c" * 1025)
    assert bad(exc) == "Bad Request: message caption is too long"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.edit_message_text("x", chat_id=GROUP, message_id=sent.message_id)
    assert bad(exc) == "Bad Request: there is no text in the message to edit"
    # re-sending by file_id
    again = await bot.send_document(GROUP, sent.document.file_id)
    assert fake.messages(GROUP, GENERAL)[0]["document"]["content"] == content
    assert again.document.file_id == sent.document.file_id


async def test_commands_chat_action_get_chat_webhook(fake: FakeTelegram, bot: Bot) -> None:
    commands = [BotCommand(command="status", description="Show agents"),
                BotCommand(command="new", description="Start an agent")]
    assert await bot.set_my_commands(commands) is True
    assert fake.commands == [{"command": "status", "description": "Show agents"},
                             {"command": "new", "description": "Start an agent"}]
    assert [c.command for c in await bot.get_my_commands()] == ["status", "new"]
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.set_my_commands([BotCommand(command="Bad-Name", description="x")])
    assert bad(exc) == "Bad Request: BOT_COMMAND_INVALID"
    assert await bot.delete_webhook(drop_pending_updates=True) is True
    assert await bot.send_chat_action(GROUP, "typing") is True
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_chat_action(GROUP, "dancing")
    assert bad(exc) == "Bad Request: wrong parameter action in request"
    chat = await bot.get_chat(GROUP)
    assert chat.is_forum and chat.title == "swarm" and chat.type == "supergroup"
    private = await bot.get_chat(ANN["id"])
    assert private.type == "private" and private.first_name == "Ann"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.pin_chat_message(GROUP, 4242)
    assert bad(exc) == "Bad Request: message to pin not found"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(GROUP, "x", reply_parameters={"message_id": 4242})
    assert bad(exc) == "Bad Request: message to be replied not found"


@pytest.mark.parametrize("mode", ["502", "drop"])
async def test_polling_survives_outage(fake: FakeTelegram, bot: Bot, mode: str) -> None:
    got: list[str] = []
    dp = Dispatcher()

    @dp.message()
    async def on_text(message: Message) -> None:
        got.append(message.text or "")

    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False,
                                                   close_bot_session=False, polling_timeout=10))
    try:
        await fake.wait_for(lambda f: f.polls_started >= 1)      # a long poll is in flight
        fake.outage(True, mode=mode)                             # fails the long poll in flight
        fake.send_text(ANN["id"], ANN, "queued during the outage")
        await fake.wait_for(lambda f: f.outage_hits >= 1, timeout=20)  # aiogram tried again, in vain
        assert got == []
        failures = len(fake.rejected)
        fake.outage(False)
        await fake.wait_for(lambda f: got, timeout=20)            # aiogram backs off ~1 s, retries
        assert got == ["queued during the outage"]
        assert len(fake.rejected) == failures                    # outage answers are not recorded
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 5)


async def test_get_chat_member_gives_the_bots_rights_as_aiogram_types(fake: FakeTelegram) -> None:
    from aiogram.types import ChatMemberAdministrator, ChatMemberLeft, ChatMemberMember

    fake.add_forum_group(GROUP)
    async with make_bot(fake) as bot:
        me = await bot.get_me()
        admin = await bot.get_chat_member(GROUP, me.id)
        assert isinstance(admin, ChatMemberAdministrator) and admin.can_manage_topics
        fake.bot_can_manage_topics(GROUP, False)
        admin = await bot.get_chat_member(GROUP, me.id)
        assert isinstance(admin, ChatMemberAdministrator) and not admin.can_manage_topics
        fake.set_bot_status(GROUP, "member")
        assert isinstance(await bot.get_chat_member(GROUP, me.id), ChatMemberMember)
        fake.send_text(GROUP, ANN, "hi")
        assert isinstance(await bot.get_chat_member(GROUP, ANN["id"]), ChatMemberMember)
        fake.add_forum_group(-100999, "other")
        assert isinstance(await bot.get_chat_member(-100999, ANN["id"]), ChatMemberLeft)
        with pytest.raises(TelegramBadRequest, match="user not found"):
            await bot.get_chat_member(GROUP, STRANGER["id"])
        with pytest.raises(TelegramBadRequest, match="chat not found"):
            await bot.get_chat_member(-100555, me.id)
