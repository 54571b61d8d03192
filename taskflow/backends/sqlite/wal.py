"""Keeps the WAL short with passive checkpoints on a second connection, off the write path.

SQLite's own auto-checkpoint runs inside the COMMIT that crosses its threshold, so the caller
of that save pays for copying the WAL into the database (and its fsyncs). Here the copy runs
on a connection of its own, i.e. on its own thread with the GIL released, while saves
continue; SQLite's auto-checkpoint stays configured only as a safety net.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time

import aiosqlite

logger = logging.getLogger("taskflow.backends.sqlite")

#: Auto-checkpoint threshold (pages) left on the writing connection, as a safety net only.
SAFETY_AUTOCHECKPOINT_PAGES = 16_384
#: ``busy_timeout`` for the TRUNCATE checkpoint at close: shutdown must not wait on others.
CLOSE_BUSY_TIMEOUT_MS = 100
#: First pause after a checkpoint that found little to copy (seconds); doubled while that lasts.
FIRST_GAP = 0.01
#: Bytes of each WAL frame besides its page.
FRAME_HEADER = 24


class Checkpointer:
    """Starts a background ``wal_checkpoint(PASSIVE)`` after a write when one is due.

    Due means: ``interval`` seconds passed since the last checkpoint, or the WAL file is past
    ``size`` bytes and the pause since the last checkpoint is over. SQLite writes the WAL again
    from its start after a complete checkpoint without shrinking the file, so its size only says
    how long it ever got; the pause is what keeps small writes from starting a checkpoint each:
    it doubles after every checkpoint that found less than half of ``size`` to copy, and drops
    to nothing after one that found more. (The frame count itself is in the -shm file, but
    opening and closing that file would drop SQLite's POSIX locks on it in this process.)

    At most one runs at a time; PASSIVE never waits for readers or writers. The next write
    waits for it (:meth:`wait`), which keeps the WAL bounded.
    """

    def __init__(self, path: str, *, size: int, interval: float, journal_size_limit: int) -> None:
        self.path = path
        self.size = size
        self.interval = interval
        self.journal_size_limit = journal_size_limit
        self._conn: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0
        self._gap = 0.0
        self._frame_bytes = 4096 + FRAME_HEADER
        #: Checkpoints started so far.
        self.started = 0

    async def open(self) -> None:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA journal_size_limit = {int(self.journal_size_limit)}")
            rows = list(await conn.execute_fetchall("PRAGMA page_size"))
        except BaseException:
            await conn.close()
            raise
        self._frame_bytes = int(rows[0][0]) + FRAME_HEADER
        self._conn, self._last = conn, time.monotonic()

    def wrote(self) -> None:
        """Called after each commit; returns at once."""
        if self._conn is None or (self._task is not None and not self._task.done()):
            return
        now = time.monotonic()
        since = now - self._last
        if since < self.interval and (since < self._gap or _wal_size(self.path) < self.size):
            return
        self._last = now
        self.started += 1
        self._task = asyncio.get_running_loop().create_task(self._checkpoint(self._conn))

    async def wait(self) -> None:
        """Wait for the checkpoint in flight, if any (called before each write).

        SQLite restarts the WAL from its beginning only when a write starts after a checkpoint
        has copied everything; a write racing the checkpoint would make it grow instead. The
        caller encodes its batch meanwhile, so the wait mostly overlaps useful work.
        """
        if self._task is not None:
            await asyncio.shield(self._task)  # a cancelled caller must not cancel the checkpoint

    async def close(self) -> None:
        """Truncate the WAL if no other connection is busy, then disconnect."""
        await self.wait()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.execute(f"PRAGMA busy_timeout = {CLOSE_BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            logger.debug("WAL checkpoint at close of %s skipped: %s", self.path, exc)
        finally:
            await conn.close()

    async def _checkpoint(self, conn: aiosqlite.Connection) -> None:
        try:
            rows = list(await conn.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)"))
        except (sqlite3.Error, ValueError) as exc:  # ValueError: closed meanwhile
            logger.debug("passive WAL checkpoint of %s skipped: %s", self.path, exc)
            return
        frames = int(rows[0][1]) if rows and rows[0][1] is not None else 0
        if frames * self._frame_bytes < self.size // 2:
            self._gap = min(max(self._gap * 2, FIRST_GAP), self.interval)
        else:
            self._gap = 0.0


def _wal_size(path: str) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except OSError:
        return 0
