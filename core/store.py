"""The SQLite store: one aiosqlite connection in WAL mode, schema from migrations.

Each owner of tables has its own numbered migrations and its own version row:
the engine ("core", core/migrations.sql, applied when the store opens) and
each door that keeps tables of its own (e.g. "telegram"), which calls
`Store.migrate(owner, migrations)` when it starts.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import aiosqlite

_MIGRATION_HEADER = re.compile(r"^-- migration (\d+):", re.MULTILINE)

# The owner of the engine's own tables (core/migrations.sql). A door owns its
# tables under its own name ("telegram") and migrates them with Store.migrate.
CORE = "core"

Migrations = list[tuple[int, str]]

# Which owner's tables are at which migration. Made by the store itself, not
# by a numbered migration: every owner's migrations are recorded in it.
_VERSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_versions (
    owner    TEXT PRIMARY KEY,  -- core, telegram, ...
    version  INTEGER NOT NULL   -- the owner's last applied migration
);
"""


class StoreError(Exception):
    """The database cannot be used as it is (e.g. written by a newer sm)."""


def read_migrations(text: str) -> Migrations:
    """The numbered migrations of one file (`-- migration N: ...` sections), as (version, sql)."""
    marks = list(_MIGRATION_HEADER.finditer(text))
    out = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out.append((int(mark.group(1)), text[mark.start() : end]))
    return out


def package_migrations(package: str, name: str = "migrations.sql") -> Migrations:
    """The migrations kept in a package's data file."""
    return read_migrations(resources.files(package).joinpath(name).read_text())


def migrations() -> Migrations:
    """The engine's own numbered migrations, in order, as (version, sql)."""
    return package_migrations("core")


def schema_version() -> int:
    return migrations()[-1][0]


class Store:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        # One connection is shared by every coroutine: a transaction holds this
        # lock so that no other statement lands inside it.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> "Store":
        path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite creates the -wal and -shm files with the main file's mode, and
        # they hold rows too: make the file private before SQLite opens it.
        path.touch(mode=0o600, exist_ok=True)
        for private in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if private.exists():
                private.chmod(0o600)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=FULL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.execute("PRAGMA busy_timeout=5000")
            store = cls(conn, path)
            await store._migrate()
        except BaseException:
            await conn.close()
            raise
        return store

    async def _migrate(self) -> None:
        await self.migrate(CORE, migrations())

    async def version(self, owner: str) -> int:
        """The last migration applied to `owner`'s tables (0: none yet)."""
        async with self._lock:
            return await self._version(owner)

    async def _version(self, owner: str) -> int:
        async with self._conn.execute(
            "SELECT version FROM schema_versions WHERE owner = ?", (owner,)
        ) as cursor:
            row = await cursor.fetchone()
        version = row[0] if row else 0
        if owner == CORE:
            # A database from before per-owner versions kept the engine's in
            # user_version, which is still written for it (and for older sm).
            async with self._conn.execute("PRAGMA user_version") as cursor:
                legacy = await cursor.fetchone()
            version = max(version, legacy[0] if legacy else 0)
        return version

    async def migrate(self, owner: str, owner_migrations: Migrations) -> int:
        """Bring `owner`'s tables to its latest migration, in place; returns that version.

        Each migration runs in its own transaction with the record of it, so a
        crash leaves the tables at a version that is written down.
        """
        if not re.fullmatch(r"[a-z][a-z0-9_]*", owner):
            raise ValueError(f"an owner of tables is a lowercase name, not {owner!r}")
        latest = owner_migrations[-1][0] if owner_migrations else 0
        async with self._lock:
            await self._conn.executescript(_VERSIONS_TABLE)
            current = await self._version(owner)
            if current > latest:
                raise StoreError(
                    f"database {self.path} has {owner} schema version {current}, newer than this sm "
                    f"understands ({latest}); upgrade sm or point SM_STATE_DIR elsewhere"
                )
            for version, sql in owner_migrations:
                if version <= current:
                    continue
                legacy = f"PRAGMA user_version = {version};" if owner == CORE else ""
                await self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\n"
                    f"INSERT OR REPLACE INTO schema_versions (owner, version) VALUES ('{owner}', {version});\n"
                    f"{legacy}\nCOMMIT;"
                )
            if current >= latest and current:
                # Up to date already, maybe from user_version alone: write the row down.
                await self._conn.execute(
                    "INSERT OR IGNORE INTO schema_versions (owner, version) VALUES (?, ?)", (owner, current))
            return latest

    async def close(self) -> None:
        await self._conn.close()

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement (its own transaction); returns lastrowid."""
        async with self._lock:
            return await self._execute(sql, params)

    async def execute_rowcount(self, sql: str, params: Iterable[Any] = ()) -> int:
        async with self._lock:
            cursor = await self._conn.execute(sql, tuple(params))
            count = cursor.rowcount
            await cursor.close()
            return count

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self._lock:
            async with self._conn.execute(sql, tuple(params)) as cursor:
                return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self._lock:
            async with self._conn.execute(sql, tuple(params)) as cursor:
                return list(await cursor.fetchall())

    async def _execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        cursor = await self._conn.execute(sql, tuple(params))
        rowid = cursor.lastrowid
        await cursor.close()
        return rowid or 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator["Transaction"]:
        """BEGIN IMMEDIATE ... COMMIT, with every other statement held off meanwhile."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._conn)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")


class Transaction:
    """Statements inside Store.transaction(); the store's lock is already held."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        cursor = await self._conn.execute(sql, tuple(params))
        rowid = cursor.lastrowid
        await cursor.close()
        return rowid or 0

    async def execute_rowcount(self, sql: str, params: Iterable[Any] = ()) -> int:
        cursor = await self._conn.execute(sql, tuple(params))
        count = cursor.rowcount
        await cursor.close()
        return count

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self._conn.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())
