"""`sm output --transcript` and `sm what`: what an agent said and is doing."""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import time
from pathlib import Path
from typing import Awaitable, Callable

log = logging.getLogger(__name__)

_TAIL_BYTES = 512 * 1024


def last_assistant_messages(transcript: str | None, count: int = 3) -> list[str]:
    """The last `count` assistant texts of a Claude Code JSONL transcript."""
    if not transcript:
        return []
    path = Path(transcript)
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - _TAIL_BYTES))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    texts: list[str] = []
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("type") != "assistant":
            continue
        content = (record.get("message") or {}).get("content")
        if isinstance(content, str):
            parts = [content]
        else:
            parts = [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]
        text = "\n".join(p for p in parts if p).strip()
        if text:
            texts.append(text)
    return texts[-count:]


def fallback_summary(name: str, state: str, reason: str | None, last: list[str], screen: str) -> str:
    """A deterministic summary: the last assistant message and the current activity."""
    lines = [f"{name} is {state}" + (f" ({reason})" if reason else "") + "."]
    if last:
        message = last[-1]
        if len(message) > 600:
            message = message[:599] + "…"
        lines.append(f"Last message: {message}")
    activity = [ln.strip() for ln in screen.splitlines() if ln.strip()][-5:]
    if activity:
        lines.append("Screen: " + " | ".join(activity))
    return "\n".join(lines)


async def summarize(command: str, context: str, timeout: float) -> str | None:
    """Run the summarizer command with `context` on stdin; None if it can't answer in time."""
    try:
        argv = shlex.split(command)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except (OSError, ValueError) as exc:
        log.info("summarizer unavailable: %s", exc)
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(context.encode()), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        log.info("summarizer took longer than %.0fs", timeout)
        return None
    text = out.decode("utf-8", errors="replace").strip()
    if proc.returncode != 0 or not text:
        return None
    return text


class Summaries:
    """`sm what` without a stampede: one summarizer run per session at a time,
    and its answer reused for `ttl` seconds (the summarizer is a paid model call,
    and an agent looping on `sm what` must not start one per call)."""

    def __init__(self, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, object]] = {}
        self._running: dict[str, asyncio.Future[object]] = {}

    async def get(self, key: str, make: Callable[[], Awaitable[object]]) -> object:
        cached = self._cache.get(key)
        if cached and self._clock() - cached[0] < self.ttl:
            return cached[1]
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            value = await make()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        else:
            future.set_result(value)
            self._cache[key] = (self._clock(), value)
            return value
        finally:
            self._running.pop(key, None)
