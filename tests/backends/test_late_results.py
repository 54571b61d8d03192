"""An instance declared gone while it still ran a task: both runs stay in the history.

Two real managers share one store. web-1 stops heartbeating (its interval is long), web-2
expires it and takes its running task over; web-1's task then finishes. Its result must not
overwrite web-2's verdict: it is stored beside it as a late result.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from taskflow import TaskManager, TaskStatus
from taskflow.query import TaskQuery
from tests.backends.conftest import Store


async def test_a_late_result_is_kept_beside_the_survivors_record(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    cut_off = TaskManager(
        snapshot_backend=store.make(),
        instance_id="web-1",
        heartbeat_interval=60,
        instance_expiry=120,
    )
    survivor = TaskManager(
        snapshot_backend=store.make(),
        instance_id="web-2",
        heartbeat_interval=0.1,
        instance_expiry=0.5,
    )

    @cut_off.task()
    async def report(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    await cut_off.start()
    try:
        task_id = cut_off.submit(report, 2.0)
        await survivor.start()
        try:
            with caplog.at_level(logging.WARNING):
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    stored = await survivor.aget(task_id)
                    late = [r for r in await survivor.aquery(limit=50) if r.late_of == task_id]
                    if stored is not None and stored.status.finished and late:
                        break
                    await asyncio.sleep(0.1)
        finally:
            await survivor.stop()
    finally:
        await cut_off.stop()

    reader = store.make()
    await reader.open()
    original = await reader.get(task_id)
    assert original is not None
    assert original.status is TaskStatus.INTERRUPTED
    assert original.instance_id == "web-2"
    assert "web-1 was lost" in (original.error or "")
    history = (await reader.query(TaskQuery(limit=100))).records
    late = [r for r in history if r.late_of == task_id]
    assert len(late) == 1, history
    assert late[0].status is TaskStatus.SUCCESS and late[0].instance_id == "web-1"
    assert late[0].task_id != task_id
    assert not [r for r in history if not r.status.finished]  # nothing stays live
    assert "declared gone" in caplog.text and late[0].task_id in caplog.text
