"""What the bot's commands and buttons do, as text for a topic."""

from __future__ import annotations

import asyncio
import base64
import shlex
import time
from typing import Any

from aiogram.utils.i18n import gettext as _

from datetime import datetime

from bot.telegram.mirror import card_text, spend_text
from bot.telegram.render import STATE_ICONS, cut, esc, pre
from bot.telegram.screenshot import render
from core.engine import Engine
from core.lifecycle import Caller
from core.sessions import Session
from core.types import PaneScreen


async def status_html(engine: Engine, caller: Caller, session: Session) -> str:
    queued = (await engine.queue_counts(caller)).get(session.id, 0)
    return card_text(session, queued, usage=await engine.usage(caller, session.id))


async def cost_html(engine: Engine, caller: Caller, session: Session | None) -> str:
    """A session's swarm (it and its descendants), or, with none, every session today."""
    if session is None:
        midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        out = await engine.cost(caller, None, midnight)
        title = _("Cost today, all sessions")
    else:
        out = await engine.cost(caller, session.id)
        title = _("Cost of {name} and its descendants").format(name=f"<b>{esc(session.name)}</b>")
    rows = [r for r in out["sessions"] if session is not None or r["usage"]["input"] or r["usage"]["output"]]
    lines = [f"💰 {title}"]
    for r in rows[:30]:
        lines.append(f"<b>{esc(r['name'])}</b> <code>{r['id']}</code>: {esc(spend_text(r['usage']))}")
    if len(rows) > 30:
        lines.append(f"… ({len(rows) - 30} more)")
    lines.append(_("Total: {spend}").format(spend=esc(spend_text(out["total"]))))
    return "\n".join(lines)


async def output_html(engine: Engine, caller: Caller, session: Session) -> str:
    try:
        return pre(await engine.output(caller, session.id, 30))
    except Exception as exc:  # a pane gone mid-read: say so in the topic
        return "⚠️ " + esc(str(exc))


async def screen_photo(engine: Engine, caller: Caller, session: Session,
                       screen: PaneScreen | None = None) -> dict[str, Any]:
    """The pane drawn as a PNG (colours, bold, cursor), as an outbox "photo" payload;
    of `screen` if given (already captured), else of the pane now."""
    if screen is None:
        screen = await engine.screen(caller, session.id)
    # Drawing takes a good part of a second on a big pane: not on the event loop.
    shot = await asyncio.to_thread(render, screen.ansi, screen.cols, screen.rows, screen.cursor)
    caption = f"{esc(session.name)} · {esc(session.state)} · {time.strftime('%H:%M:%S')}"
    return {"png": base64.b64encode(shot.png).decode("ascii"), "caption": caption}


async def what_html(engine: Engine, caller: Caller, session: Session) -> str:
    summary = await engine.what(caller, session.id)
    text, _cut = cut(summary["summary"], 3500)
    return "🔎 " + esc(text)


async def attach_html(engine: Engine, caller: Caller, session: Session) -> str:
    command = shlex.join(await engine.attach_command(caller, session.id))
    return _("Attach from a terminal:") + f"\n<code>{esc(command)}</code>"


def list_html(sessions: list[Session]) -> str:
    if not sessions:
        return _("No sessions. Start one with /new")
    lines = [f"{STATE_ICONS.get(s.state, '')} <b>{esc(s.name)}</b> <code>{s.id}</code> — {esc(s.state)}"
             for s in sessions]
    out = "\n".join(lines)
    while len(out) > 3800:  # many sessions: keep within one Telegram message
        lines = lines[:-1]
        out = "\n".join(lines) + f"\n… ({len(sessions) - len(lines)} more)"
    return out


def help_html() -> str:
    return "\n".join([
        _("<b>sm</b> — your agents, one topic each."),
        _("Write in a session's topic to send it input; start with ! (or /urgent) to interrupt it."),
        "/new [path] [--worktree] [prompt] — " + _("start a session"),
        "/list — " + _("sessions and their state"),
        "/status [id] — " + _("a session's status"),
        "/screen [id] — " + _("a picture of the session's screen"),
        "/kill [id] — " + _("kill a session"),
        "/open [id] — " + _("how to attach from a terminal"),
        "/cost — " + _("tokens and cost: of the topic's session and its descendants, or of everything today"),
    ])
