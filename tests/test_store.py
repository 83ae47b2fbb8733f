"""The SQLite store on a real file: migrations, WAL, permissions, and refusing the future."""

from __future__ import annotations

import re
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, SM_BOT, Server
from core.store import CORE, Store, StoreError, migrations, package_migrations, read_migrations, schema_version

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


@pytest.mark.parametrize("owner_file", ["core/migrations.sql", "bot/telegram/migrations.sql"])
def test_every_table_in_the_migrations_says_what_it_is_for(owner_file: str) -> None:
    lines = (ROOT / owner_file).read_text().splitlines()
    seen = 0
    for i, line in enumerate(lines):
        if re.match(r"\s*CREATE TABLE", line, re.IGNORECASE):
            seen += 1
            above = lines[i - 1].strip() if i else ""
            assert above.startswith("--"), f"no comment above {line.strip()!r}"
    assert seen >= 3


# -- per-owner migrations ------------------------------------------------------------

TELEGRAM = package_migrations("bot.telegram")
TELEGRAM_TABLES = {"topics", "outbox", "mirrored", "permission_prompts"}
# The whole schema as it was when every table was the engine's (one user_version, three migrations).
BEFORE_OWNERS = ROOT / "tests" / "fixtures" / "schema-before-per-owner-migrations.sql"


def versions(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT owner, version FROM schema_versions").fetchall())


async def test_the_engines_tables_hold_nothing_of_telegram(tmp_path) -> None:
    path = tmp_path / "sm.db"
    store = await Store.open(path)
    await store.close()
    assert not TELEGRAM_TABLES & tables(path)
    assert versions(path) == {CORE: schema_version()}


async def test_a_door_migrates_its_own_tables_once(tmp_path) -> None:
    path = tmp_path / "sm.db"
    store = await Store.open(path)
    try:
        assert await store.migrate("telegram", TELEGRAM) == TELEGRAM[-1][0]
        await store.execute("INSERT INTO outbox (chat_id, kind, payload, created_at) VALUES (1, 'text', '{}', 0)")
        assert await store.migrate("telegram", TELEGRAM) == TELEGRAM[-1][0]  # nothing applied twice
        assert (await store.fetchone("SELECT count(*) FROM outbox"))[0] == 1
        assert await store.version("telegram") == TELEGRAM[-1][0]
        assert await store.version(CORE) == schema_version()
    finally:
        await store.close()
    assert TELEGRAM_TABLES <= tables(path)
    assert user_version(path) == schema_version()  # still written, for an older sm


async def test_a_newer_doors_tables_are_refused_and_left_alone(tmp_path) -> None:
    path = tmp_path / "sm.db"
    store = await Store.open(path)
    try:
        await store.migrate("telegram", TELEGRAM)
        later = TELEGRAM + [(TELEGRAM[-1][0] + 1, "-- migration 99: a future table\nCREATE TABLE future (x);")]
        await store.migrate("telegram", later)
        with pytest.raises(StoreError, match="telegram schema version .* newer"):
            await store.migrate("telegram", TELEGRAM)
    finally:
        await store.close()


async def test_a_database_from_before_per_owner_migrations_is_migrated_in_place(tmp_path) -> None:
    """Today's schema, committed as a fixture: every row survives and both owners end at their latest."""
    path = tmp_path / "sm.db"
    db = sqlite3.connect(path, isolation_level=None)
    old = read_migrations(BEFORE_OWNERS.read_text())
    for version, sql in old:
        db.executescript(sql)
        db.execute(f"PRAGMA user_version = {version}")
    db.executescript("""
        INSERT INTO sessions (id, name, provider, workdir, tmux_session, token_hash, state, state_since,
                              created_at, last_activity)
            VALUES ('a1b2c3', 'old-timer', 'claude', '/src', 'sm-a1b2c3', 'hash', 'idle', 1, 1, 1);
        INSERT INTO messages (target_id, sender_label, mode, body, created_at)
            VALUES ('a1b2c3', 'owner', 'sequential', 'still here', 2);
        INSERT INTO topics (session_id, chat_id, thread_id, name, card_message_id)
            VALUES ('a1b2c3', -100123, 77, 'old-timer · a1b2c3', 78);
        INSERT INTO outbox (chat_id, session_id, kind, payload, created_at)
            VALUES (-100123, 'a1b2c3', 'text', '{"html": "queued before the upgrade"}', 3);
        INSERT INTO mirrored (chat_id, message_id, session_id) VALUES (-100123, 79, 'a1b2c3');
        INSERT INTO locks (workspace, holder_id, reason, acquired_at, renewed_at)
            VALUES ('/src', 'a1b2c3', 'refactoring', 4, 4);
    """)
    db.close()
    assert user_version(path) == old[-1][0] == 3

    store = await Store.open(path)
    try:
        await store.migrate("telegram", TELEGRAM)
        session = await store.fetchone("SELECT name, state FROM sessions WHERE id = 'a1b2c3'")
        message = await store.fetchone("SELECT body, status FROM messages")
        topic = await store.fetchone("SELECT thread_id, card_message_id FROM topics WHERE session_id = 'a1b2c3'")
        item = await store.fetchone("SELECT payload, status FROM outbox")
        mirrored = await store.fetchone("SELECT session_id FROM mirrored WHERE message_id = 79")
        lock = await store.fetchone("SELECT holder_id, reason FROM locks")
        await store.execute("INSERT INTO permission_prompts (request_id, chat_id, session_id, item_id, tool,"
                            " created_at) VALUES (5, -100123, 'a1b2c3', 1, 'Bash', 5)")
    finally:
        await store.close()
    assert tuple(session) == ("old-timer", "idle")
    assert tuple(message) == ("still here", "queued")
    assert tuple(topic) == (77, 78)
    assert tuple(item) == ('{"html": "queued before the upgrade"}', "pending")
    assert tuple(mirrored) == ("a1b2c3",)
    assert tuple(lock) == ("a1b2c3", "refactoring")
    assert versions(path) == {CORE: schema_version(), "telegram": TELEGRAM[-1][0]}

    store = await Store.open(path)  # and opening it again changes nothing
    try:
        await store.migrate("telegram", TELEGRAM)
    finally:
        await store.close()
    assert versions(path) == {CORE: schema_version(), "telegram": TELEGRAM[-1][0]}


def test_the_telegram_tables_are_made_as_they_were_before_they_moved() -> None:
    """Adopting old tables with IF NOT EXISTS is only safe if the definitions are the same."""
    def schema(statements: str) -> dict[str, str]:
        db = sqlite3.connect(":memory:")
        db.executescript(statements)
        out = {name: " ".join(sql.split()) for name, sql in
               db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL")}
        db.close()
        return out

    before = schema(BEFORE_OWNERS.read_text())
    now = schema((ROOT / "core" / "migrations.sql").read_text() + TELEGRAM[0][1])
    for name in ("topics", "outbox", "mirrored", "outbox_pending"):
        def strip(sql: str) -> str:
            return re.sub(r"--[^\n]*", "", sql.replace(" IF NOT EXISTS", ""))
        assert " ".join(strip(now[name]).split()) == " ".join(strip(before[name]).split()), name
