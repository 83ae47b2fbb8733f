"""Files between the phone and the agents, the Telegram side.

Down: the largest size of a photo, a document, audio, video or a voice note
is fetched with getFile into the file the engine reserved in the session's
inbox. The cloud Bot API serves at most 20 MB (anything bigger is refused
before a byte is fetched); a local Bot API server answers getFile with a
path on this machine, which is copied instead.

Up: the engine's FilesShared becomes outbox items (files are conversation,
so they keep their place among the topic's messages): images as photos,
the rest as documents, several as albums of 2-10 (Telegram does not mix
photos and documents in one album).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import (
    BufferedInputFile,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
)

from bot.telegram.render import esc

MB = 1024 * 1024
PHOTO_MAX = 10 * MB          # sendPhoto's limit; a bigger image goes as a document
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
ALBUM_MAX = 10
CAPTION_MAX = 1024
ALBUM_WINDOW = 1.0           # seconds without a new part before an album is complete


class TooBig(Exception):
    def __init__(self, size: int | None, limit: int) -> None:
        super().__init__(f"{(size or 0) / MB:.1f} MB is over the {limit / MB:.0f} MB limit")
        self.size = size
        self.limit = limit


# -- down: phone to agent ------------------------------------------------------------


@dataclass
class Incoming:
    """The file a message carries: what the agent is told it is, its Telegram id and name."""

    kind: str  # photo, document, audio, voice, video, animation (the engine's RECEIVED)
    file_id: str
    name: str
    size: int | None


def incoming(message: Message) -> Incoming | None:
    mid = message.message_id
    if message.photo:
        biggest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        return Incoming("photo", biggest.file_id, f"photo-{mid}.jpg", biggest.file_size)
    if message.voice:
        return Incoming("voice", message.voice.file_id, f"voice-{mid}.ogg", message.voice.file_size)
    if message.audio:
        a = message.audio
        return Incoming("audio", a.file_id, a.file_name or f"audio-{mid}.mp3", a.file_size)
    if message.video:
        v = message.video
        return Incoming("video", v.file_id, v.file_name or f"video-{mid}.mp4", v.file_size)
    if message.video_note:
        return Incoming("video", message.video_note.file_id, f"video-{mid}.mp4", message.video_note.file_size)
    if message.animation:
        a2 = message.animation
        return Incoming("animation", a2.file_id, a2.file_name or f"animation-{mid}.mp4", a2.file_size)
    if message.document:
        d = message.document
        return Incoming("document", d.file_id, d.file_name or f"file-{mid}", d.file_size)
    return None


async def download(bot: Bot, item: Incoming, dest: Path, limit: int) -> None:
    """Fetch `item` into `dest` (an existing, empty file); TooBig before a byte is fetched."""
    if item.size is not None and item.size > limit:
        raise TooBig(item.size, limit)
    try:
        info = await bot.get_file(item.file_id)
    except TelegramBadRequest as exc:
        if "too big" in str(exc).lower():
            raise TooBig(item.size, limit) from None
        raise
    if info.file_size is not None and info.file_size > limit:
        raise TooBig(info.file_size, limit)
    path = info.file_path or ""
    if os.path.isabs(path):
        # A local Bot API server (--local) has the file on this machine already.
        if os.path.getsize(path) > limit:
            raise TooBig(os.path.getsize(path), limit)
        await asyncio.to_thread(_copy_into, Path(path), dest)
        return
    with open(dest, "r+b") as fh:
        await bot.download_file(path, destination=fh)
        if fh.tell() > limit:
            raise TooBig(fh.tell(), limit)


def _copy_into(source: Path, dest: Path) -> None:
    with open(source, "rb") as src, open(dest, "r+b") as out:
        shutil.copyfileobj(src, out)


class Albums:
    """The parts of a media group, gathered until none came for ALBUM_WINDOW.

    aiogram handles each update in its own task: the first part's handler waits
    for the rest and gets them all; the other parts' handlers get None.
    """

    def __init__(self, window: float = ALBUM_WINDOW) -> None:
        self.window = window
        self._parts: dict[tuple[int, str], list[Message]] = {}
        self._last: dict[tuple[int, str], float] = {}

    async def collect(self, message: Message) -> list[Message] | None:
        loop = asyncio.get_running_loop()
        key = (message.chat.id, message.media_group_id or "")
        first = key not in self._parts
        self._parts.setdefault(key, []).append(message)
        self._last[key] = loop.time()
        if not first:
            return None
        while (left := self._last[key] + self.window - loop.time()) > 0:
            await asyncio.sleep(left)
        self._last.pop(key, None)
        return sorted(self._parts.pop(key), key=lambda m: m.message_id)


@dataclass
class FileDoor:
    """The Telegram door's memory for files: albums being gathered, pending /send confirmations,
    and the sessions already told how to turn on transcription."""

    albums: Albums = field(default_factory=Albums)
    pending_sends: dict[str, str] = field(default_factory=dict)  # confirmation nonce -> the /send pattern
    told_transcription: set[str] = field(default_factory=set)


# -- up: agent to phone --------------------------------------------------------------


def is_photo(path: Path) -> bool:
    """An image Telegram takes as a photo: a common format, under 10 MB, sides it accepts."""
    if path.suffix.lower() not in PHOTO_EXTENSIONS:
        return False
    try:
        if path.stat().st_size > PHOTO_MAX:
            return False
        from PIL import Image

        with Image.open(path) as image:
            width, height = image.size
    except Exception:
        return False
    return width + height <= 10000 and max(width, height) <= 20 * min(width, height)


def plan(paths: list[str]) -> list[tuple[str, list[str]]]:
    """The sends for `paths`, in order: ("photo" | "document", 1-10 paths) each."""
    photos = [p for p in paths if is_photo(Path(p))]
    documents = [p for p in paths if p not in photos]
    out: list[tuple[str, list[str]]] = []
    for kind, group in (("photo", photos), ("document", documents)):
        for start in range(0, len(group), ALBUM_MAX):
            out.append((kind, group[start:start + ALBUM_MAX]))
    return out


async def send(bot: Bot, chat_id: int, thread: int | None, payload: dict[str, Any],
               silent: bool | None = None) -> int | None:
    """One planned send (a photo, a document, or an album); a file that can't be read or is
    too big becomes a line of text instead, so the outbox never retries it forever."""
    kind, paths = payload["as"], payload["paths"]
    caption = esc(payload.get("caption", ""))[:CAPTION_MAX] or None
    limit = int(payload.get("max_bytes") or 50 * MB)
    files: list[BufferedInputFile] = []
    problems: list[str] = []
    for path in paths:
        try:
            size = os.path.getsize(path)
            if size > limit:
                problems.append(f"{Path(path).name}: {size / MB:.1f} MB, over the {limit / MB:.0f} MB upload limit")
                continue
            with open(path, "rb") as fh:
                files.append(BufferedInputFile(fh.read(), filename=Path(path).name))
        except OSError as exc:
            problems.append(f"{Path(path).name}: {exc.strerror or exc}")
    message_id: int | None = None
    if len(files) == 1:
        if kind == "photo":
            sent = await bot.send_photo(chat_id, files[0], caption=caption, message_thread_id=thread,
                                          disable_notification=silent)
        else:
            sent = await bot.send_document(chat_id, files[0], caption=caption, message_thread_id=thread,
                                          disable_notification=silent)
        message_id = sent.message_id
    elif files:
        media: list[Any] = [
            (InputMediaPhoto if kind == "photo" else InputMediaDocument)(
                media=f, caption=caption if i == 0 else None)
            for i, f in enumerate(files)]
        album = await bot.send_media_group(chat_id, media, message_thread_id=thread, disable_notification=silent)
        message_id = album[0].message_id if album else None
    if problems:
        sent_text = await bot.send_message(chat_id, "⚠️ " + esc("; ".join(problems)), message_thread_id=thread,
                                     disable_notification=silent)
        message_id = message_id or sent_text.message_id
    return message_id
