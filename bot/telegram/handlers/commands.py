"""Slash commands: /new, /list, /status, /screen, /kill, /open, /cost, /help."""

from __future__ import annotations

import re
from pathlib import Path

from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.telegram import actions
from bot.telegram.keyboards import Action, confirm_keyboard, list_keyboard
from bot.telegram.render import esc
from bot.telegram.services import BotServices
from core import paths
from core.errors import SmError
from core.lifecycle import Caller
from core.sessions import Session

router = Router(name="commands")
NODE_PATH = re.compile(r"^([a-z0-9][a-z0-9-]{0,31}):([/~].*)$")


async def target(message: Message, command: CommandObject, tg: BotServices, caller: Caller) -> Session | None:
    """The session named in the command, or else the topic's session; replies if neither."""
    ref = (command.args or "").strip()
    try:
        if ref:
            return await tg.engine.session(caller, ref.split()[0])
    except SmError as exc:
        await tg.reply(message, "⚠️ " + esc(str(exc)))
        return None
    session = await tg.topic_session(message, caller)
    if session is None:
        await tg.reply(message, _("Name a session (id or name), or use this command in its topic."))
    return session


allowed_dir = paths.allowed_dir


@router.message(CommandStart())
@router.message(Command("help"))
async def help_(message: Message, tg: BotServices) -> None:
    await tg.reply(message, actions.help_html())


@router.message(Command("new"))
async def new(message: Message, command: CommandObject, tg: BotServices, caller: Caller) -> None:
    args = (command.args or "").strip()
    roots = tg.settings.allowed_roots
    workdir, prompt = roots[0], args
    first = args.split(maxsplit=1)[0] if args else ""
    host = None
    # /new <node>:<path>: on another node (several hosts), which checks the path against its own roots.
    on_node = NODE_PATH.match(first)
    if on_node and on_node.group(1) != tg.engine.settings.node:
        host, workdir, prompt = on_node.group(1), Path(on_node.group(2)), args[len(first):].strip()
    elif on_node:
        first, args = on_node.group(2), args[len(on_node.group(1)) + 1:]
    if host is None and first.startswith(("/", "~", ".")):
        found = allowed_dir(first, roots)
        if found is None:
            await tg.reply(message, "⚠️ " + _("{path} is not an existing directory under the allowed roots ({roots})").format(
                path=esc(first), roots=esc(", ".join(str(r) for r in roots))))
            return
        workdir, prompt = found, args[len(first):].strip()
    # /new [path] --worktree[=BRANCH] [prompt]: the child works in a git worktree of its own.
    worktree = None
    flag = prompt.split(maxsplit=1)[0] if prompt else ""
    if flag == "--worktree" or flag.startswith("--worktree="):
        worktree = flag.partition("=")[2]
        prompt = prompt[len(flag):].strip()
    try:
        session = await tg.engine.spawn(caller, prompt, provider=tg.settings.default_provider,
                                        workdir=str(workdir), worktree=worktree, host=host, confine=host is not None)
    except SmError as exc:
        await tg.reply(message, "⚠️ " + esc(str(exc)))
        return
    if session.state == "errored":
        await tg.reply(message, "⚠️ " + esc(f"{session.label}: {session.state_reason}"))
        return
    await tg.reply(message, "🚀 " + _("Started {name} in {dir}; it has its own topic.").format(
        name=f"<b>{esc(session.name)}</b> <code>{session.id}</code>", dir=f"<code>{esc(session.workdir)}</code>"))


@router.message(Command("cost"))
async def cost(message: Message, command: CommandObject, tg: BotServices, caller: Caller) -> None:
    """In a topic (or naming a session): that swarm's cost; in the group: everything today."""
    session = None
    if (command.args or "").strip() or await tg.topic_session(message, caller):
        session = await target(message, command, tg, caller)
        if session is None:
            return
    try:
        await tg.reply(message, await actions.cost_html(tg.engine, caller, session))
    except SmError as exc:
        await tg.reply(message, "⚠️ " + esc(str(exc)))


@router.message(Command("list"))
async def list_(message: Message, tg: BotServices, caller: Caller) -> None:
    sessions = tg.engine.sessions(caller)
    links = {}
    for s in sessions:
        topic = await tg.topics.get(s.id)
        if topic and topic.thread_id:
            link = tg.topic_link(topic.chat_id, topic.thread_id)
            if link:
                links[s.id] = link
    live = {s.id for s in sessions}
    closed = [(t.session_id, "↩ " + _("Reopen {name}").format(name=t.name)) for t in
              await tg.topics.in_chat(message.chat.id) if t.closed and t.session_id not in live][-10:]
    markup = list_keyboard([(s.id, f"{s.name} · {s.state}") for s in sessions], links, closed)
    await tg.reply(message, actions.list_html(sessions), markup)


@router.message(Command("status"))
async def status(message: Message, command: CommandObject, tg: BotServices, caller: Caller) -> None:
    session = await target(message, command, tg, caller)
    if session:
        await tg.reply(message, await actions.status_html(tg.engine, caller, session))


@router.message(Command("screen"))
async def screen(message: Message, command: CommandObject, tg: BotServices, caller: Caller) -> None:
    session = await target(message, command, tg, caller)
    if session:
        tg.background.start(tg.screen(message.chat.id, session, caller), f"screen of {session.id}")


@router.message(Command("kill"))
async def kill(message: Message, command: CommandObject, tg: BotServices, caller: Caller) -> None:
    session = await target(message, command, tg, caller)
    if session:
        nonce = tg.confirmations.issue(Action.kill.value, session.id, message.chat.id)
        await tg.reply(message, _("Kill {name}?").format(name=f"<b>{esc(session.name)}</b>"),
                       confirm_keyboard(Action.kill, session.id, nonce, _("Yes, kill it"), _("No")))


@router.message(Command("open"))
async def open_(message: Message, command: CommandObject, tg: BotServices, caller: Caller) -> None:
    session = await target(message, command, tg, caller)
    if session:
        await tg.reply(message, await actions.attach_html(tg.engine, caller, session))
