"""Durations as people read them ("42s", "5m", "1h07m"); shared by the CLI and the bot.

No imports beyond the standard library's `time`: the CLI imports this on
every call.
"""

from __future__ import annotations

import time


def ago(timestamp: float | None) -> str:
    """How long ago `timestamp` (epoch seconds) was; "-" when there is none."""
    if not timestamp:
        return "-"
    seconds = max(0, int(time.time() - timestamp))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
