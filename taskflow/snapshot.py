"""SnapshotScheduler: restore at startup, flush on completion, periodic and final flush, query."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from taskflow.backends.base import BackendError, SnapshotBackend
from taskflow.barrier import WriteBarrier
from taskflow.events import EventBus, EventKind
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.query import Page, TaskQuery, merge_pages, page_of
from taskflow.store import TaskStore

logger = logging.getLogger("taskflow.snapshot")

T = TypeVar("T")

#: How often the maintenance loop wakes up (seconds).
TICK_SECONDS = 0.5
#: How often a healthy backend is pinged for readiness (seconds).
PING_EVERY = 5.0
#: How often retention runs when it is configured (seconds).
PRUNE_EVERY = 60.0
#: First and largest wait between failed flush attempts (seconds).
RETRY_FIRST, RETRY_MAX = 0.1, 5.0
#: How long the final flush at shutdown keeps retrying a failing backend (seconds).
FINAL_FLUSH_SECONDS = 5.0
#: Longest a change of a live record waits before it is written (seconds).
LIVE_WRITE_DELAY = 0.2
#: How long a synchronous ``query()`` waits for the server's event loop (seconds).
SYNC_QUERY_TIMEOUT = 30.0


class SnapshotScheduler:
    """Moves finished records from memory to the backend and serves history reads.

    Without a backend it serves reads from memory only and every write method is a no-op.
    """

    def __init__(
        self,
        store: TaskStore,
        bus: EventBus,
        backend: SnapshotBackend | None,
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
        self.bus = bus
        self.backend = backend
        self.interval = interval
        self.restore_limit = restore_limit
        self.retention_days = retention_days
        self.max_history = max_history
        self.persist_live = persist_live and backend is not None
        self.backend_ok = backend is None
        self.flush_failures = 0
        self.flushed_total = 0
        #: Successful backend writes; flushed records per write is the group commit's batch size.
        self.writes_total = 0
        self.last_flush_seconds: float | None = None
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._loops: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Any = None
        self._live_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._barrier = WriteBarrier()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the backend, restore recent history and start the flush and maintenance loops.

        An unreachable backend is logged and retried in the background; the instance keeps
        serving and holds finished records in memory until the backend answers.
        """
        self._loop = asyncio.get_running_loop()
        if self.backend is None:
            return
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._barrier = WriteBarrier()
        self._closing = False
        self.store.track_unflushed = True
        self._unsubscribe = self.bus.subscribe(self._on_event)
        await self._connect()
        self._loops = [
            asyncio.create_task(self._flush_loop(), name="taskflow-flush"),
            asyncio.create_task(self._maintenance_loop(), name="taskflow-maintenance"),
        ]

    async def stop(self) -> None:
        """Final flush regardless of the interval, then close the backend."""
        self._closing = True
        self._wake.set()
        if self._live_timer is not None:
            self._live_timer.cancel()
            self._live_timer = None
        for task in self._loops[1:]:
            task.cancel()  # maintenance only sleeps and pings: no need to wait for it
        # Let an in-flight write finish instead of cancelling it: some clients turn a
        # cancellation in mid-command into an ordinary error, which would hide the cancel.
        await _finish_or_cancel(self._loops, FINAL_FLUSH_SECONDS)
        self._loops = []
        if self.backend is None:
            return
        deadline = time.monotonic() + FINAL_FLUSH_SECONDS
        delay = RETRY_FIRST
        while time.monotonic() < deadline:
            if await self.flush():
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
        left = len(self.store.unflushed())
        if left:
            logger.error(
                "taskflow final flush could not write %d finished records to %s",
                left,
                self.backend.describe(),
            )
        if self._unsubscribe is not None:
            self._unsubscribe()
        await self.backend.close()

    @property
    def ready(self) -> bool:
        """True when there is no backend or the backend answered the last time it was asked."""
        return self.backend_ok

    # -- writing ---------------------------------------------------------------------------

    def _on_event(self, kind: EventKind, record: TaskRecord) -> None:
        if kind is EventKind.FINISHED:
            self._wake.set()
        elif self.persist_live:
            self.store.mark_live_dirty(record)
            self._wake_soon()

    def _wake_soon(self) -> None:
        # Live changes (created, started, retrying) are written within LIVE_WRITE_DELAY, not at
        # once: a short task finishes meanwhile and one write carries only its final state.
        # A response waiting for its tasks to be stored (persist_soon()) wakes the flush at once.
        if self._live_timer is None and self._loop is not None:
            self._live_timer = self._loop.call_later(LIVE_WRITE_DELAY, self._live_due)

    def _live_due(self) -> None:
        self._live_timer = None
        self._wake.set()

    def mark_live(self, record: TaskRecord) -> None:
        """Write a live record with the next flush (e.g. after its id was claimed)."""
        if self.persist_live:
            self.store.mark_live_dirty(record)
            self._wake.set()

    def persist_soon(self, timeout: float) -> asyncio.Future[bool] | None:
        """Start a write now; the future resolves True once a write that took its batch after
        this call has succeeded, False after ``timeout``. What a held response awaits, so an
        accepted task is in the backend before its id leaves. None when the backend is not
        ready (nothing to wait for)."""
        if self.backend is None or not self.backend_ok:
            return None
        self._wake.set()
        return self._barrier.ticket(timeout)

    async def flush(self) -> bool:
        """Write every unflushed finished record and changed live record in one batch.

        True when everything is written. Records stay unflushed when the write fails, so
        calling again later loses nothing.
        """
        if self.backend is None:
            return True
        async with self._write_lock:
            finished = self.store.unflushed()
            live = self.store.take_live_dirty() if self.persist_live else []
            taken = self._barrier.take()
            if not finished and not live:
                self._barrier.done(taken)
                return True
            started = time.perf_counter()
            try:
                await self.backend.save(finished + live)
            except (BackendError, OSError) as exc:
                self.store.give_back_live_dirty(live)
                self.flush_failures += 1
                if self.backend_ok:
                    logger.warning(
                        "taskflow flush of %d records to %s failed: %s; will retry",
                        len(finished) + len(live),
                        self.backend.describe(),
                        exc,
                    )
                self.backend_ok = False
                return False
            self.last_flush_seconds = time.perf_counter() - started
            self.flushed_total += len(finished)
            self.writes_total += 1
            self.store.mark_flushed(finished)
            if not self.backend_ok:
                logger.info("taskflow backend %s is reachable again", self.backend.describe())
            self.backend_ok = True
            self._barrier.done(taken)
            return True

    async def _flush_loop(self) -> None:
        # Group commit: everything that finished while a write was in flight goes into the next
        # write, so one transaction carries many records under load and one at low load.
        delay = RETRY_FIRST
        while True:
            await self._wake.wait()
            # One loop turn before taking the batch: tasks that the responses waking us have
            # just started run their first step, and a short one is written once, finished.
            await asyncio.sleep(0)
            self._wake.clear()
            if self._closing:  # stop() sets it, then wakes us: the final flush is its job
                return
            if await self.flush():
                delay = RETRY_FIRST
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            self._wake.set()

    async def _maintenance_loop(self) -> None:
        now = time.monotonic()
        last_flush = last_ping = last_prune = now
        while not self._closing:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            if now - last_flush >= self.interval:
                last_flush = now
                self._wake.set()  # the safety net: write whatever an earlier write could not
            if now - last_ping >= (PING_EVERY if self.backend_ok else TICK_SECONDS * 2):
                last_ping = now
                await self._check_backend()
            if self._retention_on and self.backend_ok and now - last_prune >= PRUNE_EVERY:
                last_prune = now
                await self.apply_retention()

    async def _connect(self) -> None:
        assert self.backend is not None
        try:
            await self.backend.open()
            restored = await self.backend.load_recent(self.restore_limit)
        except (BackendError, OSError) as exc:
            self.backend_ok = False
            logger.error(
                "taskflow backend %s is unreachable at startup: %s; serving from memory "
                "and retrying",
                self.backend.describe(),
                exc,
            )
            return
        self.store.restore(restored)
        self.backend_ok = True
        logger.info(
            "taskflow restored %d recent records from %s", len(restored), self.backend.describe()
        )

    async def _check_backend(self) -> None:
        assert self.backend is not None
        try:
            await self.backend.ping()
        except (BackendError, OSError):
            self.backend_ok = False
            return
        if not self.backend_ok:
            self._wake.set()
            self.backend_ok = True

    @property
    def _retention_on(self) -> bool:
        return self.retention_days is not None or self.max_history is not None

    async def apply_retention(self) -> int:
        """Delete finished history beyond ``retention_days`` and ``max_history``."""
        if self.backend is None or not self._retention_on:
            return 0
        older_than = None
        if self.retention_days is not None:
            older_than = utcnow() - timedelta(days=self.retention_days)
        try:
            removed = await self.backend.prune(older_than=older_than, keep=self.max_history)
        except (BackendError, OSError) as exc:
            logger.warning("taskflow retention on %s failed: %s", self.backend.describe(), exc)
            return 0
        if removed:
            logger.info("taskflow retention removed %d records", removed)
        return removed

    def oldest_unflushed_age(self) -> float | None:
        """Seconds since the oldest unflushed record finished, or ``None`` when all are written."""
        pending = self.store.unflushed()
        if not pending:
            return None
        oldest = min(r.end_time or r.created_at for r in pending)
        return (utcnow() - oldest).total_seconds()

    # -- reading ---------------------------------------------------------------------------

    async def aquery(self, query: TaskQuery) -> Page:
        """This instance's records merged with the backend's history, newest first."""
        local = page_of(self.store, query)
        if self.backend is None:
            return local
        try:
            stored = await self.backend.query(query)
        except (BackendError, OSError) as exc:
            self.backend_ok = False
            logger.warning("taskflow history read from %s failed: %s", self.backend.describe(), exc)
            return local
        return merge_pages([local, stored], query.limit)

    async def aget(self, task_id: str) -> TaskRecord | None:
        """The record with this id from memory or, failing that, from the backend."""
        record = self.store.get(task_id)
        if record is not None or self.backend is None:
            return record
        try:
            return await self.backend.get(task_id)
        except (BackendError, OSError):
            self.backend_ok = False
            return None

    def query(
        self,
        status: str | TaskStatus | None = None,
        func_name: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
    ) -> list[TaskRecord]:
        """History as a plain synchronous call, newest first.

        Works from scripts, from sync route handlers (worker threads) and before the app starts.
        Inside ``async def`` code use ``await scheduler.aquery(TaskQuery.build(...))`` instead.
        """
        query = TaskQuery.build(
            status=status, func_name=func_name, limit=limit, since=since, until=until, cursor=cursor
        )
        return self._run_sync(self._detached_query(query)).records

    async def _detached_query(self, query: TaskQuery) -> Page:
        if self._loop is not None and asyncio.get_running_loop() is self._loop:
            return await self.aquery(query)
        if self.backend is None:
            return page_of(self.store, query)
        backend = self.backend.clone()
        await backend.open()
        try:
            stored = await backend.query(query)
        finally:
            await backend.close()
        return merge_pages([page_of(self.store, query), stored], query.limit)

    def _run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError(
                "query() is the synchronous form and would block the event loop; "
                "in async code use: await task_manager._scheduler.aquery(TaskQuery.build(...))"
            )
        if self._loop is not None and self._loop.is_running():
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
            return future.result(timeout=SYNC_QUERY_TIMEOUT)
        return asyncio.run(coro)


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
