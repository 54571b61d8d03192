"""SnapshotScheduler: restore at startup, flush on completion, periodic and final flush, query."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from taskflow.backends.base import BackendError, SnapshotBackend
from taskflow.events import EventBus, EventKind
from taskflow.models import TaskRecord, TaskStatus, new_task_id, utcnow
from taskflow.persistence.barrier import WriteBarrier
from taskflow.persistence.store import TaskStore
from taskflow.query import Page, TaskQuery, merge_pages, page_of

logger = logging.getLogger("taskflow.persistence.scheduler")

T = TypeVar("T")

#: How often the maintenance loop wakes up (seconds).
TICK_SECONDS = 0.5
#: How often a healthy backend is pinged for readiness (seconds).
PING_EVERY = 2.0
#: Longest a ping may take before the backend counts as unreachable (seconds): a hung server
#: (SIGSTOP, a cut connection) answers nothing, and its client's own timeouts and retries add
#: up to ~20 s.
PING_TIMEOUT = 2.0
#: Longest a write may stay unanswered before readiness turns false (seconds).
STALL_SECONDS = 3.0
#: How often retention runs when it is configured (seconds).
PRUNE_EVERY = 60.0
#: First and largest wait between failed flush attempts (seconds).
RETRY_FIRST, RETRY_MAX = 0.1, 5.0
#: How long the final flush at shutdown keeps retrying a failing backend (seconds).
FINAL_FLUSH_SECONDS = 5.0
#: Longest a change of a live record waits before it is written (seconds).
LIVE_WRITE_DELAY = 0.2
#: Longest opening the backend and reading its recent history may take at startup (seconds).
CONNECT_TIMEOUT = 5.0
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
        #: The backend is open and restored, answered its last ping, and its last write worked.
        self.connected = backend is None
        self.reachable = backend is None
        self.writes_ok = True
        self.stalled = False
        #: Why the backend is not ready (the last error), for /readyz and the metrics.
        self.last_error: str | None = None
        #: Records that could not be encoded even with their values made safe: never written,
        #: still served from this instance's memory.
        self.quarantined = 0
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
        self._write_started: float | None = None
        self._failing_since: float | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the backend, restore recent history and start the flush and maintenance loops.

        A backend that cannot be opened (unreachable, a bad file) is logged and opened again in
        the background until it opens; the instance keeps serving and holds finished records in
        memory (bounded) until then.
        """
        self._loop = asyncio.get_running_loop()
        if self.backend is None:
            return
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._barrier = WriteBarrier()
        self._closing = False
        self.connected = False
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
        await self._final_flush(time.monotonic() + FINAL_FLUSH_SECONDS)
        left = len(self.store.unflushed())
        if left:
            logger.error(
                "taskflow final flush could not write %d finished records to %s",
                left,
                self.backend.describe(),
            )
        if self._unsubscribe is not None:
            self._unsubscribe()
        try:
            await self.backend.close()
        except Exception as exc:  # a shutdown must end; the records are written or reported
            logger.warning("taskflow could not close %s: %s", self.backend.describe(), exc)

    async def _final_flush(self, deadline: float) -> None:
        """Flush until everything is written or ``deadline`` passes, even when the backend hangs
        (each attempt is cut off at the deadline)."""
        delay = RETRY_FIRST
        while (left := deadline - time.monotonic()) > 0:
            try:
                if await asyncio.wait_for(self._final_attempt(), left):
                    return
            except asyncio.TimeoutError:
                return
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, RETRY_MAX)

    async def _final_attempt(self) -> bool:
        if not self.connected:
            await self._connect()
        return self.connected and await self._flush_guarded()

    @property
    def ready(self) -> bool:
        """True when there is no backend, or it is open, answers pings within
        :data:`PING_TIMEOUT`, its last write succeeded and no write has hung for
        :data:`STALL_SECONDS`. Only a successful write clears a failed one: a store that
        answers reads but refuses writes (a full disk) is not ready."""
        return self.connected and self.reachable and self.writes_ok and not self.stalled

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
        if self.backend is None or not self.ready:
            return None
        self._wake.set()
        return self._barrier.ticket(timeout)

    async def flush(self) -> bool:
        """Write every unflushed finished record and changed live record in one batch.

        True when everything is written. Records stay unflushed when the write fails, so
        calling again later loses nothing. A record that cannot be encoded at all is
        quarantined (logged, counted, kept in memory) and the rest of its batch written.
        """
        if self.backend is None:
            return True
        async with self._write_lock:
            if not self.connected:
                return False
            finished = self.store.unflushed()
            live = self.store.take_live_dirty() if self.persist_live else []
            taken = self._barrier.take()
            if not finished and not live:
                self._barrier.done(taken)
                return True
            started = time.perf_counter()
            self._write_started = time.monotonic()
            try:
                refused = await self._save_isolating(finished + live)
            except Exception as exc:  # never ends the flush loop: logged, counted, retried
                self.store.give_back_live_dirty(live)
                self._write_failed(exc, len(finished) + len(live))
                return False
            finally:
                self._write_started = None
                self.stalled = False
            self.last_flush_seconds = time.perf_counter() - started
            self.flushed_total += len(finished)
            self.writes_total += 1
            self.store.mark_flushed(finished)
            if refused:
                self._keep_late_results(set(refused), finished)
            self._write_worked()
            self._barrier.done(taken)
            return True

    async def _save_isolating(self, records: list[TaskRecord]) -> list[str]:
        """Save ``records``; a record that cannot be encoded (even with its values made safe:
        an encoding error, not a backend error) is found by halving the batch and quarantined,
        and every other record is saved. Returns the ids the backend refused (taken over)."""
        assert self.backend is not None
        try:
            return await self.backend.save(records)
        except (BackendError, OSError):
            raise
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            if len(records) == 1:
                self._quarantine(records[0], exc)
                return []
            half = len(records) // 2
            first = await self._save_isolating(records[:half])
            return first + await self._save_isolating(records[half:])

    def _keep_late_results(self, refused: set[str], finished: list[TaskRecord]) -> None:
        """Another instance took these tasks over while this one was cut off (declared gone,
        its heartbeats unseen): the stored record under each id is the taker's (interrupted, or
        its rerun), and this instance's own finished result is kept beside it as a new record,
        ``late_of`` the original, instead of overwriting it. A task still running here ends
        the same way when it finishes."""
        late_of = {}
        for record in finished:
            if record.task_id in refused:
                late = dataclasses.replace(record, task_id=new_task_id(), late_of=record.task_id)
                late_of[late.task_id] = record.task_id
                self.store.discard(record.task_id)  # the taker's stored record is the one shown
                self.bus.publish(EventKind.FINISHED, late)  # stored with the next write
        logger.warning(
            "taskflow instance was declared gone by the cluster while it ran %d tasks (its "
            "heartbeats went unseen): another instance took them over. Its own results are "
            "kept as late results: %s%s",
            len(refused),
            ", ".join(f"{late} (late result of {original})" for late, original in late_of.items())
            or "none finished yet",
            "; the rest are still running here" if len(late_of) < len(refused) else "",
        )

    def _quarantine(self, record: TaskRecord, exc: BaseException) -> None:
        self.quarantined += 1
        logger.error(
            "taskflow cannot store task %r (%r): %s: %s; it is kept in this instance's memory "
            "only (quarantined)",
            record.task_id,
            record.func_name,
            type(exc).__name__,
            exc,
        )
        self.store.quarantine(record)

    def _write_failed(self, exc: BaseException, count: int) -> None:
        assert self.backend is not None
        self.flush_failures += 1
        self.last_error = f"write failed: {type(exc).__name__}: {exc}"
        if self.writes_ok:  # once per outage, not at every retry
            expected = isinstance(exc, (BackendError, OSError))
            logger.warning(
                "taskflow flush of %d records to %s failed: %s; will retry",
                count,
                self.backend.describe(),
                self.last_error,
                exc_info=None if expected else exc,
            )
        self.writes_ok = False

    def _write_worked(self) -> None:
        assert self.backend is not None
        if not self.ready:
            logger.info("taskflow backend %s is writable again", self.backend.describe())
        self.writes_ok = self.reachable = True
        self.last_error = None

    async def _flush_guarded(self) -> bool:
        try:
            return await self.flush()
        except Exception:  # flush() handles write errors; this is a bug: keep the loop alive
            logger.exception("taskflow flush failed unexpectedly; will retry")
            self.flush_failures += 1
            return False

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
            if await self._flush_guarded():
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
            self._check_stall(now)
            if now - last_flush >= self.interval:
                last_flush = now
                self._wake.set()  # the safety net: write whatever an earlier write could not
            if now - last_ping >= (PING_EVERY if self.ready else TICK_SECONDS * 2):
                last_ping = now
                await self._check_backend()
            if self._retention_on and self.ready and now - last_prune >= PRUNE_EVERY:
                last_prune = now
                await self.apply_retention()

    def _check_stall(self, now: float) -> None:
        started = self._write_started
        if started is not None and now - started >= STALL_SECONDS and not self.stalled:
            assert self.backend is not None
            self.stalled = True
            self.last_error = f"a write has not been answered for {now - started:.1f}s"
            logger.warning(
                "taskflow backend %s: %s; not ready until it answers",
                self.backend.describe(),
                self.last_error,
            )

    async def _connect(self) -> None:
        assert self.backend is not None
        try:
            await asyncio.wait_for(self._open_and_restore(), CONNECT_TIMEOUT)
        except Exception as exc:  # whatever opening raises, the instance serves from memory
            self.reachable = False
            error = f"cannot open: {type(exc).__name__}: {exc}"
            if error != self.last_error:  # once per kind of failure, not every retry
                logger.error(
                    "taskflow backend %s: %s; serving from memory and retrying",
                    self.backend.describe(),
                    error,
                )
            self.last_error = error
            return
        self.connected = self.reachable = True
        self.last_error = None if self.writes_ok else self.last_error
        self._wake.set()  # whatever waited for the backend goes now

    async def _open_and_restore(self) -> None:
        assert self.backend is not None
        await self.backend.open()
        restored = await self.backend.load_recent(self.restore_limit)
        self.store.restore(restored)
        logger.info(
            "taskflow restored %d recent records from %s", len(restored), self.backend.describe()
        )

    async def _check_backend(self) -> None:
        assert self.backend is not None
        if not self.connected:
            await self._connect()
            return
        try:
            await asyncio.wait_for(self.backend.ping(), PING_TIMEOUT)
        except Exception as exc:
            if self.reachable:
                logger.warning(
                    "taskflow backend %s does not answer: %s", self.backend.describe(), exc
                )
            self.reachable = False
            self.last_error = f"ping failed: {type(exc).__name__}: {exc}"
            return
        if not self.reachable:
            self.reachable = True
            self.last_error = None if self.writes_ok else self.last_error
        if not self.writes_ok:
            self._wake.set()  # only a write that works makes the backend ready again

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
        except Exception as exc:  # retention is upkeep: it must never end the maintenance loop
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
        if self.backend is None or not self.connected:
            return local
        try:
            stored = await self.backend.query(query)
        except (BackendError, OSError) as exc:
            # Readiness is the pings' and the writes' to say: a read failing alone (and a
            # query no backend could serve) must not take the instance out of rotation.
            logger.warning("taskflow history read from %s failed: %s", self.backend.describe(), exc)
            return local
        return merge_pages([local, stored], query.limit)

    async def aget(self, task_id: str) -> TaskRecord | None:
        """The record with this id from memory or, failing that, from the backend; raises
        :class:`~taskflow.backends.codec.UnreadableRecord` for one stored but unreadable."""
        record = self.store.get(task_id)
        if record is not None or self.backend is None or not self.connected:
            return record
        try:
            return await self.backend.get(task_id)
        except (BackendError, OSError) as exc:
            logger.warning("taskflow read of %s failed: %s", task_id, exc)
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
                "in async code use: await task_manager.aquery(...)"
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
