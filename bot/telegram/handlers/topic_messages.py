"""Text in a session's topic (or a reply to a mirrored message) is input to that session."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.telegram.render import esc
from bot.telegram.services import BotServices
from core.errors import SmError
from core.lifecycle import Caller
from core.sessions import Session

router = Router(name="topic_messages")


async def session_for(message: Message, tg: BotServices, caller: Caller) -> Session | None:
    session = await tg.topic_session(message, caller)
    if session is not None:
        return session
    reply = message.reply_to_message
    # In a forum every topic message "replies" to the topic's first message;
    # only a reply to another message is a real one.
    if reply and reply.message_id != message.message_thread_id:
        session_id = await tg.topics.session_of_message(message.chat.id, reply.message_id)
        if session_id:
            try:
                return await tg.engine.session(caller, session_id)
            except SmError:
                return None
    return None


async def send(message: Message, tg: BotServices, caller: Caller, text: str, mode: str) -> None:
    session = await session_for(message, tg, caller)
    if session is None:
        return  # not addressed to a session: the General topic is for commands
    try:
        queued = await tg.engine.send(caller, session.id, text, mode, origin="telegram")
    except SmError as exc:
        await tg.reply(message, "⚠️ " + esc(str(exc)), reply_to=True)
        return
    # Acknowledged when delivered (another node's session: queued here for that node,
    # with no local message id to match, so no reaction).
    if tg.engine.node_of(caller, session.id) is None:
        await tg.mirror.acknowledge(queued.id, message.message_id, session)


@router.message(Command("urgent"))
async def urgent(message: Message, command: CommandObject, tg: BotServices, caller: Caller) -> None:
    if command.args:
        await send(message, tg, caller, command.args, "urgent")


@router.message(F.text)
async def text(message: Message, tg: BotServices, caller: Caller) -> None:
    body = message.text or ""
    if body.startswith("/"):
        return  # an unknown command is not input
    if body.startswith("!") and len(body) > 1:
        await send(message, tg, caller, body[1:].lstrip(), "urgent")
    else:
        await send(message, tg, caller, body, "sequential")
