"""Reading usage from transcripts: a first read of a large transcript, then the
cost of keeping up with one appended message (it must not grow with the file),
and what `sm status` pays for the figures of many sessions: reading every
transcript at each call (as sm did) or the stored figures (read at turn ends).

`.venv/bin/python bench/usage.py`: the engine's reader (core/usage.py) on a real
SQLite store, with transcript lines shaped as Claude Code 2.1.330 writes them
(one line per content block, each repeating the message's id and usage).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import print_table, record, row, stats_ms  # noqa: E402
from core.store import Store  # noqa: E402
from core.usage import DEFAULT_PRICES, UsageBook  # noqa: E402

MESSAGES = 20_000  # two lines each, ~1 KB a line: about a very long day's transcript
SESSIONS = 50  # for the status figures: each with a transcript already read


def line(i: int, block: str) -> str:
    return json.dumps({"type": "assistant", "timestamp": "2026-11-28T23:09:37.642Z", "message": {
        "id": f"msg_{i:08d}", "model": "claude-opus-5-5", "role": "assistant",
        "content": [{"type": block, "text": "x" * 700}],
        "usage": {"input_tokens": 1000, "output_tokens": 200, "cache_read_input_tokens": 4000,
                  "cache_creation_input_tokens": 30}}}) + "\n"


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "sm.db")
        await store.execute(
            "INSERT INTO sessions (id, name, provider, workdir, tmux_session, token_hash, state, state_since,"
            " idle_reminded, created_at, last_activity) VALUES ('abc123', 'a', 'claude', '/', 's', 'h', 'idle',"
            " 0, 0, 0, 0)")
        path = Path(tmp) / "t.jsonl"
        with path.open("w") as fh:
            for i in range(MESSAGES):
                fh.write(line(i, "text") + line(i, "tool_use"))
        size = path.stat().st_size
        book = UsageBook(store, DEFAULT_PRICES)
        started = time.perf_counter()
        await book.refresh("abc123", str(path))
        first = time.perf_counter() - started
        appended, unchanged = [], []
        for i in range(MESSAGES, MESSAGES + 30):
            with path.open("a") as fh:
                fh.write(line(i, "text") + line(i, "tool_use"))
            before = book.bytes_read
            started = time.perf_counter()
            await book.refresh("abc123", str(path))
            appended.append(time.perf_counter() - started)
            assert book.bytes_read - before == len(line(i, "text").encode()) + len(line(i, "tool_use").encode())
            started = time.perf_counter()
            await book.refresh("abc123", str(path))
            unchanged.append(time.perf_counter() - started)
        spend = (await book.spend(["abc123"]))["abc123"].tokens()
        assert spend.input == 1000 * (MESSAGES + 30), spend
        ids = [f"s{i:05d}" for i in range(SESSIONS)]
        for sid in ids:
            await store.execute(
                "INSERT INTO sessions (id, name, provider, workdir, tmux_session, token_hash, state, state_since,"
                " idle_reminded, created_at, last_activity) VALUES (?, ?, 'claude', '/', 's', ?, 'idle',"
                " 0, 0, 0, 0)", (sid, sid, "h" + sid))
            small = Path(tmp) / f"{sid}.jsonl"
            small.write_text("".join(line(i, "text") for i in range(200)))
            await book.refresh(sid, str(small))
        read_each, stored = [], []
        for _ in range(30):
            started = time.perf_counter()
            for sid in ids:
                await book.refresh(sid, None)
            await book.spend(ids)
            read_each.append(time.perf_counter() - started)
            started = time.perf_counter()
            await book.spend(ids)
            stored.append(time.perf_counter() - started)
        await store.close()
    a, u = stats_ms(appended), stats_ms(unchanged)
    r, st = stats_ms(read_each), stats_ms(stored)
    results = {"transcript_mb": round(size / 1e6, 1), "messages": MESSAGES, "first_read_s": round(first, 2),
               "append_ms": a, "unchanged_ms": u, "status_sessions": SESSIONS, "status_read_each_ms": r,
               "status_stored_ms": st}
    print_table("usage reader", [{"what": "first read", "value": f"{first:.2f} s ({size / 1e6:.0f} MB)"},
                                 {"what": "one appended message (p50/p90)", "value": f"{a['p50']} / {a['p90']} ms"},
                                 {"what": "nothing new (p50/p90)", "value": f"{u['p50']} / {u['p90']} ms"},
                                 {"what": f"status figures of {SESSIONS} sessions, reading each (p50/p90)",
                                  "value": f"{r['p50']} / {r['p90']} ms"},
                                 {"what": f"status figures of {SESSIONS} sessions, stored (p50/p90)",
                                  "value": f"{st['p50']} / {st['p90']} ms"}],
                ["what", "value"])
    record("usage", results, [
        row(f"usage: first read of a {size / 1e6:.0f} MB transcript ({MESSAGES} messages)", "-", f"{first:.2f} s", None),
        row("usage: refresh after one appended message (p50 / p90)", "-", f"{a['p50']} / {a['p90']} ms (n=30)", None),
        row("usage: refresh with nothing new (p50 / p90)", "-", f"{u['p50']} / {u['p90']} ms (n=30)", None),
        row(f"usage: status figures of {SESSIONS} sessions, each transcript read (before) (p50 / p90)", "-",
            f"{r['p50']} / {r['p90']} ms (n=30)", None),
        row(f"usage: status figures of {SESSIONS} sessions, stored, read at turn ends (p50 / p90)", "-",
            f"{st['p50']} / {st['p90']} ms (n=30)", None),
    ])


if __name__ == "__main__":
    asyncio.run(main())
