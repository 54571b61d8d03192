"""Persistence: this instance's records in memory and the shared backend behind them.

``store`` (records in memory, bounded), ``flusher`` (the group commit that writes them),
``upkeep`` (opening, pinging and pruning the backend), ``health`` (what readiness reports),
``history`` (reads), ``bulk`` (counts, walks and purges of a selection), ``audit`` (the trail
of admin actions). :class:`Persistence` puts them together for one manager.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

from taskflow.backends.base import HistoryBackend
from taskflow.events import EventBus
from taskflow.models import TaskRecord, TaskStatus
from taskflow.persistence.audit import AuditTrail
from taskflow.persistence.bulk import Bulk
from taskflow.persistence.flusher import Flusher
from taskflow.persistence.health import BackendHealth
from taskflow.persistence.history import History
from taskflow.persistence.store import TaskStore
from taskflow.persistence.upkeep import Upkeep
from taskflow.query import Page, TaskQuery

logger = logging.getLogger("taskflow.persistence")

#: How long the final flush at shutdown keeps retrying a failing backend (seconds).
FINAL_FLUSH_SECONDS = 5.0


class Persistence:
    """Restore at startup, flush on completion (group commit), the periodic safety-net flush,
    the final flush at shutdown, readiness, and history reads.

    Without a backend it serves reads from memory only and every write is a no-op. The
    manager keeps it as ``_scheduler``, so the seed's spelling
    ``task_manager._scheduler.query(...)`` keeps working.
    """

    def __init__(
        self,
        store: TaskStore,
        bus: EventBus,
        backend: HistoryBackend | None,
        *,
        interval: float = 30.0,
        restore_limit: int = 1000,
        retention_days: float | None = None,
        max_history: int | None = None,
        persist_live: bool = True,
    ) -> None:
        if interval <= 0:
            raise ValueError("snapshot_interval must be greater than 0 seconds")
        self.store = store
        self.backend = backend
        self.persist_live = persist_live and backend is not None
        self.health = BackendHealth(connected=backend is None, reachable=backend is None)
        self.history = History(store, backend, self.health, live_in_backend=self.persist_live)
        self.bulk = Bulk(store, backend, self.health, self.history, self.flush)
        self.audit = AuditTrail(backend)
        self.flusher: Flusher | None = None
        self.upkeep: Upkeep | None = None
        if backend is not None:
            self.flusher = Flusher(store, bus, backend, self.health, persist_live=self.persist_live)
            self.upkeep = Upkeep(
                backend,
                store,
                self.health,
                self.flusher,
                interval=interval,
                restore_limit=restore_limit,
                retention_days=retention_days,
                max_history=max_history,
            )
        self._loops: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the backend, restore recent history and start the flush and upkeep loops.

        A backend that cannot be opened (unreachable, a bad file) is logged and opened again in
        the background until it opens; the instance keeps serving and holds finished records in
        memory (bounded) until then.
        """
        self.history.loop = asyncio.get_running_loop()
        if self.flusher is None or self.upkeep is None:
            return
        self.health.connected = False
        flush_loop = self.flusher.start()
        await self.upkeep.connect()
        self._loops = [flush_loop, self.upkeep.start()]

    async def stop(self) -> None:
        """The final flush regardless of the interval, then close the backend."""
        if self.flusher is None or self.upkeep is None or self.backend is None:
            return
        self.flusher.closing()
        for task in self._loops[1:]:
            task.cancel()  # upkeep only sleeps and pings: no need to wait for it
        # Let the flush loop's write in flight finish instead of cancelling it: some clients
        # turn a cancellation in mid-command into an ordinary error, which would hide it.
        await _finish_or_cancel(self._loops, FINAL_FLUSH_SECONDS)
        self._loops = []
        await self.flusher.final_flush(time.monotonic() + FINAL_FLUSH_SECONDS, self.upkeep.connect)
        left = len(self.store.unflushed_ids)
        if left:
            logger.error(
                "taskflow final flush could not write %d finished records to %s",
                left,
                self.backend.describe(),
            )
        self.flusher.stop_listening()
        try:
            await self.backend.close()
        except Exception as exc:  # a shutdown must end; the records are written or reported
            logger.warning("taskflow could not close %s: %s", self.backend.describe(), exc)

    @property
    def ready(self) -> bool:
        """True when there is no backend, or it is open, answers pings, its last write
        succeeded and no write hangs (see :class:`~taskflow.persistence.health.BackendHealth`)."""
        return self.backend is None or self.health.ready

    # -- writing ---------------------------------------------------------------------------

    async def flush(self) -> bool:
        """Write everything unwritten now; True when nothing is left."""
        return True if self.flusher is None else await self.flusher.flush()

    def mark_live(self, record: TaskRecord) -> None:
        if self.flusher is not None:
            self.flusher.mark_live(record)

    def persist_soon(self, timeout: float) -> Awaitable[bool] | None:
        return None if self.flusher is None else self.flusher.persist_soon(timeout)

    def stats(self) -> dict[str, Any]:
        """The persistence figures of ``GET /tasks/metrics``."""
        flusher, backend = self.flusher, self.backend
        codec = backend.codec if backend is not None else None
        return {
            "backend": backend.describe() if backend else None,
            "ready": self.ready,
            "unflushed": len(self.store.unflushed_ids),
            "oldest_unflushed_age_seconds": flusher.oldest_unflushed_age() if flusher else None,
            "dropped_unflushed": self.store.dropped_unflushed,
            "flushed_total": flusher.flushed_total if flusher else 0,
            "flush_writes_total": flusher.writes_total if flusher else 0,
            "flush_failures": flusher.flush_failures if flusher else 0,
            "last_flush_seconds": flusher.last_flush_seconds if flusher else None,
            "last_error": self.health.last_error,
            # Records stored with values made safe, records that could not be stored at all
            # (kept in memory only), and stored records skipped at reading (undecodable).
            "made_safe": codec.made_safe if codec else 0,
            "quarantined": flusher.quarantined if flusher else 0,
            "unreadable": codec.unreadable if codec else 0,
            "unflushed_bytes": self.store.unflushed_bytes,
            "memory_bytes": self.store.finished_bytes,
        }

    async def apply_retention(self) -> int:
        """Delete finished history beyond ``retention_days`` and ``max_history`` now."""
        return 0 if self.upkeep is None else await self.upkeep.apply_retention()

    # -- reading (the seed's spelling: task_manager._scheduler.query(...)) --------------------

    async def aquery(self, query: TaskQuery) -> Page:
        return await self.history.aquery(query)

    async def aget(self, task_id: str) -> TaskRecord | None:
        return await self.history.aget(task_id)

    def query(
        self,
        status: str | TaskStatus | None = None,
        func_name: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> list[TaskRecord]:
        """History as a plain call, newest first (see :meth:`History.query`)."""
        query = TaskQuery.build(
            status=status,
            func_name=func_name,
            limit=limit,
            since=since,
            until=until,
            cursor=cursor,
            tags=tags,
        )
        return self.history.query(query).records


async def _finish_or_cancel(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    """Wait up to ``timeout`` for tasks to end by themselves, then cancel the rest.

    Never waits without a bound, even on a task whose code swallowed its cancellation.
    """
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=1.0)
