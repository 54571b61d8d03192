"""Keeps the WAL short with passive checkpoints on a second connection, off the write path.

SQLite's own auto-checkpoint runs inside the COMMIT that crosses its threshold, so the caller
of that save pays for copying the WAL into the database (and its fsyncs). Here the copy runs
on a connection of its own, i.e. on its own thread with the GIL released, while saves
continue; SQLite's auto-checkpoint stays configured only as a safety net.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import struct
import sys
import time

import aiosqlite

logger = logging.getLogger("taskflow.backends.sqlite")

#: Auto-checkpoint threshold (pages) left on the writing connection, as a safety net only.
SAFETY_AUTOCHECKPOINT_PAGES = 16_384
#: ``busy_timeout`` for the TRUNCATE checkpoint at close: shutdown must not wait on others.
CLOSE_BUSY_TIMEOUT_MS = 100


class Checkpointer:
    """Starts a background ``wal_checkpoint(PASSIVE)`` after a write when one is due.

    Due means: the WAL holds more than ``size`` bytes of frames, or ``interval`` seconds passed
    since the last checkpoint. At most one runs at a time; PASSIVE never waits for readers or
    writers. The next write waits for it (:meth:`wait`), which keeps the WAL bounded.
    """

    def __init__(self, path: str, *, size: int, interval: float, journal_size_limit: int) -> None:
        self.path = path
        self.size = size
        self.interval = interval
        self.journal_size_limit = journal_size_limit
        self._conn: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0
        #: Checkpoints started so far.
        self.started = 0

    async def open(self) -> None:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA journal_size_limit = {int(self.journal_size_limit)}")
        except BaseException:
            await conn.close()
            raise
        self._conn, self._last = conn, time.monotonic()

    def wrote(self) -> None:
        """Called after each commit; returns at once."""
        if self._conn is None or (self._task is not None and not self._task.done()):
            return
        now = time.monotonic()
        if now - self._last < self.interval and wal_bytes(self.path) < self.size:
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
            await conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except (sqlite3.Error, ValueError) as exc:  # ValueError: closed meanwhile
            logger.debug("passive WAL checkpoint of %s skipped: %s", self.path, exc)


#: The wal-index header at the start of the -shm file (https://www.sqlite.org/walformat.html,
#: "The WAL-Index Header"), in the machine's byte order: iVersion, unused, iChange, isInit,
#: bigEndCksum, szPage, mxFrame (the number of valid frames in the WAL).
_WAL_INDEX_HEADER = struct.Struct(("<" if sys.byteorder == "little" else ">") + "3I2BHI")
#: Bytes of each WAL frame besides its page.
_FRAME_HEADER = 24


def wal_bytes(path: str) -> int:
    """Bytes of frames in the WAL of the database at ``path`` that a checkpoint has to copy.

    Not the WAL file's size: after a complete checkpoint SQLite writes the WAL again from its
    start without shrinking the file, so its size only says how long it ever got (a size test
    would call for a checkpoint after every write from then on). The frame count is read from
    the wal-index without a lock: a torn read only moves one checkpoint by one write.
    """
    try:
        with open(f"{path}-shm", "rb") as shm:
            header = shm.read(_WAL_INDEX_HEADER.size)
    except OSError:
        return 0
    if len(header) < _WAL_INDEX_HEADER.size:
        return 0
    page_size, frames = _WAL_INDEX_HEADER.unpack(header)[5:7]
    return int(frames) * (int(page_size or 65536) + _FRAME_HEADER)
