"""Transactions and SQLITE_BUSY handling on an aiosqlite connection (autocommit mode).

``busy_timeout`` makes SQLite itself wait for a lock; :func:`retry_busy` covers what outlasts
it (another process recovering the WAL, a long checkpoint), so a passing contention never
reaches callers as "database is locked".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite

logger = logging.getLogger("taskflow.backends.sqlite")

T = TypeVar("T")
#: One step run on the connection (a statement, or several inside a transaction).
Op = Callable[[aiosqlite.Connection], Awaitable[T]]
#: The same, run whole on the connection's worker thread with the plain sqlite3 connection.
SyncOp = Callable[[sqlite3.Connection], T]

#: Attempts after SQLITE_BUSY outlasted ``busy_timeout``.
BUSY_RETRIES = 4
#: Pause before the first such attempt, doubled (with jitter) for each next one.
BUSY_BACKOFF = 0.05
#: SQLITE_BUSY and SQLITE_LOCKED (primary result codes).
_BUSY_CODES = (5, 6)


def fetchall(sql: str, params: Sequence[Any]) -> Op[list[sqlite3.Row]]:
    """An operation returning every row of ``sql``."""

    async def fetch(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
        return list(await conn.execute_fetchall(sql, params))

    return fetch


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _BUSY_CODES
    return "locked" in str(exc) or "busy" in str(exc)


async def retry_busy(attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt``, running it again with backoff while it fails with SQLITE_BUSY."""
    delay = BUSY_BACKOFF
    for _ in range(BUSY_RETRIES):
        try:
            return await attempt()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            logger.debug("SQLite busy (%s); retrying in about %.2fs", exc, delay)
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay *= 2
    return await attempt()


async def transaction(
    conn: aiosqlite.Connection, op: Op[T], *, begin: str = "BEGIN IMMEDIATE"
) -> T:
    """``op`` inside ``begin`` ... ``COMMIT``, rolled back when anything fails.

    ``BEGIN IMMEDIATE`` (the default, for writes) takes the write lock before ``op`` reads
    anything; plain ``BEGIN`` gives several reads one consistent snapshot.
    """
    try:
        await conn.execute(begin)
        result = await op(conn)
        await conn.execute("COMMIT")
    except BaseException:
        # Queued after whatever the worker thread is still running, so it also undoes a BEGIN
        # whose caller was cancelled; "no transaction is active" is fine to ignore.
        with contextlib.suppress(sqlite3.Error):
            await conn.execute("ROLLBACK")
        raise
    return result


async def in_thread(conn: aiosqlite.Connection, op: SyncOp[T]) -> T:
    """Run ``op`` on ``conn``'s worker thread, handing it the underlying sqlite3 connection.

    aiosqlite sends each statement to its thread on its own (a queue put, a wake-up, and a
    ``call_soon_threadsafe`` back); for a short transaction those hops cost more than the
    SQLite work: a one-record write took ~125 us of CPU in three hops and ~75 us in one.
    ``Connection._execute`` is how aiosqlite's own methods run a call on that thread: a
    private internal of a dependency, kept for that gain, bounded in pyproject.toml
    and checked by tests/backends/test_sqlite.py.
    """
    execute: Callable[..., Awaitable[T]] = conn._execute
    return await execute(op, conn._conn)


def sync_transaction(conn: sqlite3.Connection, op: SyncOp[T]) -> T:
    """``op`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` on the worker thread, rolled back when
    anything fails (the thread-side twin of :func:`transaction`)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = op(conn)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return result
