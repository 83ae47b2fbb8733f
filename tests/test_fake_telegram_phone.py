"""The fake Bot API's photos and reactions refuse what Telegram refuses."""

from __future__ import annotations

import io
from pathlib import Path
from typing import AsyncIterator

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile, InputMediaPhoto, ReactionTypeEmoji
from PIL import Image

from telegram_harness import OutboxRig, outbox_rig

CHAT = OutboxRig.CHAT


def png(width: int = 40, height: int = 20, colour: str = "black") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[OutboxRig]:
    async with outbox_rig(tmp_path) as r:
        yield r


@pytest.mark.parametrize("emoji, ok", [("👍", True), ("👌", True), ("👎", True), ("👀", True),
                                       ("⏳", False), ("✅", False)])
async def test_only_telegrams_reaction_emoji_are_accepted(rig: OutboxRig, emoji: str, ok: bool) -> None:
    sent = await rig.bot.send_message(CHAT, "hello")
    react = rig.bot.set_message_reaction(CHAT, sent.message_id, reaction=[ReactionTypeEmoji(emoji=emoji)])
    if ok:
        assert await react
        assert rig.fake.reactions[(CHAT, sent.message_id)] == [emoji]
    else:
        with pytest.raises(TelegramBadRequest, match="REACTION_INVALID"):
            await react


async def test_photos_keep_telegrams_limits(rig: OutboxRig) -> None:
    with pytest.raises(TelegramBadRequest, match="caption is too long"):
        await rig.bot.send_photo(CHAT, BufferedInputFile(png(), "s.png"), caption="x" * 1025)
    with pytest.raises(TelegramBadRequest, match="PHOTO_INVALID_DIMENSIONS"):
        await rig.bot.send_photo(CHAT, BufferedInputFile(png(4000, 100), "s.png"))
    big = png() + b"\0" * (10 * 1024 * 1024)
    with pytest.raises(TelegramBadRequest):
        await rig.bot.send_photo(CHAT, BufferedInputFile(big, "s.png"))
    sent = await rig.bot.send_photo(CHAT, BufferedInputFile(png(), "s.png"), caption="screen")
    assert rig.fake.photo(CHAT, sent.message_id) == png()


async def test_replacing_a_photo_with_the_same_one_is_not_modified(rig: OutboxRig) -> None:
    sent = await rig.bot.send_photo(CHAT, BufferedInputFile(png(), "s.png"), caption="screen")
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await rig.bot.edit_message_media(InputMediaPhoto(media=BufferedInputFile(png(), "s.png"), caption="screen"),
                                         chat_id=CHAT, message_id=sent.message_id)
    await rig.bot.edit_message_media(InputMediaPhoto(media=BufferedInputFile(png(colour="white"), "s.png"),
                                                     caption="screen"), chat_id=CHAT, message_id=sent.message_id)
    assert rig.fake.photo(CHAT, sent.message_id) == png(colour="white")


async def test_a_message_sent_without_notification_is_seen_as_silent(rig: OutboxRig) -> None:
    loud = await rig.bot.send_message(CHAT, "ring")
    quiet = await rig.bot.send_message(CHAT, "hush", disable_notification=True)
    photo = await rig.bot.send_photo(CHAT, BufferedInputFile(png(), "s.png"), disable_notification=True)
    shown = {m["message_id"]: m["silent"] for m in rig.fake.messages(CHAT)}
    assert shown == {loud.message_id: False, quiet.message_id: True, photo.message_id: True}


async def test_renaming_a_topic_posts_topic_edited_into_it(rig: OutboxRig) -> None:
    topic = await rig.bot.create_forum_topic(CHAT, "eng · a1b2c3")
    await rig.bot.edit_forum_topic(CHAT, topic.message_thread_id, name="✋ eng · a1b2c3")
    edited = [m["forum_topic_edited"] for m in rig.fake.service_messages(CHAT, topic.message_thread_id)
              if "forum_topic_edited" in m]
    assert edited == [{"name": "✋ eng · a1b2c3"}]
