"""Text for Telegram: HTML-escaped, within Telegram's limits."""

from __future__ import annotations

import html
import re

_TAG = re.compile(r"<[^>]*>")

# A mirrored text longer than this is cut with "…" and sent whole as a .txt file.
PREVIEW_CHARS = 1500
STATE_ICONS = {"starting": "⏳", "idle": "💤", "busy": "⚙️", "waiting": "✋", "limited": "⏸", "errored": "⚠️",
               "lost": "🔌", "dead": "💀", "unreachable": "📡"}


def esc(text: str) -> str:
    return html.escape(text, quote=False)


def cut(text: str, limit: int = PREVIEW_CHARS) -> tuple[str, bool]:
    """`text` within `limit` characters, and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return text[: limit - 1].rstrip() + "…", True


def pre(text: str, limit: int = 3500) -> str:
    """Terminal text: escaped inside <pre>, the tail kept if it is long."""
    if len(text) > limit:
        text = "…" + text[-(limit - 1):]
    return f"<pre>{esc(text)}</pre>"


def plain(markup: str) -> str:
    """The text of Telegram HTML, without its tags."""
    return html.unescape(_TAG.sub("", markup))
