"""Another process holding SQLite's write lock, for the fault drills.

:class:`SqliteLocker` starts this module as a child process that opens the database, runs
``BEGIN IMMEDIATE`` and writes enough into a scratch table that SQLite spills uncommitted pages
into the WAL, then waits. The test either tells it to ``release()`` (roll back and exit: a
hung writer that comes back) or ``kill()`` s it with SIGKILL while it holds the lock (a crashed
writer: SQLite must recover, keep every committed record, and never show the scratch table).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

#: The table the locker writes into and never commits.
SCRATCH_TABLE = "drill_scratch"
#: Bytes written inside the open transaction: far more than the locker's page cache, so
#: uncommitted frames reach the WAL file before it is killed.
SCRATCH_BYTES = 2 * 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


class SqliteLocker:
    """A child process holding ``BEGIN IMMEDIATE`` on ``path`` until released or killed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: subprocess.Popen[str] | None = None

    def lock(self, timeout: float = 20.0) -> None:
        """Start the child and return once it holds the write lock (it may have to wait for
        a write of the app in progress)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.sqlite_locker", str(self.path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the child's busy_timeout bounds this wait
        if line.strip() != "locked":
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
            raise AssertionError(f"the locker did not get the write lock: {line!r} {err}")

    def release(self) -> None:
        """Roll back and exit: the lock is free again."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write("release\n")
        self.proc.stdin.flush()
        assert self.proc.wait(10) == 0, self.proc.stderr.read() if self.proc.stderr else ""

    def kill(self) -> None:
        """SIGKILL while the transaction is open: no rollback, no cleanup of any kind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> None:
        """Teardown: make sure the child is gone, whatever happened, and close its pipes."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _hold(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=15)
    conn.execute("PRAGMA cache_size = -256")  # 256 KiB: the scratch rows spill into the WAL
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(f"CREATE TABLE {SCRATCH_TABLE} (blob BLOB)")
    chunk = os.urandom(64 * 1024)
    for _ in range(SCRATCH_BYTES // len(chunk)):
        conn.execute(f"INSERT INTO {SCRATCH_TABLE} VALUES (?)", (chunk,))
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    conn.close()


if __name__ == "__main__":
    _hold(sys.argv[1])
