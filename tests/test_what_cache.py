"""`sm what` runs the (paid) summarizer once per session at a time, and reuses its answer briefly."""

from __future__ import annotations

import asyncio

import pytest

from core.what import Summaries
from telegram_harness import until


async def test_concurrent_asks_share_one_run_and_the_answer_is_reused() -> None:
    now = [0.0]
    cache = Summaries(ttl=10, clock=lambda: now[0])
    runs = 0
    gate = asyncio.Event()

    async def summarise() -> object:
        nonlocal runs
        runs += 1
        await gate.wait()
        return f"summary {runs}"

    asks = [asyncio.ensure_future(cache.get("a1", summarise)) for _ in range(15)]
    await until(lambda: runs == 1, message="the first ask to start summarising")  # all 15 are asking
    gate.set()
    assert await asyncio.gather(*asks) == ["summary 1"] * 15
    assert runs == 1
    now[0] = 9.9
    assert await cache.get("a1", summarise) == "summary 1"
    now[0] = 10.1
    assert await cache.get("a1", summarise) == "summary 2"
    assert await cache.get("b2", summarise) == "summary 3"  # per session


async def test_a_failed_run_is_not_cached() -> None:
    cache = Summaries(ttl=10, clock=lambda: 0.0)

    async def broken() -> object:
        raise RuntimeError("summarizer crashed")

    with pytest.raises(RuntimeError):
        await cache.get("a1", broken)

    async def fine() -> object:
        return "ok"

    assert await cache.get("a1", fine) == "ok"
