"""The SQLite store: one aiosqlite connection in WAL mode, schema from migrations.sql."""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import aiosqlite

_MIGRATION_HEADER = re.compile(r"^-- migration (\d+):", re.MULTILINE)


class StoreError(Exception):
    """The database cannot be used as it is (e.g. written by a newer sm)."""


def migrations() -> list[tuple[int, str]]:
    """The numbered migrations, in order, as (version, sql)."""
    text = resources.files("core").joinpath("migrations.sql").read_text()
    marks = list(_MIGRATION_HEADER.finditer(text))
    out = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out.append((int(mark.group(1)), text[mark.start() : end]))
    return out


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
        row = await self.fetchone("PRAGMA user_version")
        current = row[0] if row else 0
        latest = schema_version()
        if current > latest:
            raise StoreError(
                f"database {self.path} has schema version {current}, newer than this sm "
                f"understands ({latest}); upgrade sm or point SM_STATE_DIR elsewhere"
            )
        for version, sql in migrations():
            if version <= current:
                continue
            await self._conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;"
            )

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
