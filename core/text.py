"""Making message text safe to put into a pane, verbatim."""

from __future__ import annotations

import re

from core.errors import Invalid, TooLarge
from core.tmux import ANSI_RE

# C0 controls other than tab and newline, DEL, and C1 controls.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def neutralise(text: str) -> str:
    """Remove escape sequences and control bytes; keep newlines and tabs.

    Carriage returns become newlines, so a CRLF message arrives as lines, not as
    Enter presses.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = ANSI_RE.sub("", text)
    return _CONTROL_RE.sub("", text)


def check_text(text: str, limit: int) -> str:
    if len(text.encode("utf-8")) > limit:
        raise TooLarge(
            f"message is {len(text.encode('utf-8'))} bytes; the limit is {limit} (SM_MAX_MESSAGE_BYTES)"
        )
    cleaned = neutralise(text)
    if not cleaned.strip():
        raise Invalid("message is empty")
    return cleaned
