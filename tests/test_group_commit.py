"""Group commit: tasks that finish together share backend writes, and the metrics show how many."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from taskflow import TaskManager
from taskflow.backends import SqliteBackend
from taskflow.metrics import collect
from tests.helpers import wait_until_idle

TASKS = 200


async def noop(i: int) -> None:
    return None


async def test_a_burst_is_written_in_far_fewer_writes_than_tasks(tmp_path: Path) -> None:
    manager = TaskManager(snapshot_backend=SqliteBackend(tmp_path / "tasks.db"))
    manager.task(noop)
    await manager.start()
    try:
        for i in range(TASKS):
            manager.submit(noop, i)
        await wait_until_idle(manager)
        deadline = time.monotonic() + 10
        while manager.store.unflushed() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        persistence = (await collect(manager))["persistence"]
    finally:
        await manager.stop()
    assert persistence["flushed_total"] == TASKS
    # One write per task would be 200 (plus the live records' writes); a burst shares them.
    assert 1 <= persistence["flush_writes_total"] < TASKS / 4, persistence
