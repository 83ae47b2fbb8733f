"""Tokens and cost per session, read incrementally from the agents' transcripts.

Claude Code writes a JSONL transcript per conversation. Each model call's
answer is written as one line per content block, and every one of those lines
repeats the message's `id`, `model` and `usage`: a message is counted once,
by its id. A session's transcripts are every file it ever wrote: the one its
SessionStart hook names now, those it named before each `/clear` (kept in
`transcripts`), and the transcripts of its subagents
(`<transcript without .jsonl>/subagents/*.jsonl`).

Each file is read from the byte offset where the last read stopped (stored,
so a restart reads only what is new), up to its last complete line. Counted
messages are rows in `usage`, so figures survive restarts and `--since` can
count only recent calls.

Cost is tokens times a price table (USD per million tokens) matched by the
model's name; an unknown model shows tokens only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core.store import Store

log = logging.getLogger(__name__)

PRICE_FIELDS = ("input", "output", "cache_write", "cache_read")

# USD per million tokens: the model catalog baked into Claude Code 2.1.330
# (its `pricing_tiers`, 5-minute cache writes), so that sm's figure matches
# the one Claude Code shows. Names match as prefixes at a `-` boundary, the
# longest first: "claude-sonnet-4-5-20250929" is "claude-sonnet-4-5".
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "claude-3-5-haiku": {"input": 0.8, "output": 4, "cache_write": 1, "cache_read": 0.08},
    "claude-haiku-4-5": {"input": 1, "output": 5, "cache_write": 1.25, "cache_read": 0.1},
    "claude-haiku-5-5": {"input": 0.1, "output": 0.5, "cache_write": 0.125, "cache_read": 0.01},
    "claude-3-5-sonnet": {"input": 3, "output": 15, "cache_write": 3.75, "cache_read": 0.3},
    "claude-3-7-sonnet": {"input": 3, "output": 15, "cache_write": 3.75, "cache_read": 0.3},
    "claude-sonnet-4": {"input": 3, "output": 15, "cache_write": 3.75, "cache_read": 0.3},
    "claude-sonnet-5": {"input": 2, "output": 10, "cache_write": 2.5, "cache_read": 0.2},
    "claude-sonnet-5-5": {"input": 2, "output": 10, "cache_write": 2.5, "cache_read": 0.1},
    "claude-opus-4": {"input": 15, "output": 75, "cache_write": 18.75, "cache_read": 1.5},
    "claude-opus-4-5": {"input": 5, "output": 25, "cache_write": 6.25, "cache_read": 0.5},
    "claude-opus-4-6": {"input": 5, "output": 25, "cache_write": 6.25, "cache_read": 0.5},
    "claude-opus-4-7": {"input": 5, "output": 25, "cache_write": 6.25, "cache_read": 0.5},
    "claude-opus-4-8": {"input": 5, "output": 25, "cache_write": 6.25, "cache_read": 0.5},
    "claude-opus-5": {"input": 5, "output": 25, "cache_write": 6.25, "cache_read": 0.5},
    "claude-opus-5-5": {"input": 4, "output": 20, "cache_write": 5, "cache_read": 0.2},
    "claude-fable-5": {"input": 10, "output": 50, "cache_write": 12.5, "cache_read": 1},
    "claude-fable-5-1": {"input": 10, "output": 50, "cache_write": 12.5, "cache_read": 0.25},
    "claude-fable-5-2": {"input": 8, "output": 40, "cache_write": 10, "cache_read": 0.2},
    "claude-mythos-5": {"input": 10, "output": 50, "cache_write": 12.5, "cache_read": 1},
    "claude-mythos-5-1": {"input": 10, "output": 50, "cache_write": 12.5, "cache_read": 0.25},
    "claude-mythos-5-2": {"input": 8, "output": 40, "cache_write": 10, "cache_read": 0.2},
}


@dataclass
class Tokens:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def add(self, other: "Tokens") -> None:
        self.input += other.input
        self.output += other.output
        self.cache_read += other.cache_read
        self.cache_write += other.cache_write

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write


def price_for(model: str, prices: dict[str, dict[str, float]]) -> dict[str, float] | None:
    """The price of `model`: an exact entry, else the longest entry it starts with at a `-`."""
    if model in prices:
        return prices[model]
    best = ""
    for name in prices:
        if model.startswith(name + "-") and len(name) > len(best):
            best = name
    return prices[best] if best else None


def cost_of(model: str, tokens: Tokens, prices: dict[str, dict[str, float]]) -> float | None:
    price = price_for(model, prices)
    if price is None:
        return None
    return (tokens.input * price.get("input", 0) + tokens.output * price.get("output", 0)
            + tokens.cache_read * price.get("cache_read", 0)
            + tokens.cache_write * price.get("cache_write", 0)) / 1_000_000


@dataclass
class Call:
    """One model call as a transcript line records it."""

    message_id: str
    model: str
    tokens: Tokens
    at: float


def _timestamp(value: Any) -> float:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return 0.0


def parse_line(line: bytes) -> Call | None:
    """The model call on one transcript line, if it records one."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    message = entry.get("message")
    if not isinstance(message, dict):
        return None
    usage = message.get("usage")
    message_id = message.get("id")
    if not isinstance(usage, dict) or not isinstance(message_id, str):
        return None

    def n(key: str) -> int:
        value = usage.get(key)
        return value if isinstance(value, int) and value >= 0 else 0

    tokens = Tokens(n("input_tokens"), n("output_tokens"), n("cache_read_input_tokens"),
                    n("cache_creation_input_tokens"))
    return Call(message_id, str(message.get("model") or "unknown"), tokens, _timestamp(entry.get("timestamp")))


def read_new(path: str, offset: int) -> tuple[list[Call], int, int]:
    """The calls written to `path` after `offset`, up to its last complete line.

    Returns (calls, the new offset, bytes read). A file that shrank (rewritten)
    is read again from the start.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < offset:
                offset = 0
            if size == offset:
                return [], offset, 0
            fh.seek(offset)
            data = fh.read(size - offset)
    except OSError:
        return [], offset, 0
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset, len(data)  # a line still being written
    calls = [call for line in data[:end].split(b"\n") if line.strip() and (call := parse_line(line))]
    return calls, offset + end + 1, len(data)


def subagent_transcripts(path: str) -> list[str]:
    """Transcripts of the subagents of the conversation in `path`."""
    folder = Path(path[:-len(".jsonl")] if path.endswith(".jsonl") else path) / "subagents"
    try:
        return sorted(str(p) for p in folder.glob("*.jsonl"))
    except OSError:
        return []


@dataclass
class Spend:
    """What one session (or a sum of them) used: tokens per model, and the cost where known."""

    models: dict[str, Tokens] = field(default_factory=dict)
    reported: bool = False  # the provider records usage where sm can read it

    def add(self, model: str, tokens: Tokens) -> None:
        self.models.setdefault(model, Tokens()).add(tokens)

    def merge(self, other: "Spend") -> None:
        self.reported = self.reported or other.reported
        for model, tokens in other.models.items():
            self.add(model, tokens)

    def tokens(self) -> Tokens:
        out = Tokens()
        for tokens in self.models.values():
            out.add(tokens)
        return out

    def cost(self, prices: dict[str, dict[str, float]]) -> float | None:
        """USD, or None when a model's price is unknown (tokens are shown alone then)."""
        total = 0.0
        for model, tokens in self.models.items():
            if not tokens.total:
                continue  # e.g. Claude Code's "<synthetic>" error lines: free, whatever their name
            cost = cost_of(model, tokens, prices)
            if cost is None:
                return None
            total += cost
        return total

    def public(self, prices: dict[str, dict[str, float]]) -> dict[str, Any]:
        tokens = self.tokens()
        return {"reported": self.reported, "input": tokens.input, "output": tokens.output,
                "cache_read": tokens.cache_read, "cache_write": tokens.cache_write,
                "cost": None if not self.reported else self.cost(prices),
                "models": sorted(self.models)}


class UsageBook:
    """The stored figures, and the reader that keeps them up to date."""

    def __init__(self, store: Store, prices: dict[str, dict[str, float]]) -> None:
        self._store = store
        self.prices = prices
        self._locks: dict[str, asyncio.Lock] = {}
        self.bytes_read = 0  # every byte read from transcripts, since start (for tests and bench)

    async def track(self, session_id: str, path: str | None) -> None:
        """Remember a transcript of a session (they change on /clear; the old ones still count)."""
        if path:
            await self._store.execute(
                "INSERT OR IGNORE INTO transcripts (session_id, path, offset) VALUES (?, ?, 0)",
                (session_id, path))

    async def refresh(self, session_id: str, current: str | None) -> None:
        """Read what the session's transcripts gained since the last read."""
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            await self.track(session_id, current)
            rows = await self._store.fetchall(
                "SELECT path, offset FROM transcripts WHERE session_id = ?", (session_id,))
            known = {row["path"]: row["offset"] for row in rows}
            for path in list(known):
                if "/subagents/" in path:
                    continue
                for sub in await asyncio.to_thread(subagent_transcripts, path):
                    if sub not in known:
                        await self.track(session_id, sub)
                        known[sub] = 0
            for path, offset in known.items():
                calls, new_offset, read = await asyncio.to_thread(read_new, path, offset)
                self.bytes_read += read
                if new_offset == offset and not calls:
                    continue
                await self._record(session_id, path, calls, new_offset)

    async def _record(self, session_id: str, path: str, calls: list[Call], offset: int) -> None:
        # A message's lines arrive together: merge them here (largest of each count), one row each.
        merged: dict[str, Call] = {}
        for call in calls:
            seen = merged.get(call.message_id)
            if seen is None:
                merged[call.message_id] = call
                continue
            t, n = seen.tokens, call.tokens
            seen.tokens = Tokens(max(t.input, n.input), max(t.output, n.output),
                                 max(t.cache_read, n.cache_read), max(t.cache_write, n.cache_write))
        async with self._store.transaction() as tx:
            for call in merged.values():
                # A message's lines repeat its usage; a later line may carry a larger
                # (final) count: keep the largest of each, never a sum.
                await tx.execute(
                    "INSERT INTO usage (session_id, message_id, model, input_tokens, output_tokens,"
                    " cache_read_tokens, cache_write_tokens, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (session_id, message_id) DO UPDATE SET"
                    " input_tokens = max(input_tokens, excluded.input_tokens),"
                    " output_tokens = max(output_tokens, excluded.output_tokens),"
                    " cache_read_tokens = max(cache_read_tokens, excluded.cache_read_tokens),"
                    " cache_write_tokens = max(cache_write_tokens, excluded.cache_write_tokens)",
                    (session_id, call.message_id, call.model, call.tokens.input, call.tokens.output,
                     call.tokens.cache_read, call.tokens.cache_write, call.at))
            await tx.execute("UPDATE transcripts SET offset = ? WHERE session_id = ? AND path = ?",
                             (offset, session_id, path))

    async def spend(self, session_ids: list[str], since: float | None = None) -> dict[str, Spend]:
        """Each session's spend (from the stored figures), optionally only calls at or after `since`."""
        out = {sid: Spend() for sid in session_ids}
        if not session_ids:
            return out
        marks = ", ".join("?" for _ in session_ids)
        for row in await self._store.fetchall(
                f"SELECT DISTINCT session_id FROM transcripts WHERE session_id IN ({marks})", session_ids):
            out[row["session_id"]].reported = True
        where = f"session_id IN ({marks})" + (" AND at >= ?" if since is not None else "")
        params: list[Any] = [*session_ids] + ([since] if since is not None else [])
        for row in await self._store.fetchall(
                "SELECT session_id, model, sum(input_tokens) i, sum(output_tokens) o,"
                " sum(cache_read_tokens) r, sum(cache_write_tokens) w FROM usage"
                f" WHERE {where} GROUP BY session_id, model", params):
            out[row["session_id"]].add(row["model"], Tokens(row["i"], row["o"], row["r"], row["w"]))
        return out
