"""The drain at shutdown and tasks that started moments before it.

A task started in the same loop turn as the shutdown has not taken its first step yet, so its
record is still pending. Without ``max_concurrency`` nothing is waiting for a slot: such a task
must run during the drain like any other, not be interrupted unrun.
"""

from __future__ import annotations

import asyncio

import httpx
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager, TaskStatus


def _manager_with_job(ran: list[str], **options: object) -> tuple[TaskManager, object]:
    manager = TaskManager(shutdown_timeout=5, **options)  # type: ignore[arg-type]

    @manager.task()
    async def job(name: str) -> None:
        await asyncio.sleep(0.01)
        ran.append(name)

    return manager, job


async def test_a_task_submitted_just_before_shutdown_runs_during_the_drain():
    ran: list[str] = []
    manager, job = _manager_with_job(ran)
    await manager.start()
    task_id = manager.submit(job, "late")
    await manager.stop()
    record = manager.store.get(task_id)
    assert record is not None and record.status is TaskStatus.SUCCESS, record
    assert ran == ["late"]


async def test_the_task_of_a_response_sent_just_before_shutdown_runs_during_the_drain():
    ran: list[str] = []
    manager, job = _manager_with_job(ran)
    app = FastAPI()
    TaskAdmin(app, manager)

    @app.post("/send")
    async def send(background_tasks: BackgroundTasks) -> dict[str, object]:
        return {"id": background_tasks.add_task(job, "after-response")}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            task_id = (await client.post("/send")).json()["id"]
    record = manager.store.get(task_id)
    assert record is not None and record.status is TaskStatus.SUCCESS, record
    assert ran == ["after-response"]


async def test_with_max_concurrency_a_task_waiting_for_a_slot_does_not_start_in_the_drain():
    ran: list[str] = []
    manager, job = _manager_with_job(ran, max_concurrency=1)
    await manager.start()
    first = manager.submit(job, "first")
    await asyncio.sleep(0)  # the first task takes the only slot
    waiting = manager.submit(job, "waiting")
    await manager.stop()
    assert manager.store.get(first).status is TaskStatus.SUCCESS  # type: ignore[union-attr]
    assert manager.store.get(waiting).status is TaskStatus.INTERRUPTED  # type: ignore[union-attr]
    assert ran == ["first"]


async def test_a_task_cut_off_before_its_first_step_is_counted_once(caplog):
    ran: list[str] = []
    manager, job = _manager_with_job(ran)
    manager.shutdown_timeout = 0
    await manager.start()
    task_id = manager.submit(job, "cut off")
    caplog.set_level("INFO", logger="taskflow")
    await manager.stop()
    assert manager.store.get(task_id).status is TaskStatus.INTERRUPTED  # type: ignore[union-attr]
    assert ran == []
    (summary,) = [r.getMessage() for r in caplog.records if "taskflow shutdown" in r.getMessage()]
    assert "0 tasks finished during drain, 1 interrupted" in summary, summary
