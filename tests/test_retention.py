"""Retention: history older than SM_RETENTION_DAYS goes at start and daily; the rest stays."""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from bot.telegram import retention as telegram_door
from conftest import Server, wait_for
from core.retention import Retention
from core.store import Store, package_migrations
from telegram_harness import CHAT, ThreadedTelegram

DAY = 24 * 3600
NOW = time.time()
OLD = NOW - 20 * DAY      # beyond the default 14 days
RECENT = NOW - 1 * DAY


async def seed(db: Path) -> None:
    """A database as weeks of use leave it: old and recent history, the Telegram door's rows too."""
    store = await Store.open(db)
    await store.migrate("telegram", package_migrations("bot.telegram"))

    async def session(sid: str, state: str, since: float, parent: str | None = None) -> None:
        await store.execute(
            "INSERT INTO sessions (id, name, parent_id, provider, workdir, tmux_session, pane_id, token_hash,"
            " state, state_since, idle_reminded, created_at, last_activity, state_kind)"
            " VALUES (?, ?, ?, 'shell', '/', ?, '%999', ?, ?, ?, 0, ?, ?, ?)",
            (sid, f"s{sid}", parent, f"sm-{sid}", f"h{sid}", state, since, since - 60, since,
             "killed" if state == "dead" else None))

    async def message(target: str, status: str, at: float) -> None:
        await store.execute(
            "INSERT INTO messages (target_id, sender_label, mode, body, status, created_at, delivered_at)"
            " VALUES (?, 'owner', 'sequential', ?, ?, ?, ?)",
            (target, f"{status} {target} {at}", status, at, at if status == "delivered" else None))

    async def outbox(session_id: str, status: str, at: float) -> None:
        await store.execute(
            "INSERT INTO outbox (chat_id, session_id, kind, payload, status, created_at, sent_at)"
            " VALUES (?, ?, 'text', '{}', ?, ?, ?)", (CHAT, session_id, status, at, at if status == "sent" else None))

    await session("aaaaa1", "dead", OLD)                   # long dead: goes, with all of its rows
    await message("aaaaa1", "delivered", OLD)
    await message("aaaaa1", "failed", OLD)
    await store.execute("INSERT INTO waits (waiter_id, target_id, created_at, deadline, fired_at, outcome)"
                        " VALUES ('aaaaa1', 'aaaaa1', ?, ?, ?, 'idle')", (OLD, OLD, OLD))
    await store.execute("INSERT INTO topics (session_id, chat_id, thread_id, name) VALUES ('aaaaa1', ?, 7, 't')",
                        (CHAT,))
    await store.execute("INSERT INTO mirrored (chat_id, message_id, session_id) VALUES (?, 70, 'aaaaa1')", (CHAT,))
    await session("bbbbb2", "dead", OLD)                   # long dead, but the parent of one dead yesterday
    await session("ccccc3", "dead", RECENT, parent="bbbbb2")
    await message("ccccc3", "delivered", OLD)              # an old delivered message to a kept session: goes
    await message("ccccc3", "delivered", RECENT)           # a recent one: stays
    await message("ccccc3", "failed", OLD)                 # undelivered history of a kept session: stays
    await outbox("ccccc3", "sent", OLD)                    # goes
    await outbox("ccccc3", "sent", RECENT)                 # stays
    await outbox("ccccc3", "pending", OLD)                 # not sent yet: stays
    for queued, session_id, at in ((1, "aaaaa1", RECENT),  # waits for a reaction, its session gone: goes
                                   (2, "ccccc3", OLD),     # never settled, for two weeks: goes
                                   (3, "ccccc3", RECENT)):  # stays
        await store.execute("INSERT INTO acks (queued_id, chat_id, message_id, session_id, created_at)"
                            " VALUES (?, ?, ?, ?, ?)", (queued, CHAT, 100 + queued, session_id, at))
    await store.close()


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def telegram() -> Iterator[ThreadedTelegram]:
    t = ThreadedTelegram()
    yield t
    t.close()


def test_at_start_old_history_is_pruned_and_everything_recent_or_still_needed_stays(
        tmp_path: Path, telegram: ThreadedTelegram) -> None:
    server = Server(tmp_path, telegram.env())
    server.state_dir.mkdir(mode=0o700)
    db = server.state_dir / "sm.db"
    asyncio.run(seed(db))
    files = server.state_dir / "messages"
    files.mkdir(mode=0o700)
    (files / "message-1-old.txt").write_text("old")
    os.utime(files / "message-1-old.txt", (OLD, OLD))
    (files / "message-2-new.txt").write_text("new")
    try:
        server.start()
        wait_for(lambda: rows(db, "SELECT id FROM sessions WHERE id = 'aaaaa1'") == [], 20,
                 message="the long-dead session to be pruned")
        wait_for(lambda: len(rows(db, "SELECT id FROM outbox")) == 2, 20, message="the old sent outbox row to go")
        assert rows(db, "SELECT id FROM sessions ORDER BY id") == [("bbbbb2",), ("ccccc3",)]
        assert rows(db, "SELECT target_id, status, delivered_at IS NULL FROM messages ORDER BY id") == [
            ("ccccc3", "delivered", 0), ("ccccc3", "failed", 1)]
        assert rows(db, "SELECT COUNT(*) FROM waits") == [(0,)]
        assert rows(db, "SELECT session_id FROM topics") == []
        assert rows(db, "SELECT session_id FROM mirrored") == []
        assert rows(db, "SELECT queued_id FROM acks") == [(3,)]
        assert sorted(rows(db, "SELECT status, sent_at IS NULL FROM outbox")) == [("pending", 1), ("sent", 0)]
        assert sorted(p.name for p in files.iterdir()) == ["message-2-new.txt"]
        log = server.log.read_text()
        assert "pruned history older than 14 days" in log and "Traceback" not in log
        # the failed message of a kept session is still there for sm status --all
        assert len(server.json("status", "--all")["undelivered"]) == 1
    finally:
        server.close()


def test_headless_a_dead_session_a_door_still_refers_to_is_kept_for_the_doors_next_run(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.state_dir.mkdir(mode=0o700)
    db = server.state_dir / "sm.db"
    asyncio.run(seed(db))
    try:
        server.start()
        wait_for(lambda: "pruned history" in server.log.read_text(), 20, message="a prune run")
        # aaaaa1 still has a topic, and the Telegram door (which would remove it) is not running
        assert rows(db, "SELECT id FROM sessions ORDER BY id") == [("aaaaa1",), ("bbbbb2",), ("ccccc3",)]
        assert len(rows(db, "SELECT id FROM outbox")) == 3
        assert rows(db, "SELECT COUNT(*) FROM messages WHERE status = 'delivered'") == [(1,)]  # the recent one
    finally:
        server.close()


def test_the_prune_runs_again_each_period(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = tmp_path / "sm.db"
        await seed(db)
        store = await Store.open(db)
        retention = Retention(store, 14, tmp_path / "messages", every=0.05)
        retention.add("telegram", functools.partial(telegram_door.prune, store))
        retention.start()
        try:
            async def count(sql: str) -> int:
                return (await store.fetchone(sql))[0]  # type: ignore[index]

            deadline = time.monotonic() + 10
            while await count("SELECT COUNT(*) FROM sessions WHERE id = 'aaaaa1'") and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await store.execute("INSERT INTO messages (target_id, sender_label, mode, body, status, created_at,"
                                " delivered_at) VALUES ('ccccc3', 'owner', 'sequential', 'x', 'delivered', ?, ?)",
                                (OLD, OLD))
            while await count("SELECT COUNT(*) FROM messages WHERE body = 'x'") and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert await count("SELECT COUNT(*) FROM messages WHERE body = 'x'") == 0
        finally:
            await retention.stop()
            await store.close()

    asyncio.run(scenario())


def test_status_shows_recent_undelivered_messages_and_all_of_them_with_all(tmp_path: Path) -> None:
    server = Server(tmp_path, {"SM_STATUS_UNDELIVERED_WINDOW": str(2 * DAY)})
    server.state_dir.mkdir(mode=0o700)
    asyncio.run(seed(server.state_dir / "sm.db"))   # failed: one to aaaaa1 20 days ago, one to ccccc3 20 days ago

    async def fail_recently() -> None:
        store = await Store.open(server.state_dir / "sm.db")
        await store.execute("INSERT INTO messages (target_id, sender_label, mode, body, status, error, created_at)"
                            " VALUES ('ccccc3', 'owner', 'sequential', 'hi', 'failed', 'session was killed', ?)",
                            (RECENT,))
        await store.close()

    asyncio.run(fail_recently())
    try:
        server.start()
        text = server.ok("status")
        assert "undelivered (the last 48 h):" in text
        assert text.count("[failed]") == 1 and "session was killed" in text
        assert "2 older undelivered message(s): sm status --all" in text
        everything = server.ok("status", "--all")
        assert everything.count("[failed]") == 3 and "older undelivered" not in everything
        assert len(server.json("status")["undelivered"]) == 1
    finally:
        server.close()
