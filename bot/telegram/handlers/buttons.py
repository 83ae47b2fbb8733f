"""Button presses on status cards and confirmations."""

from __future__ import annotations

import asyncio

from aiogram import Router
from aiogram.types import CallbackQuery
from aiogram.utils.i18n import gettext as _

from bot.telegram import actions
from bot.telegram.keyboards import CONFIRM_FIRST, DialogKey, PermissionDecision, SessionAction, confirm_keyboard
from bot.telegram.render import esc
from bot.telegram.services import BotServices
from core.errors import SmError
from core.lifecycle import Caller

router = Router(name="buttons")


@router.callback_query(SessionAction.filter())
async def session_action(query: CallbackQuery, callback_data: SessionAction, tg: BotServices) -> None:
    chat_id = query.message.chat.id if query.message else tg.mirror.chat_id
    try:
        session = await tg.engine.resolve(callback_data.sid)
    except SmError as exc:
        await query.answer(str(exc), show_alert=True)
        return
    action = callback_data.action
    if action in CONFIRM_FIRST and not callback_data.confirmed:
        await query.answer()
        question = _("Kill {name}?") if action == "kill" else _("Clear {name}'s context?")
        await tg.post(chat_id, session, question.format(name=f"<b>{esc(session.name)}</b>"),
                      confirm_keyboard(action, session.id, _("Yes"), _("No")))
        return
    if action == "kill":
        await tg.engine.kill(Caller(None), session.id)
        await query.answer(_("Killed"))
    elif action == "clear":
        await tg.engine.clear(Caller(None), session.id)
        await query.answer(_("Clearing"))
    elif action == "status":
        await query.answer()
        await tg.post(chat_id, session, await actions.status_html(tg.engine, session))
    elif action == "output":
        await query.answer()
        await tg.post(chat_id, session, await actions.output_html(tg.engine, session))
    elif action == "attach":
        await query.answer()
        await tg.post(chat_id, session, actions.attach_html(tg.engine, session))
    elif action == "what":
        await query.answer(_("Asking…"))

        async def summarise() -> None:
            await tg.post(chat_id, session, await actions.what_html(tg.engine, session))

        asyncio.get_running_loop().create_task(summarise())
    else:
        await query.answer()


def _who(query: CallbackQuery) -> str:
    user = query.from_user
    return user.username or user.first_name if user else "owner"


@router.callback_query(PermissionDecision.filter())
async def permission(query: CallbackQuery, callback_data: PermissionDecision, tg: BotServices) -> None:
    try:
        tg.engine.permissions.decide(callback_data.rid, callback_data.d, _who(query))
    except SmError as exc:
        await query.answer(str(exc), show_alert=True)
        return
    await query.answer(_("Done"))


@router.callback_query(DialogKey.filter())
async def dialog_key(query: CallbackQuery, callback_data: DialogKey, tg: BotServices) -> None:
    try:
        await tg.engine.press_keys(callback_data.sid, callback_data.key, f"owner via telegram ({_who(query)})",
                                   origin="telegram")
    except SmError as exc:
        await query.answer(str(exc), show_alert=True)
        return
    await query.answer(_("Sent"))
