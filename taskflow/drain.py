"""The drain at shutdown: running tasks get ``shutdown_timeout`` seconds (less if a second
signal arrives), the rest are interrupted, and unstarted tasks are parked or interrupted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskflow import recovery
from taskflow.executor import interrupt_unstarted
from taskflow.models import TaskStatus
from taskflow.signals import second_signal_sets

if TYPE_CHECKING:
    from taskflow.manager import TaskManager


@dataclass(frozen=True, slots=True)
class DrainSummary:
    finished: int
    interrupted: int
    parked: int
    forced: bool


async def drain(manager: TaskManager) -> DrainSummary:
    """Bring every task of ``manager`` to rest; what the summary log line reports."""
    running_tasks = manager._running
    # Tasks still waiting for a slot (max_concurrency) never start now; they stay pending
    # (parked or interrupted below). Without slots a pending task was started moments ago and
    # has not taken its first step yet: it runs like the others. Running tasks get
    # shutdown_timeout seconds, then are cancelled (interrupted).
    waiting: list[asyncio.Future[None]] = []
    if manager._slots is not None:
        waiting = [t for t, r in running_tasks.items() if r.status is TaskStatus.PENDING]
    for task in waiting:
        task.cancel()
    running = set(running_tasks) - set(waiting)
    forced = asyncio.Event()
    finished = interrupted = parked = 0
    if running:
        with second_signal_sets(forced):
            done, still = await _wait_unless(running, manager.shutdown_timeout, forced)
        # One cut off before its first step is still pending: counted with the unstarted below.
        started = [t for t in still if running_tasks[t].status is not TaskStatus.PENDING]
        finished, interrupted = len(done), len(started)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)
    await asyncio.gather(*waiting, return_exceptions=True)
    for record in manager.store.live():
        if record.status is TaskStatus.PENDING:
            if recovery.park_pending(manager, record):
                parked += 1
            else:
                interrupt_unstarted(record, manager.bus)
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
