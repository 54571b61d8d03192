"""A sync route handler (``def``) queues tasks from a worker thread; what it sets off on the
event loop must still happen on the loop."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager, TaskStatus
from tests.helpers import wait_finished


async def test_a_sync_route_queues_tasks_with_a_backend(
    tmp_path: Path, make_client, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)  # then a loop call from another thread raises instead of racing
    try:
        manager = TaskManager(snapshot_db=tmp_path / "tasks.db")
        app = FastAPI()
        TaskAdmin(app, manager)
        ran: list[int] = []

        @manager.task()
        def job(n: int) -> None:
            ran.append(n)

        @app.post("/sync")
        def sync_route(background_tasks: BackgroundTasks) -> dict[str, str | None]:
            return {"task_id": background_tasks.add_task(job, 1)}

        with caplog.at_level(logging.ERROR, logger="taskflow.events"):
            async for client in make_client(app):
                task_ids = [(await client.post("/sync")).json()["task_id"] for _ in range(5)]
                records = [await wait_finished(manager, task_id) for task_id in task_ids]
                flushed = await manager.flush()
                stored = [await manager.backend.get(t) for t in task_ids]  # type: ignore[union-attr]
    finally:
        loop.set_debug(False)
    failures = [r.getMessage() for r in caplog.records if r.name == "taskflow.events"]
    assert failures == []
    assert ran == [1] * 5
    assert {r.status for r in records} == {TaskStatus.SUCCESS}
    assert flushed and all(s is not None and s.status is TaskStatus.SUCCESS for s in stored)
