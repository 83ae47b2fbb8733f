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

Codex writes a rollout (JSONL under `$CODEX_HOME/sessions/YYYY/MM/DD/`) per
thread. Each answered model request is a `token_usage_record` line with its
`response_id` (counted once, as a Claude message id) and `usage`; the model is
the one its turn ran with (the `turn_context` line before it). OpenAI's
`input_tokens` include the cached ones: sm counts `input` as the uncached
part, and the cached part as cache reads, as Claude's figures are split. sm
learns a Codex session's rollout from Codex's `notify` program, run at the end
of each turn with the thread's id; it finds the thread's file in the agent's
CODEX_HOME (core/lifecycle.py, hooks/entry.py).

Cost is tokens times a price table (USD per million tokens) matched by the
model's name; an unknown model shows tokens only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

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
    # OpenAI's list prices (cached input as cache_read), for the models whose
    # price was published; Codex 0.171.0's own newer models (gpt-5.5, gpt-6-*)
    # have no public price sm knows: give theirs with SM_PRICES or `prices:`.
    "gpt-5": {"input": 1.25, "output": 10, "cache_read": 0.125},
    "gpt-5-codex": {"input": 1.25, "output": 10, "cache_read": 0.125},
    "gpt-5-mini": {"input": 0.25, "output": 2, "cache_read": 0.025},
    "gpt-5-nano": {"input": 0.05, "output": 0.4, "cache_read": 0.005},
    "gpt-5.1": {"input": 1.25, "output": 10, "cache_read": 0.125},
    "gpt-5.1-codex": {"input": 1.25, "output": 10, "cache_read": 0.125},
    "gpt-4.1": {"input": 2, "output": 8, "cache_read": 0.5},
    "gpt-4.1-mini": {"input": 0.4, "output": 1.6, "cache_read": 0.1},
    "gpt-4.1-nano": {"input": 0.1, "output": 0.4, "cache_read": 0.025},
    "gpt-4o": {"input": 2.5, "output": 10, "cache_read": 1.25},
    "gpt-4o-mini": {"input": 0.15, "output": 0.6, "cache_read": 0.075},
    "o3": {"input": 2, "output": 8, "cache_read": 0.5},
    "o4-mini": {"input": 1.1, "output": 4.4, "cache_read": 0.275},
}

# Anthropic's names nest versions ("claude-sonnet-4-5-20250929" is priced as
# "claude-sonnet-4"): they match a listed name followed by any `-` suffix.
# Other names match exactly or with a date suffix only, since OpenAI's
# suffixes name other products at other prices (gpt-5-pro, gpt-5-mini).
_NESTED_NAMES = ("claude-",)
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


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
    """The price of `model`: an exact entry, else the longest entry it starts with at a `-`
    (for a name outside Anthropic's scheme, only when the rest is a date)."""
    if model in prices:
        return prices[model]
    best = ""
    for name in prices:
        if not model.startswith(name + "-") or len(name) <= len(best):
            continue
        if name.startswith(_NESTED_NAMES) or _DATE_SUFFIX.fullmatch(model[len(name):]):
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


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and value >= 0 else 0


def parse_line(line: bytes, model: str = "") -> Call | str | None:
    """What one transcript line records: a model call, a model (a Codex turn's), or nothing.

    `model` is the model in force (Codex's rollout names it once per turn)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    payload = entry.get("payload")
    if isinstance(payload, dict):  # a Codex rollout line
        match entry.get("type"):
            case "turn_context" | "session_meta" if isinstance(payload.get("model"), str):
                return payload["model"]
            case "token_usage_record" if isinstance(payload.get("usage"), dict) and payload.get("response_id"):
                usage = payload["usage"]
                cached = _count(usage, "cached_input_tokens")
                tokens = Tokens(max(0, _count(usage, "input_tokens") - cached), _count(usage, "output_tokens"),
                                cached, _count(usage, "cache_write_input_tokens"))
                return Call(str(payload["response_id"]), model or "unknown", tokens,
                            _timestamp(entry.get("timestamp")))
        return None
    message = entry.get("message")
    if not isinstance(message, dict):
        return None
    usage = message.get("usage")
    message_id = message.get("id")
    if not isinstance(usage, dict) or not isinstance(message_id, str):
        return None
    tokens = Tokens(_count(usage, "input_tokens"), _count(usage, "output_tokens"),
                    _count(usage, "cache_read_input_tokens"), _count(usage, "cache_creation_input_tokens"))
    return Call(message_id, str(message.get("model") or "unknown"), tokens, _timestamp(entry.get("timestamp")))


@dataclass
class Chunk:
    """What a read of a transcript found."""

    calls: list[Call]
    offset: int  # where the next read starts: after the last complete line
    read: int  # bytes read
    model: str  # the model in force at `offset` (Codex names it once per turn)


def read_new(path: str, offset: int, model: str = "") -> Chunk:
    """The calls written to `path` after `offset`, up to its last complete line.

    A file that shrank (rewritten) is read again from the start.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < offset:
                offset, model = 0, ""
            if size == offset:
                return Chunk([], offset, 0, model)
            fh.seek(offset)
            data = fh.read(size - offset)
    except OSError:
        return Chunk([], offset, 0, model)
    end = data.rfind(b"\n")
    if end < 0:
        return Chunk([], offset, len(data), model)  # a line still being written
    calls = []
    for line in data[:end].split(b"\n"):
        if not line.strip():
            continue
        found = parse_line(line, model)
        if isinstance(found, str):
            model = found
        elif found is not None:
            calls.append(found)
    return Chunk(calls, offset + end + 1, len(data), model)


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


# Claude Code writes a turn's last transcript lines around its Stop hook, at
# times just after it: a turn's end is read at once, then again after these
# delays (seconds), each read costing only what is new.
SETTLE_READS = (0.5, 2.0, 8.0)


class UsageBook:
    """The stored figures, and the reader that keeps them up to date."""

    def __init__(self, store: Store, prices: dict[str, dict[str, float]],
                 settle: tuple[float, ...] = SETTLE_READS) -> None:
        self._store = store
        self.prices = prices
        self._settle = settle
        self._locks: dict[str, asyncio.Lock] = {}
        self._later: set[asyncio.Task[None]] = set()
        self.bytes_read = 0  # every byte read from transcripts, since start (for tests and bench)

    async def after_turn(self, session_id: str, path: str | None, grew: Callable[[], None]) -> None:
        """A turn ended: read its usage now and, for the lines written after its end, a
        little later; `grew()` is called after each read that found new calls."""
        if await self.refresh(session_id, path):
            grew()
        task = asyncio.get_running_loop().create_task(self._read_later(session_id, path, grew),
                                                      name=f"usage-after-turn-{session_id}")
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _read_later(self, session_id: str, path: str | None, grew: Callable[[], None]) -> None:
        waited = 0.0
        for delay in self._settle:
            await asyncio.sleep(delay)
            waited += delay
            try:
                if await self.refresh(session_id, path):
                    log.info("usage of session %s: calls found %g s after its turn's end", session_id, waited)
                    grew()
            except Exception:
                log.exception("reading the usage of session %s failed", session_id)

    async def stop(self) -> None:
        for task in list(self._later):
            task.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)

    async def track(self, session_id: str, path: str | None) -> None:
        """Remember a transcript of a session (they change on /clear; the old ones still count)."""
        if path:
            await self._store.execute(
                "INSERT OR IGNORE INTO transcripts (session_id, path, offset) VALUES (?, ?, 0)",
                (session_id, path))

    async def refresh(self, session_id: str, current: str | None) -> bool:
        """Read what the session's transcripts gained since the last read; whether any call was new."""
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        changed = False
        async with lock:
            await self.track(session_id, current)
            rows = await self._store.fetchall(
                "SELECT path, offset, model FROM transcripts WHERE session_id = ?", (session_id,))
            known = {row["path"]: (row["offset"], row["model"] or "") for row in rows}
            for path in list(known):
                if "/subagents/" in path:
                    continue
                for sub in await asyncio.to_thread(subagent_transcripts, path):
                    if sub not in known:
                        await self.track(session_id, sub)
                        known[sub] = (0, "")
            for path, (offset, model) in known.items():
                chunk = await asyncio.to_thread(read_new, path, offset, model)
                self.bytes_read += chunk.read
                if chunk.offset == offset and not chunk.calls:
                    continue
                await self._record(session_id, path, chunk)
                changed = changed or bool(chunk.calls)
        return changed

    async def _record(self, session_id: str, path: str, chunk: Chunk) -> None:
        calls = chunk.calls
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
            await tx.execute("UPDATE transcripts SET offset = ?, model = ? WHERE session_id = ? AND path = ?",
                             (chunk.offset, chunk.model, session_id, path))

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
