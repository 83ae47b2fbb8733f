"""Files in a session's topic go to its agent; /send brings the agent's files to the phone."""

from __future__ import annotations

import logging
from pathlib import Path

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.telegram import files
from bot.telegram.handlers.topic_messages import session_for
from bot.telegram.render import esc
from bot.telegram.services import BotServices
from core.errors import ErrorKind, NeedsConfirmation, SmError
from core.lifecycle import Caller
from core.sessions import Session

log = logging.getLogger(__name__)
router = Router(name="files")

MEDIA = F.photo | F.document | F.audio | F.voice | F.video | F.video_note | F.animation
ACTION = "send"


class SendSecrets(CallbackData, prefix="f"):
    """"Send anyway" on a /send that matched files that look like secrets."""

    sid: str
    nonce: str


# -- phone to agent ------------------------------------------------------------------


@router.message(MEDIA)
async def media(message: Message, tg: BotServices, caller: Caller) -> None:
    session = await session_for(message, tg, caller)
    if session is None:
        return  # not addressed to a session: nothing is fetched
    parts = [message]
    if message.media_group_id:
        collected = await tg.files.albums.collect(message)
        if collected is None:
            return  # the album's first part speaks for all of it
        parts = collected
    await _receive(parts, session, tg, caller)


async def _receive(parts: list[Message], session: Session, tg: BotServices, caller: Caller) -> None:
    first = parts[0]
    limit = int(tg.settings.max_download_mb * files.MB)
    got: list[tuple[str, Path]] = []
    for message in parts:
        item = files.incoming(message)
        if item is None:
            continue
        try:
            path = await tg.engine.inbox_file(caller, session.id, item.name)
        except SmError as exc:
            await tg.reply(first, "⚠️ " + esc(str(exc)), reply_to=True)
            return
        try:
            await files.download(message.bot, item, path, limit)  # type: ignore[arg-type]
        except files.TooBig as exc:
            path.unlink(missing_ok=True)
            await tg.reply(message, "⚠️ " + _(
                "{name} is too big: {size} MB; this bot can fetch at most {limit} MB from Telegram "
                "(a local Bot API server allows more). Nothing was sent to {session}.").format(
                name=esc(item.name), size=f"{(exc.size or 0) / files.MB:.1f}",
                limit=f"{limit / files.MB:.0f}", session=f"<b>{esc(session.name)}</b>"), reply_to=True)
            continue
        except Exception as exc:
            path.unlink(missing_ok=True)
            log.warning("downloading %s for %s failed: %s", item.name, session.label, exc)
            await tg.reply(message, "⚠️ " + _("Could not fetch {name} from Telegram: {error}").format(
                name=esc(item.name), error=esc(str(exc))), reply_to=True)
            continue
        got.append((item.kind, path))
    if not got:
        return
    caption = "\n".join(m.caption for m in parts if m.caption)
    if len(got) == 1 and got[0][0] in ("voice", "audio"):
        if await _transcribed(first, session, got[0][1], caption, tg, caller):
            return
    try:
        queued = await tg.engine.receive_files(caller, session.id, got, caption, origin="telegram")
    except SmError as exc:
        await tg.reply(first, "⚠️ " + esc(str(exc)), reply_to=True)
        return
    await tg.mirror.acknowledge(queued.id, first.message_id, session)  # 👍 once it goes in


async def _transcribed(message: Message, session: Session, path: Path, caption: str, tg: BotServices,
                       caller: Caller) -> bool:
    """A voice note as text: shown in the topic and delivered as the message. False: the agent
    gets the audio file instead (no command, or it failed), and the person is told why."""
    try:
        text = await tg.engine.transcribe(caller, session.id, path)
    except SmError as exc:
        if exc.kind == ErrorKind.INVALID:  # no command configured: say how, once per session
            if session.id not in tg.files.told_transcription:
                tg.files.told_transcription.add(session.id)
                await tg.reply(message, "ℹ️ " + _(
                    "Voice notes reach the agent as audio files. To have them transcribed, set "
                    "SM_TRANSCRIBE_COMMAND (see the README: whisper.cpp or an OpenAI-compatible endpoint)."))
        else:
            await tg.reply(message, "⚠️ " + _("{error}; the agent gets the audio file instead.").format(
                error=esc(str(exc))), reply_to=True)
        return False
    await tg.reply(message, "🎤 " + esc(text), reply_to=True)
    body = text + (f"\n{caption}" if caption else "")
    try:
        queued = await tg.engine.send(caller, session.id, body, origin="telegram")
    except SmError as exc:
        await tg.reply(message, "⚠️ " + esc(str(exc)), reply_to=True)
        return True
    await tg.mirror.acknowledge(queued.id, message.message_id, session)  # 👍 on the voice note once it goes in
    return True


# -- agent to phone ------------------------------------------------------------------


@router.message(Command("send"))
async def send(message: Message, command: CommandObject, tg: BotServices, caller: Caller) -> None:
    """/send <path or glob>: files from the session's working directory, into its topic."""
    session = await session_for(message, tg, caller)
    if session is None:
        await tg.reply(message, _("Use /send in a session's topic: /send report.pdf, /send out/*.png"))
        return
    pattern = (command.args or "").strip()
    if not pattern:
        await tg.reply(message, _("Usage: /send <path or glob>, relative to {dir}").format(
            dir=f"<code>{esc(session.workdir)}</code>"), reply_to=True)
        return
    try:
        await tg.engine.send_files(caller, session.id, pattern)
    except NeedsConfirmation as exc:
        nonce = tg.confirmations.issue(ACTION, session.id, message.chat.id)
        tg.files.pending_sends[nonce] = pattern
        keyboard = InlineKeyboardBuilder()
        keyboard.button(text=_("Send anyway"), callback_data=SendSecrets(sid=session.id, nonce=nonce))
        await tg.reply(message, "🔐 " + _("{files} may hold secrets. Send anyway?").format(
            files=esc(", ".join(Path(p).name for p in exc.paths))), keyboard.as_markup(), reply_to=True)
    except SmError as exc:
        await tg.reply(message, "⚠️ " + esc(str(exc)), reply_to=True)


@router.callback_query(SendSecrets.filter())
async def send_anyway(query: CallbackQuery, callback_data: SendSecrets, tg: BotServices, caller: Caller) -> None:
    chat_id = query.message.chat.id if query.message else 0
    pattern = tg.files.pending_sends.pop(callback_data.nonce, None)
    if pattern is None or not tg.confirmations.take(callback_data.nonce, ACTION, callback_data.sid, chat_id):
        await query.answer(_("This confirmation has expired; press the button again."), show_alert=True)
        return
    try:
        await tg.engine.send_files(caller, callback_data.sid, pattern, secrets_confirmed=True)
    except SmError as exc:
        await query.answer(str(exc), show_alert=True)
        return
    await query.answer(_("Sent"))
