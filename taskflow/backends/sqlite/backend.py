"""SQLite snapshot backend: one WAL file shared by every process on one host (never on NFS).

Every call runs on aiosqlite's own thread, so the event loop never waits on the disk. Writes
are ``BEGIN IMMEDIATE`` transactions; SQLITE_BUSY is waited out by ``busy_timeout`` first and
then retried with backoff, so callers never see "database is locked" for a passing contention.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aiosqlite

from taskflow.backends.base import (
    BackendError,
    HistoryCounts,
    InstanceInfo,
    ScheduleState,
    SnapshotBackend,
)
from taskflow.backends.codec import RecordCodec
from taskflow.backends.sqlite import audit, cluster, schedules, sessions
from taskflow.backends.sqlite.schema import check_identity, not_taskflow, prepare_schema
from taskflow.backends.sqlite.sql import (
    COUNT_BY_FUNC,
    COUNT_BY_STATUS,
    PRUNE_BEYOND,
    PRUNE_OLDER,
    PRUNE_TAGS,
    TAGS_OF,
    UPSERT,
    count_selected_sql,
    owners_refused,
    purge_sql,
    read_row,
    select_sql,
    task_row,
)
from taskflow.backends.sqlite.txn import (
    Op,
    SyncOp,
    fetchall,
    in_thread,
    retry_busy,
    sync_transaction,
    transaction,
)
from taskflow.backends.sqlite.wal import SAFETY_AUTOCHECKPOINT_PAGES, Checkpointer
from taskflow.backends.urls import mask_url
from taskflow.models import AuditEntry, TaskRecord, epoch
from taskflow.query import Page, Selection, TaskQuery, make_page

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Page cache per connection in KiB (``PRAGMA cache_size``). SQLite's 2 MiB default cannot hold
#: the index pages a large group commit touches; 32 MiB cut a 10,000-record flush by ~30%.
CACHE_KIB = 32 * 1024
#: Page size of a new file (``PRAGMA page_size``; an existing file keeps its own). 8 KiB pages
#: cut a 10,000-record flush by ~12% against SQLite's 4 KiB default: fewer, fuller index pages.
PAGE_SIZE = 8192
#: Size the WAL file is truncated back to after a checkpoint (``PRAGMA journal_size_limit``).
DEFAULT_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


class SqliteBackend(SnapshotBackend):
    """Task history in one SQLite file, shared by the processes of one host.

    ``path`` is created (with its directory) on :meth:`open`. A passive WAL checkpoint runs in
    the background after a write once the WAL exceeds ``checkpoint_size`` bytes or
    ``checkpoint_interval`` seconds have passed; ``journal_size_limit`` bounds the WAL file
    left behind.
    """

    kind = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 10.0,
        journal_size_limit: int = DEFAULT_JOURNAL_SIZE_LIMIT,
        checkpoint_size: int = 4 * 1024 * 1024,
        checkpoint_interval: float = 30.0,
    ) -> None:
        text = os.fspath(path)
        if not text or text == ":memory:" or text.startswith("file:"):
            raise ValueError(
                f"SQLite path {text!r} is not a file path; the history must live in a file "
                "that every process can open"
            )
        if busy_timeout <= 0 or journal_size_limit < 0 or checkpoint_size < 0:
            raise ValueError("busy_timeout must be > 0; journal_size_limit, checkpoint_size >= 0")
        self.path = os.path.abspath(os.path.expanduser(text))
        self.busy_timeout = busy_timeout
        self.journal_size_limit = journal_size_limit
        self.checkpoint_size = checkpoint_size
        self.checkpoint_interval = checkpoint_interval
        self.codec = RecordCodec()
        self._conn: aiosqlite.Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._checkpointer: Checkpointer | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteBackend:
        """``sqlite:///relative/tasks.db`` or ``sqlite:////absolute/tasks.db`` (as SQLAlchemy)."""
        shown = mask_url(url)
        scheme, _, rest = url.partition(":")
        if scheme.lower() != "sqlite" or not rest.startswith("//"):
            raise ValueError(f"SQLite URL {shown!r} must look like sqlite:///path/to/tasks.db")
        parts = urlsplit(url)
        if parts.netloc:
            raise ValueError(
                f"SQLite URL {shown!r} names a host; SQLite files are local: use three slashes, "
                "sqlite:///path/to/tasks.db"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"SQLite URL {shown!r} has a query or fragment; none is supported")
        path = unquote(parts.path)[1:]  # drop the "/" that ends the (empty) authority
        if not path:
            raise ValueError(
                f"SQLite URL {shown!r} has no file path; use sqlite:///path/to/tasks.db"
            )
        return cls(path, **options)

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def clone(self) -> SqliteBackend:
        clone = SqliteBackend(
            self.path,
            busy_timeout=self.busy_timeout,
            journal_size_limit=self.journal_size_limit,
            checkpoint_size=self.checkpoint_size,
            checkpoint_interval=self.checkpoint_interval,
        )
        clone.codec = RecordCodec(self.codec.cipher)
        return clone

    async def open(self) -> None:
        """Open the file in WAL mode and create or migrate the schema (race-free across processes).

        Raises :class:`BackendError` naming the file when it cannot be opened or is not a
        taskflow database; the file is then left untouched.
        """
        if self._conn is not None:
            return
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            conn = await aiosqlite.connect(
                self.path, isolation_level=None, timeout=self.busy_timeout
            )
        except (OSError, sqlite3.Error) as exc:
            raise BackendError(f"cannot open SQLite history {self.path}: {exc}") from exc
        try:
            await retry_busy(lambda: self._configure(conn))
            await retry_busy(lambda: transaction(conn, lambda c: prepare_schema(c, self.path)))
            checkpointer = Checkpointer(
                self.path,
                size=self.checkpoint_size,
                interval=self.checkpoint_interval,
                journal_size_limit=self.journal_size_limit,
            )
            await checkpointer.open()
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise BackendError(f"cannot open SQLite history {self.path}: {exc}") from exc
            if isinstance(exc, sqlite3.DatabaseError):
                raise not_taskflow(self.path, str(exc)) from exc
            raise
        self._conn, self._lock, self._checkpointer = conn, asyncio.Lock(), checkpointer
        logger.info("SQLite history at %s (SQLite %s)", self.path, sqlite3.sqlite_version)

    async def close(self) -> None:
        """Disconnect, truncating the WAL when no other process is busy with it."""
        if self._lock is None:
            return
        async with self._lock:
            conn, self._conn = self._conn, None
            checkpointer, self._checkpointer = self._checkpointer, None
            if conn is not None:
                await conn.close()
            if checkpointer is not None:
                await checkpointer.close()

    async def ping(self) -> None:
        await self._run("ping", fetchall("SELECT 1", ()))

    async def save(self, records: Sequence[TaskRecord]) -> list[str]:
        """Upsert all ``records`` in one ``BEGIN IMMEDIATE`` transaction."""
        if not records:
            return []
        # Encoded here, on the event loop, where records change: each row is one consistent
        # version. The transaction then runs whole on the connection's thread (one hop).
        rows = [task_row(self.codec, record) for record in records]

        tagged = [(row[0],) for row in rows if row[8] is not None]

        def upsert(conn: sqlite3.Connection) -> list[str]:
            before = conn.total_changes
            conn.executemany(UPSERT, rows)
            written = conn.total_changes - before
            if tagged:
                conn.executemany(TAGS_OF, tagged)
            if written == len(rows):
                return []  # every row written: nothing was refused
            return owners_refused(conn, rows)

        return await self._write_in_thread("save", upsert)

    async def get(self, task_id: str) -> TaskRecord | None:
        sql = "SELECT CAST(data AS BLOB) FROM tasks WHERE task_id = ?"
        rows = await self._run("get", fetchall(sql, (task_id,)))
        return self.codec.decode_or_raise(rows[0][0], task_id) if rows else None

    async def query(self, query: TaskQuery) -> Page:
        return make_page(await self._select(query, query.limit + 1), query.limit)

    async def load_recent(self, limit: int) -> list[TaskRecord]:
        return await self._select(TaskQuery(), limit)

    async def prune(self, *, older_than: datetime | None, keep: int | None) -> int:
        """Delete finished rows by age and beyond the newest ``keep``, in one transaction."""
        if keep is not None and keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        if older_than is None and keep is None:
            return 0

        async def delete(conn: aiosqlite.Connection) -> int:
            removed = 0
            if older_than is not None:
                removed += (await conn.execute(PRUNE_OLDER, (epoch(older_than),))).rowcount
            if keep is not None:
                removed += (await conn.execute(PRUNE_BEYOND, (keep,))).rowcount
            if removed:
                await conn.execute(PRUNE_TAGS)
            return removed

        removed = await self._run("prune", delete, write=True)
        if removed:
            logger.info("pruned %d finished tasks from %s", removed, self.path)
        return removed

    async def counts(self) -> HistoryCounts:
        async def count(conn: aiosqlite.Connection) -> HistoryCounts:
            by_status = await conn.execute_fetchall(COUNT_BY_STATUS)
            by_func = await conn.execute_fetchall(COUNT_BY_FUNC)
            return HistoryCounts(
                {str(k): int(n) for k, n in by_status}, {str(k): int(n) for k, n in by_func}
            )

        return await self._run("counts", lambda c: transaction(c, count, begin="BEGIN"))

    async def count_selected(self, selection: Selection) -> int:
        sql, params = count_selected_sql(selection)
        rows = await self._run("count", fetchall(sql, params))
        return int(rows[0][0])

    async def purge(self, selection: Selection, limit: int) -> int:
        """Delete the ``limit`` oldest matching finished rows in one transaction."""
        if limit <= 0:
            return 0
        sql, params = purge_sql(selection, limit)

        async def delete(conn: aiosqlite.Connection) -> int:
            return int((await conn.execute(sql, params)).rowcount)

        removed = await self._run("purge", delete, write=True)
        if removed:
            logger.info("purged %d finished tasks from %s", removed, self.path)
        return removed

    # -- the audit trail; the SQL lives in .audit ------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> None:
        await self._run("audit", lambda c: audit.append(c, entry), write=True)

    async def audit_entries(self, limit: int, before: str | None = None) -> list[AuditEntry]:
        return await self._run("audit read", lambda c: audit.entries(c, limit, before))

    # -- the cluster (see SnapshotBackend); the SQL lives in .cluster ------------------

    async def heartbeat(self, info: InstanceInfo) -> None:
        await self._run("heartbeat", lambda c: cluster.heartbeat(c, info), write=True)

    async def deregister(self, instance_id: str) -> None:
        await self._run("deregister", lambda c: cluster.deregister(c, instance_id), write=True)

    async def instances(self) -> list[InstanceInfo]:
        return await self._run("instances", cluster.instances)

    async def expire_instances(self, heartbeat_before: datetime) -> list[str]:
        return await self._run(
            "expire", lambda c: cluster.expire_instances(c, heartbeat_before), write=True
        )

    async def live_owners(self) -> set[str]:
        return await self._run("live owners", cluster.live_owners)

    async def claim_live(
        self, owner: str, new_owner: str, limit: int | None = None
    ) -> list[TaskRecord]:
        return await self._run(
            "claim",
            lambda c: cluster.claim_live(c, self.codec, owner, new_owner, limit),
            write=True,
        )

    async def claim_new(self, record: TaskRecord) -> TaskRecord | None:
        return await self._run(
            "claim new", lambda c: cluster.claim_new(c, self.codec, record), write=True
        )

    async def request_cancel(self, task_id: str) -> None:
        now = time.time()
        await self._run(
            "request cancel", lambda c: cluster.request_cancel(c, task_id, now), write=True
        )

    async def cancel_requests(self, after: str | None) -> tuple[list[str], str]:
        if after is not None and not after.isdigit():
            raise ValueError(f"not a SQLite cancellation position: {after!r}")
        return await self._run("cancel requests", lambda c: cluster.cancel_requests(c, after))

    # -- scheduled tasks (see SnapshotBackend); the SQL lives in .schedules --------------------

    async def claim_tick(self, name: str, tick: datetime, run: TaskRecord) -> bool:
        row, tick_ts = task_row(self.codec, run), epoch(tick)
        return await self._write_in_thread(
            "claim tick", lambda conn: schedules.claim_tick(conn, name, tick_ts, row)
        )

    async def schedule_states(self) -> dict[str, ScheduleState]:
        return await self._run("schedules", schedules.schedule_states)

    async def set_paused(self, name: str, paused: bool) -> None:
        await self._run("pause", lambda c: schedules.set_paused(c, name, paused), write=True)

    async def add_delayed(self, record: TaskRecord) -> None:
        row, run_ts = schedules.delayed_row(self.codec, record)
        await self._write_in_thread(
            "add delayed", lambda conn: schedules.add_delayed(conn, row, run_ts)
        )

    async def next_due(self) -> datetime | None:
        return await self._run("next due", schedules.next_due)

    async def claim_due(self, now: datetime, new_owner: str, limit: int) -> list[TaskRecord]:
        return await self._run(
            "claim due",
            lambda c: schedules.claim_due(c, self.codec, now, new_owner, limit),
            write=True,
        )

    async def pragmas(self) -> dict[str, Any]:
        """This connection's effective settings (journal mode, busy timeout...), for diagnostics."""
        names = (
            "journal_mode",
            "busy_timeout",
            "synchronous",
            "journal_size_limit",
            "user_version",
        )

        async def read(conn: aiosqlite.Connection) -> dict[str, Any]:
            values = {}
            for name in names:
                (row,) = await conn.execute_fetchall(f"PRAGMA {name}")
                values[name] = row[0]
            return values

        return await self._run("pragmas", read)

    async def _select(self, query: TaskQuery, want: int) -> list[TaskRecord]:
        # Malformed rows are skipped; when that leaves the batch short, continue after the last
        # row read so a page still holds `want` records when that many exist.
        records: list[TaskRecord] = []
        after: tuple[float, str] | None = None
        while len(records) < want:
            sql, params = select_sql(query, after)
            batch = want - len(records)
            rows = await self._run("query", fetchall(sql, (*params, batch)))
            for task_id, data, _ in rows:
                record = read_row(self.codec, task_id, data)
                if record is not None:
                    records.append(record)
            if len(rows) < batch:
                break
            after = (rows[-1][2], rows[-1][0].decode("utf-8", "replace"))
        return records

    async def _configure(self, conn: aiosqlite.Connection) -> None:
        await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        # Before WAL, so a foreign file stays untouched; in one read transaction, so another
        # process creating the schema meanwhile is seen entirely or not at all.
        await transaction(conn, lambda c: check_identity(c, self.path), begin="BEGIN")
        await conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before WAL: a new file only
        rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
        if str(rows[0][0]).lower() != "wal":
            raise BackendError(
                f"SQLite refused WAL journal mode for {self.path} (got {rows[0][0]!r}); "
                "the file must be on a local filesystem"
            )
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        await conn.execute(f"PRAGMA journal_size_limit = {int(self.journal_size_limit)}")
        await conn.execute(f"PRAGMA wal_autocheckpoint = {SAFETY_AUTOCHECKPOINT_PAGES}")

    async def _run(self, action: str, op: Op[T], *, write: bool = False) -> T:
        """``op`` on the connection; with ``write``, inside a ``BEGIN IMMEDIATE`` transaction."""
        if not write:
            return await self._locked(action, lambda conn: retry_busy(lambda: op(conn)))
        return await self._write(action, lambda conn: transaction(conn, op))

    async def _write_in_thread(self, action: str, op: SyncOp[T]) -> T:
        """``op`` inside a ``BEGIN IMMEDIATE`` transaction run whole on the connection's thread."""
        return await self._write(
            action, lambda conn: in_thread(conn, lambda raw: sync_transaction(raw, op))
        )

    async def _write(self, action: str, attempt: Op[T]) -> T:
        if self._checkpointer is not None:
            await self._checkpointer.wait()
        result = await self._locked(action, lambda conn: retry_busy(lambda: attempt(conn)))
        if self._checkpointer is not None:
            self._checkpointer.wrote()
        return result

    async def _locked(self, action: str, call: Op[T]) -> T:
        if self._lock is None:
            raise BackendError(f"{self.describe()} is not open")
        async with self._lock:  # one statement sequence at a time on the one connection
            conn = self._conn
            if conn is None:
                raise BackendError(f"{self.describe()} is not open")
            try:
                return await call(conn)
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite {action} failed on {self.path}: {exc}") from exc

    # -- revoked dashboard sessions (see SnapshotBackend); the SQL lives in sqlite_sessions ----

    async def revoke_session(self, session_id: str, expires_at: datetime) -> None:
        expires_ts, now = epoch(expires_at), time.time()
        await self._run(
            "revoke session",
            lambda c: sessions.revoke(c, session_id, expires_ts, now),
            write=True,
        )

    async def session_revoked(self, session_id: str) -> bool:
        now = time.time()
        return await self._run("session check", lambda c: sessions.revoked(c, session_id, now))
