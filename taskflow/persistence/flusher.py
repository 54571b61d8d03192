"""The group-commit flusher: moves this instance's records from memory to the backend.

Terminal records are written at once and live ones within :data:`LIVE_WRITE_DELAY`; whatever
finished while a write was in flight goes into the next write, so one transaction carries many
records under load and one at low load. A write that fails keeps its records (bounded in the
store) and is retried with backoff; one value that cannot be encoded never stops the rest
(the record is quarantined); a record another instance took over is kept as a late result.
A response waiting for its tasks to be stored (durable acceptance) holds a ticket of the
:class:`WriteBarrier`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from taskflow.backends.base import BackendError, HistoryBackend
from taskflow.events import EventBus, EventKind
from taskflow.models import TaskRecord, new_task_id, utcnow
from taskflow.persistence.health import BackendHealth
from taskflow.persistence.store import TaskStore

logger = logging.getLogger("taskflow.persistence")

#: First and largest wait between failed flush attempts (seconds).
RETRY_FIRST, RETRY_MAX = 0.1, 5.0
#: Longest a change of a live record waits before it is written (seconds).
LIVE_WRITE_DELAY = 0.2
#: Waiters kept before the ones that already timed out are swept out (a backend that hangs
#: without failing would otherwise collect one per request until its socket timeout).
SWEEP_AT = 10_000


class Flusher:
    """Writes one instance's records to ``backend``; its outcome goes to ``health``."""

    def __init__(
        self,
        store: TaskStore,
        bus: EventBus,
        backend: HistoryBackend,
        health: BackendHealth,
        *,
        persist_live: bool,
    ) -> None:
        self.store = store
        self.bus = bus
        self.backend = backend
        self.health = health
        self.persist_live = persist_live
        #: Records that could not be encoded even with their values made safe: never written,
        #: still served from this instance's memory.
        self.quarantined = 0
        self.flush_failures = 0
        self.flushed_total = 0
        #: Successful backend writes; flushed records per write is the group commit's batch size.
        self.writes_total = 0
        self.last_flush_seconds: float | None = None
        #: When the write in flight began (monotonic), for the upkeep's stall check.
        self.write_started: float | None = None
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._barrier = WriteBarrier()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live_timer: asyncio.TimerHandle | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._closing = False

    def start(self) -> asyncio.Task[None]:
        """Listen to the lifecycle events and start the flush loop (returned)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._barrier = WriteBarrier()
        self._closing = False
        self.store.track_unflushed = True
        self._unsubscribe = self.bus.subscribe(self._on_event)
        return asyncio.create_task(self._flush_loop(), name="taskflow-flush")

    def closing(self) -> None:
        """The shutdown's final flush takes over from the loop (which returns)."""
        self._closing = True
        self._wake.set()
        if self._live_timer is not None:
            self._live_timer.cancel()
            self._live_timer = None

    def stop_listening(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def wake(self) -> None:
        """Write now whatever waits (the safety net, a backend that is back)."""
        self._wake.set()

    # -- what others ask for -----------------------------------------------------------------

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

    def persist_soon(self, timeout: float) -> Awaitable[bool] | None:
        """Start a write now; the awaitable resolves True once a write that took its batch
        after this call has succeeded, False after ``timeout``. What a held response awaits,
        so an accepted task is in the backend before its id leaves. None when the backend is
        not ready (nothing to wait for)."""
        if not self.health.ready:
            return None
        self._wake.set()
        return self._barrier.ticket(timeout)

    def oldest_unflushed_age(self) -> float | None:
        """Seconds since the oldest unflushed record finished, or ``None`` when all are written."""
        pending = self.store.unflushed()
        if not pending:
            return None
        oldest = min(r.end_time or r.created_at for r in pending)
        return (utcnow() - oldest).total_seconds()

    # -- writing ---------------------------------------------------------------------------
    async def flush(self) -> bool:
        """Write every unflushed finished record and changed live record in one batch.

        True when everything is written. Records stay unflushed when the write fails, so
        calling again later loses nothing. A record that cannot be encoded at all is
        quarantined (logged, counted, kept in memory) and the rest of its batch written.
        """
        async with self._write_lock:
            if not self.health.connected:
                return False
            finished = self.store.unflushed()
            live = self.store.take_live_dirty() if self.persist_live else []
            taken = self._barrier.take()
            if not finished and not live:
                self._barrier.done(taken)
                return True
            started = time.perf_counter()
            self.write_started = time.monotonic()
            try:
                refused = await self._save_isolating(finished + live)
            except Exception as exc:  # never ends the flush loop: logged, counted, retried
                self.store.give_back_live_dirty(live)
                self._write_failed(exc, len(finished) + len(live))
                return False
            finally:
                self.write_started = None
                self.health.stalled = False
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
        health = self.health
        self.flush_failures += 1
        health.last_error = f"write failed: {type(exc).__name__}: {exc}"
        if health.writes_ok:  # once per outage, not at every retry
            expected = isinstance(exc, (BackendError, OSError))
            logger.warning(
                "taskflow flush of %d records to %s failed: %s; will retry",
                count,
                self.backend.describe(),
                health.last_error,
                exc_info=None if expected else exc,
            )
        health.writes_ok = False

    def _write_worked(self) -> None:
        health = self.health
        if not health.ready:
            logger.info("taskflow backend %s is writable again", self.backend.describe())
        health.writes_ok = health.reachable = True
        health.clear_error()

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

    async def final_flush(self, deadline: float, connect: Callable[[], Awaitable[None]]) -> None:
        """At shutdown: flush until everything is written or ``deadline`` passes, even when the
        backend hangs (each attempt is cut off at the deadline); ``connect`` opens a backend
        that was never opened."""
        delay = RETRY_FIRST
        while (left := deadline - time.monotonic()) > 0:
            try:
                if await asyncio.wait_for(self._final_attempt(connect), left):
                    return
            except asyncio.TimeoutError:
                return
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, RETRY_MAX)

    async def _final_attempt(self, connect: Callable[[], Awaitable[None]]) -> bool:
        if not self.health.connected:
            await connect()
        return self.health.connected and await self._flush_guarded()


class WriteBarrier:
    """Numbers the backend writes in the order they take their batches.

    A write calls :meth:`take` when it takes its batch from the store and :meth:`done` with
    that number once it succeeded. A :meth:`ticket` resolves when a write that took its batch
    after the call has succeeded: that write carried whatever the caller had changed before it.

    One future per waiter, resolved in order: cheaper than a Condition, whose ``notify_all``
    makes every waiter take its lock again in turn. One timer for all waiters' timeouts,
    armed for the nearest deadline, instead of a timer started and cancelled per waiter.
    """

    def __init__(self) -> None:
        self._taken = 0
        self._waiters: deque[tuple[int, float, asyncio.Future[bool]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def take(self) -> int:
        """A write takes its batch now: its number."""
        self._taken += 1
        return self._taken

    def done(self, number: int) -> None:
        """Write ``number`` succeeded (so did every write before it, or it was retried in it)."""
        waiters = self._waiters
        while waiters and waiters[0][0] <= number:
            waiter = waiters.popleft()[2]
            if not waiter.done():
                waiter.set_result(True)

    def ticket(self, timeout: float) -> asyncio.Future[bool]:
        """A future that a write taking its batch after this call resolves once it succeeded
        (True), or ``timeout`` does (False). Taken now, awaited whenever the caller is ready."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        if len(self._waiters) >= SWEEP_AT:
            self._waiters = deque(entry for entry in self._waiters if not entry[2].done())
        deadline = loop.time() + timeout
        self._waiters.append((self._taken + 1, deadline, waiter))
        if self._timer is None or deadline < self._timer_at:
            self._arm(loop, deadline)
        return waiter

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(deadline, self._expire, loop)
        self._timer_at = deadline

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let go of every waiter past its deadline; arm the timer for the nearest one left."""
        self._timer = None
        now = loop.time()
        nearest: float | None = None
        for _, deadline, waiter in self._waiters:
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_result(False)
            elif nearest is None or deadline < nearest:
                nearest = deadline
        if nearest is not None:
            self._arm(loop, nearest)
