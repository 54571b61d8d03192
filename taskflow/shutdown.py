"""Shutdown, in one place: the two-stage protocol every instance follows when its server stops.

1. The server has stopped accepting requests (uvicorn, gunicorn's worker); the manager stops
   starting tasks.
2. The drain: running tasks get ``shutdown_timeout`` seconds, cut short by a second SIGTERM or
   SIGINT; whatever still runs then is interrupted. Tasks that never started are parked for
   the next instance (``requeue_pending``) or interrupted.
3. The instance leaves the cluster, the final flush writes everything, the backend closes.
4. One summary line is logged.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from taskflow.cluster import ClusterMonitor, park
from taskflow.models import TaskRecord, TaskStatus
from taskflow.persistence.scheduler import SnapshotScheduler
from taskflow.persistence.store import TaskStore
from taskflow.runner import Runner, interrupt_unstarted

logger = logging.getLogger("taskflow")

#: What a second one of these cuts short.
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True, slots=True)
class DrainSummary:
    finished: int
    interrupted: int
    parked: int
    forced: bool


async def shut_down(
    runner: Runner,
    store: TaskStore,
    cluster: ClusterMonitor | None,
    persistence: SnapshotScheduler,
    *,
    timeout: float,
    requeue_pending: bool,
) -> None:
    """Steps 2 to 4 above, for one manager's parts."""
    began = time.monotonic()
    runner.open = False  # nothing starts in a task of its own any more
    parking = _park(persistence) if requeue_pending else None
    summary = await drain(runner, store, timeout=timeout, park=parking)
    if cluster is not None:
        await cluster.stop()
    await persistence.stop()
    runner.close()
    logger.info(
        "taskflow shutdown%s: %d tasks finished during drain, %d interrupted, %d requeued, "
        "%d unflushed, %.2fs",
        " (forced by a second signal)" if summary.forced else "",
        summary.finished,
        summary.interrupted,
        summary.parked,
        len(store.unflushed_ids),
        time.monotonic() - began,
    )


def _park(persistence: SnapshotScheduler) -> Callable[[TaskRecord], bool]:
    def park_for_requeue(record: TaskRecord) -> bool:
        if not park(record):
            return False
        persistence.mark_live(record)  # the final flush writes it under the queue owner
        return True

    return park_for_requeue


async def drain(
    runner: Runner,
    store: TaskStore,
    *,
    timeout: float,
    park: Callable[[TaskRecord], bool] | None = None,
) -> DrainSummary:
    """Bring every task of ``runner`` to rest: what the summary log line reports. ``park``
    decides, for each task that never started, whether it is left for the next instance
    (else it is interrupted)."""
    running_tasks = runner.running
    # Tasks still waiting for a slot (max_concurrency) never start now; they stay pending
    # (parked or interrupted below). Without slots a pending task was started moments ago and
    # has not taken its first step yet: it runs like the others. Running tasks get
    # shutdown_timeout seconds, then are cancelled (interrupted).
    waiting: list[asyncio.Future[None]] = []
    if runner.slots is not None:
        waiting = [t for t, r in running_tasks.items() if r.status is TaskStatus.PENDING]
    for task in waiting:
        task.cancel()
    running = set(running_tasks) - set(waiting)
    forced = asyncio.Event()
    finished = interrupted = parked = 0
    if running:
        with second_signal_sets(forced):
            done, still = await _wait_unless(running, timeout, forced)
        # One cut off before its first step is still pending: counted with the unstarted below.
        started = [t for t in still if running_tasks[t].status is not TaskStatus.PENDING]
        finished, interrupted = len(done), len(started)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)
    await asyncio.gather(*waiting, return_exceptions=True)
    for record in store.live():
        if record.status is TaskStatus.PENDING:
            if park is not None and park(record):
                parked += 1
            else:
                interrupt_unstarted(record, runner.bus)
                interrupted += 1
    return DrainSummary(finished, interrupted, parked, forced.is_set())


async def _wait_unless(
    tasks: set[asyncio.Future[None]], timeout: float, forced: asyncio.Event
) -> tuple[set[asyncio.Future[None]], set[asyncio.Future[None]]]:
    """Wait for ``tasks`` up to ``timeout``, or until ``forced`` is set: (done, still running)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = set(tasks)
    force = asyncio.create_task(forced.wait())
    try:
        while pending and not forced.is_set() and loop.time() < deadline:
            watched: list[asyncio.Future[Any]] = [*pending, force]
            await asyncio.wait(
                watched,
                timeout=deadline - loop.time(),
                return_when=asyncio.FIRST_COMPLETED,
            )
            pending = {t for t in pending if not t.done()}
    finally:
        force.cancel()
    return tasks - pending, pending


@contextmanager
def second_signal_sets(event: asyncio.Event) -> Iterator[None]:
    """While inside, SIGTERM or SIGINT set ``event`` (then reach the previous handler too).

    Does nothing outside the main thread, where Python cannot install signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(event.set)
        chained = previous.get(signum)
        if callable(chained):
            chained(signum, frame)

    for signum in _SIGNALS:
        previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for restored, old in previous.items():
            signal.signal(restored, _restorable(old))


def _restorable(old: Any) -> Callable[..., Any] | int:
    # signal.signal() returns None for handlers not installed from Python; restore the default.
    return signal.SIG_DFL if old is None else old
