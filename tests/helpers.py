"""Small helpers for tests (imported as ``tests.helpers``)."""

from __future__ import annotations

import asyncio
import time

from taskflow import TaskManager, TaskRecord


async def wait_finished(manager: TaskManager, task_id: str, timeout: float = 5.0) -> TaskRecord:
    """Poll until the task reaches a terminal status; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = manager.get(task_id)
        if record is not None and record.status.finished:
            return record
        await asyncio.sleep(0.005)
    raise AssertionError(f"task {task_id} did not finish within {timeout}s: {record}")


async def wait_until_idle(manager: TaskManager, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while manager.live_tasks():
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(manager.live_tasks())} tasks still live after {timeout}s")
        await asyncio.sleep(0.01)
