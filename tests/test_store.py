"""The SQLite store on a real file: migrations, WAL, permissions, and refusing the future."""

from __future__ import annotations

import re
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import SM_BOT, Server
from core.store import Store, StoreError, migrations, schema_version

TABLES = {"sessions", "messages", "waits"}


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if not row[0].startswith("sqlite_")}


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def build_by_hand(path: Path, up_to: int) -> None:
    """A database as an older sm left it: migrations 1..up_to applied, nothing else."""
    db = sqlite3.connect(path, isolation_level=None)
    for version, sql in migrations():
        if version <= up_to:
            db.executescript(sql)
            db.execute(f"PRAGMA user_version = {version}")
    db.close()


async def test_fresh_database_gets_every_migration_in_wal_mode_readable_only_by_owner(tmp_path) -> None:
    path = tmp_path / "state" / "sm.db"
    store = await Store.open(path)
    try:
        assert (await store.fetchone("PRAGMA journal_mode"))[0] == "wal"
        assert (await store.fetchone("PRAGMA user_version"))[0] == schema_version()
        await store.execute(
            "INSERT INTO sessions (id, name, provider, workdir, tmux_session, token_hash, state,"
            " state_since, created_at, last_activity) VALUES ('abc123', 'w', 'shell', '/', 't',"
            " 'h', 'idle', 0, 0, 0)"
        )
        # Every file that holds rows (the WAL too) is private, not just the main file.
        for name in ("sm.db", "sm.db-wal", "sm.db-shm"):
            assert mode(path.parent / name) == 0o600, name
    finally:
        await store.close()
    assert TABLES <= tables(path)
    assert user_version(path) == schema_version()
    with sqlite3.connect(path) as db:  # WAL is a property of the file, not the connection
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_migrations_are_numbered_one_up_without_gaps() -> None:
    versions = [v for v, _ in migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert schema_version() == versions[-1]


async def test_reopening_an_existing_database_tightens_its_permissions(tmp_path) -> None:
    path = tmp_path / "sm.db"
    build_by_hand(path, schema_version())
    path.chmod(0o644)
    store = await Store.open(path)
    await store.close()
    assert mode(path) == 0o600


async def test_database_at_version_zero_is_migrated_to_the_latest(tmp_path) -> None:
    path = tmp_path / "sm.db"
    with sqlite3.connect(path) as db:  # a file that exists but has no schema yet
        db.execute("CREATE TABLE unrelated (x)")
    assert user_version(path) == 0

    store = await Store.open(path)
    await store.close()

    assert TABLES <= tables(path)
    assert "unrelated" in tables(path)
    assert user_version(path) == schema_version()


async def test_rows_in_an_older_database_survive_the_migration(tmp_path) -> None:
    path = tmp_path / "sm.db"
    build_by_hand(path, 1)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO sessions (id, name, provider, workdir, tmux_session, token_hash, state,"
            " state_since, created_at, last_activity) VALUES ('a1b2c3', 'old-timer', 'claude',"
            " '/src', 'sm-a1b2c3', 'hash', 'idle', 1, 1, 1)"
        )
        db.execute(
            "INSERT INTO messages (target_id, sender_label, mode, body, created_at)"
            " VALUES ('a1b2c3', 'owner', 'sequential', 'still here', 2)"
        )

    store = await Store.open(path)
    try:
        session = await store.fetchone("SELECT name, provider, state FROM sessions WHERE id = 'a1b2c3'")
        message = await store.fetchone("SELECT body, status FROM messages WHERE target_id = 'a1b2c3'")
        version = (await store.fetchone("PRAGMA user_version"))[0]
    finally:
        await store.close()
    assert tuple(session) == ("old-timer", "claude", "idle")
    assert tuple(message) == ("still here", "queued")
    assert version == schema_version()


async def test_opening_twice_applies_nothing_twice(tmp_path) -> None:
    path = tmp_path / "sm.db"
    for _ in range(2):
        store = await Store.open(path)
        await store.close()
    assert user_version(path) == schema_version()


async def test_newer_database_is_refused_with_a_clear_message(tmp_path) -> None:
    path = tmp_path / "sm.db"
    build_by_hand(path, schema_version())
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {schema_version() + 1}")

    with pytest.raises(StoreError) as refused:
        await Store.open(path)

    message = str(refused.value)
    assert "newer" in message
    assert str(path) in message
    assert "upgrade sm" in message and "SM_STATE_DIR" in message  # what to do about it
    assert user_version(path) == schema_version() + 1  # left exactly as it was


def test_sm_bot_refuses_a_newer_database_in_one_line_without_traceback(tmp_path) -> None:
    server = Server(tmp_path)
    server.state_dir.mkdir(mode=0o700)
    db = server.state_dir / "sm.db"
    build_by_hand(db, schema_version())
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {schema_version() + 1}")
    try:
        result = subprocess.run([SM_BOT], env=server.env, cwd=tmp_path, capture_output=True,
                                text=True, timeout=30)
    finally:
        server.close()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sm-bot: ") and "newer" in lines[0] and "upgrade sm" in lines[0]
    assert not server.sock_path.exists()


def test_every_table_in_the_migrations_says_what_it_is_for() -> None:
    lines = (Path(__file__).resolve().parent.parent / "core" / "migrations.sql").read_text().splitlines()
    seen = 0
    for i, line in enumerate(lines):
        if re.match(r"\s*CREATE TABLE", line, re.IGNORECASE):
            seen += 1
            above = lines[i - 1].strip() if i else ""
            assert above.startswith("--"), f"no comment above {line.strip()!r}"
    assert seen >= len(TABLES)
