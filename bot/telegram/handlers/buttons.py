"""Button presses: one handler per action, each chosen by its callback data's filter."""

from __future__ import annotations

from typing import Awaitable, Callable

from aiogram import F, Router
from aiogram.types import CallbackQuery
from aiogram.utils.i18n import gettext as _

from bot.telegram import actions
from bot.telegram.keyboards import (
    CONFIRM_FIRST,
    Action,
    DialogKey,
    PermissionAnswer,
    PermissionDecision,
    SessionAction,
    ToolbarPress,
    confirm_keyboard,
)
from bot.telegram.lanes import NOTIFY_MODES, Lane
from bot.telegram.middlewares import person
from bot.telegram.mirror import button_labels
from bot.telegram.prompts import EXPIRED, outcome_text
from bot.telegram.render import esc
from bot.telegram.services import BotServices
from core.errors import SmError, Unavailable
from core.lifecycle import Caller
from core.sessions import Session

router = Router(name="buttons")


async def _session(query: CallbackQuery, data: SessionAction, tg: BotServices, caller: Caller) -> Session | None:
    """The button's session; an alert instead when it is gone, or when the button
    is not on a message of that session (forged or copied callback data)."""
    if data.action not in (Action.status, Action.reopen) and not await tg.is_bound(_chat(query, tg), query.message, data.sid):
        await query.answer(_("This button does not belong to that session."), show_alert=True)
        return None
    try:
        return await tg.engine.session(caller, data.sid)
    except SmError as exc:
        await query.answer(str(exc), show_alert=True)
        return None


async def _confirmed(query: CallbackQuery, data: SessionAction, tg: BotServices, caller: Caller) -> bool:
    """A "Yes" press whose one-time nonce the bot issued for this action, session and chat
    (the nonce binds it, wherever the question was asked: a card or /kill)."""
    if not tg.confirmations.take(data.nonce, data.action.value, data.sid, _chat(query, tg)):
        await query.answer(_("This confirmation has expired; press the button again."), show_alert=True)
        return False
    return True


def _chat(query: CallbackQuery, tg: BotServices) -> int:
    return query.message.chat.id if query.message else tg.mirror.chat_id


@router.callback_query(SessionAction.filter(F.action.in_(CONFIRM_FIRST) & ~F.nonce))
async def confirm(query: CallbackQuery, callback_data: SessionAction, tg: BotServices, caller: Caller) -> None:
    """Kill and clear ask first, with Yes / No buttons."""
    session = await _session(query, callback_data, tg, caller)
    if session is None:
        return
    await query.answer()
    question = _("Kill {name}?") if callback_data.action == Action.kill else _("Clear {name}'s context?")
    chat_id = _chat(query, tg)
    nonce = tg.confirmations.issue(callback_data.action.value, session.id, chat_id)
    await tg.post(chat_id, session, question.format(name=f"<b>{esc(session.name)}</b>"),
                  confirm_keyboard(callback_data.action, session.id, nonce, _("Yes"), _("No")))


@router.callback_query(SessionAction.filter((F.action == Action.kill) & F.nonce))
async def kill(query: CallbackQuery, callback_data: SessionAction, tg: BotServices, caller: Caller) -> None:
    if not await _confirmed(query, callback_data, tg, caller):
        return
    try:
        await tg.engine.kill(caller, callback_data.sid)
    except SmError as exc:
        await query.answer(str(exc), show_alert=True)
        return
    await query.answer(_("Killed"))


@router.callback_query(SessionAction.filter((F.action == Action.clear) & F.nonce))
async def clear(query: CallbackQuery, callback_data: SessionAction, tg: BotServices, caller: Caller) -> None:
    if not await _confirmed(query, callback_data, tg, caller):
        return
    try:
        await tg.engine.clear(caller, callback_data.sid)
    except SmError as exc:
        await query.answer(str(exc), show_alert=True)
        return
    await query.answer(_("Clearing"))


@router.callback_query(SessionAction.filter(F.action == Action.status))
async def status(query: CallbackQuery, callback_data: SessionAction, tg: BotServices, caller: Caller) -> None:
    session = await _session(query, callback_data, tg, caller)
    if session:
        await query.answer()
        await tg.post(_chat(query, tg), session, await actions.status_html(tg.engine, caller, session))


@router.callback_query(SessionAction.filter(F.action == Action.output))
async def output(query: CallbackQuery, callback_data: SessionAction, tg: BotServices, caller: Caller) -> None:
    session = await _session(query, callback_data, tg, caller)
    if session:
        await query.answer()
        await tg.post(_chat(query, tg), session, await actions.output_html(tg.engine, caller, session))


@router.callback_query(SessionAction.filter(F.action == Action.screen))
async def screen(query: CallbackQuery, callback_data: SessionAction, tg: BotServices, caller: Caller) -> None:
    """A picture of the pane: drawn off the event loop, sent through the outbox."""
    session = await _session(query, callback_data, tg, caller)
    if session is None:
        return
    await query.answer()
    tg.background.start(tg.screen(_chat(query, tg), session, caller), f"screen of {session.id}")


@router.callback_query(SessionAction.filter(F.action == Action.live))
async def live(query: CallbackQuery, callback_data: SessionAction, tg: BotServices, caller: Caller) -> None:
    """A self-updating screenshot of the session in this chat, or its end."""
    session = await _session(query, callback_data, tg, caller)
    if session is None or tg.live is None:
        return
    try:
        running = await tg.live.toggle(_chat(query, tg), session)
    except SmError as exc:
        await query.answer(str(exc), show_alert=True)
        return
    await query.answer(_("Live view on") if running else _("Live view off"))


@router.callback_query(SessionAction.filter(F.action == Action.attach))
async def attach(query: CallbackQuery, callback_data: SessionAction, tg: BotServices, caller: Caller) -> None:
    session = await _session(query, callback_data, tg, caller)
    if session:
        await query.answer()
        await tg.post(_chat(query, tg), session, await actions.attach_html(tg.engine, caller, session))


def next_mode(notify: str) -> str:
    return NOTIFY_MODES[(NOTIFY_MODES.index(notify) + 1) % len(NOTIFY_MODES)] if notify in NOTIFY_MODES \
        else NOTIFY_MODES[0]


@router.callback_query(SessionAction.filter(F.action.in_({Action.notify, Action.verbose})))
async def topic_setting(query: CallbackQuery, callback_data: SessionAction, tg: BotServices, caller: Caller) -> None:
    """The topic's own settings, changed by a tap: its notifications cycled (all, actionable
    only, muted), or its tool calls posted or not. The card's button then shows the new one."""
    session = await _session(query, callback_data, tg, caller)
    topic = await tg.topics.get(callback_data.sid) if session else None
    if session is None or topic is None:
        return
    if callback_data.action == Action.notify:
        mode = next_mode(topic.notify)
        await tg.topics.update(session.id, notify=mode)
        label = button_labels(notify=mode)[Action.notify]
    else:
        on = not tg.mirror.verbose(topic)
        await tg.topics.update(session.id, verbose=int(on))
        label = button_labels(verbose=on)[Action.verbose]
    await query.answer(label)
    await tg.mirror.card(session)


@router.callback_query(SessionAction.filter(F.action == Action.reopen))
async def reopen(query: CallbackQuery, callback_data: SessionAction, tg: BotServices, caller: Caller) -> None:
    """A dead session's closed topic, opened again to read (from /list)."""
    session = await _session(query, callback_data, tg, caller)
    if session is None:
        return
    await tg.outbox.put(_chat(query, tg), "topic", {"action": "reopen"}, session.id, lane=Lane.CHATTER)
    await query.answer(_("Reopening the topic of {name}").format(name=session.name))


@router.callback_query(SessionAction.filter(F.action == Action.resume))
async def resume(query: CallbackQuery, callback_data: SessionAction, tg: BotServices, caller: Caller) -> None:
    """A lost session runs again (sm resume); the topic then says how it went."""
    session = await _session(query, callback_data, tg, caller)
    if session is None:
        return
    try:
        await tg.engine.resume(caller, session.id)
    except SmError as exc:
        await query.answer(str(exc), show_alert=True)
        return
    await query.answer(_("Resuming {name}…").format(name=session.name))


@router.callback_query(SessionAction.filter(F.action == Action.what))
async def what(query: CallbackQuery, callback_data: SessionAction, tg: BotServices, caller: Caller) -> None:
    """The summary takes a while (a model call): answer the tap now, post it when it is ready."""
    session = await _session(query, callback_data, tg, caller)
    if session is None:
        return
    await query.answer(_("Asking…"))
    chat_id = _chat(query, tg)

    async def summarise() -> None:
        await tg.post(chat_id, session, await actions.what_html(tg.engine, caller, session))

    tg.background.start(summarise(), f"what of {session.id}")


@router.callback_query(PermissionAnswer.filter())
@router.callback_query(PermissionDecision.filter())
async def permission(query: CallbackQuery, callback_data: PermissionAnswer | PermissionDecision, tg: BotServices,
                     caller: Caller) -> None:
    """Allow, Allow always or Deny: decided by the engine of the session's node (another node's
    is asked at once); the prompt's message then says how it ended."""
    by = query.from_user.full_name or person(query.from_user)  # "allowed by Ann"
    sid = getattr(callback_data, "sid", "")  # none on a button from before several hosts: this node's
    try:
        if sid:
            await tg.engine.answer_permission(caller, sid, callback_data.rid, callback_data.d.value, by)
        else:
            tg.engine.decide_permission(caller, callback_data.rid, callback_data.d.value, by)
    except Unavailable as exc:
        await query.answer(str(exc), show_alert=True)  # the session's node did not answer: tap again later
        return
    except SmError:
        # Already answered, expired, or from before a restart: say how it ended.
        prompt = await tg.prompts.get(sid, callback_data.rid)
        ended = prompt.outcome if prompt and prompt.outcome else EXPIRED
        await query.answer(outcome_text(ended, prompt.decided_by if prompt else None), show_alert=True)
        return
    await query.answer(_("Done"))


async def _press(query: CallbackQuery, sid: str, tg: BotServices,
                 press: Callable[[], Awaitable[object]]) -> None:
    """Keys into a session's pane, from a button of that session's own message."""
    if not await tg.is_bound(_chat(query, tg), query.message, sid):
        await query.answer(_("This button does not belong to that session."), show_alert=True)
        return
    try:
        await press()
    except SmError as exc:
        await query.answer(str(exc), show_alert=True)
        return
    await query.answer(_("Sent"))


@router.callback_query(DialogKey.filter())
async def dialog_key(query: CallbackQuery, callback_data: DialogKey, tg: BotServices, caller: Caller) -> None:
    await _press(query, callback_data.sid, tg, lambda: tg.engine.press_keys(
        caller, callback_data.sid, callback_data.key, origin="telegram"))


@router.callback_query(ToolbarPress.filter())
async def toolbar_key(query: CallbackQuery, callback_data: ToolbarPress, tg: BotServices, caller: Caller) -> None:
    """A one-tap key of the card: Esc, Enter, Shift+Tab, Ctrl-C pressed now; /compact typed when idle."""
    await _press(query, callback_data.sid, tg, lambda: tg.engine.press_toolbar_key(
        caller, callback_data.sid, callback_data.key, origin="telegram"))


@router.callback_query()
async def unknown(query: CallbackQuery) -> None:
    """A button from an older sm whose data no longer parses: stop its spinner, do nothing."""
    await query.answer()
