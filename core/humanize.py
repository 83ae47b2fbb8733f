"""Durations, token counts and costs as people read them ("1h07m", "12.3k", "$0.42");
shared by the CLI and the bot.

No imports beyond the standard library: the CLI imports this on every call.
"""

from __future__ import annotations

import json
import time
from typing import Any


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


def count(n: int) -> str:
    """A token count: 950, 12.3k, 4.56M."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k".replace(".0k", "k")
    return f"{n / 1_000_000:.2f}M"


def usd(amount: float) -> str:
    return f"${amount:.4f}" if amount < 0.01 else f"${amount:.2f}"


def spend(usage: dict | None) -> str:
    """One line for a session's (or a swarm's) usage, as `Spend.public()` gives it."""
    if not usage or not usage.get("reported"):
        return "not reported"
    line = (f"{count(usage['input'])} in · {count(usage['output'])} out · "
            f"{count(usage['cache_read'])} cache read · {count(usage['cache_write'])} cache write")
    return line + (f" · {usd(usage['cost'])}" if usage.get("cost") is not None else " · price unknown")


def cost_cell(usage: dict | None) -> str:
    """The short form for a table column: the cost, else the tokens, else '-'."""
    if not usage or not usage.get("reported"):
        return "-"
    if usage.get("cost") is not None:
        return usd(usage["cost"])
    total = usage["input"] + usage["output"] + usage["cache_read"] + usage["cache_write"]
    return f"{count(total)} tok"


def duration(text: str) -> float:
    """Seconds in "90s", "30m", "1h", "2d" (a bare number is seconds); ValueError otherwise."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    factor = units.get(text[-1:], 0)
    number = text[:-1] if factor else text
    seconds = float(number) * (factor or 1)
    if not seconds > 0 or seconds != seconds:
        raise ValueError(f"not a duration: {text!r}")
    return seconds


def describe_input(tool_input: Any) -> str:
    """The part of a tool's input a person reads or decides on: the command, the file, the question."""
    if isinstance(tool_input, dict):
        if "command" in tool_input:
            return str(tool_input["command"])
        if "questions" in tool_input:
            try:
                return str(tool_input["questions"][0]["question"])
            except (IndexError, KeyError, TypeError):
                pass
        if "plan" in tool_input:
            return str(tool_input["plan"])
        path = tool_input.get("file_path") or tool_input.get("notebook_path")
        if path:
            return str(path)
        for key in ("pattern", "url", "query", "description", "prompt"):
            if tool_input.get(key):
                return str(tool_input[key])
        return json.dumps(tool_input, ensure_ascii=False)
    return str(tool_input or "")
