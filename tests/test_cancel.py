"""Cancelling tasks, per-attempt timeouts and task_context(), in one process.

The cross-instance proofs with real server processes are in tests/integration/test_cancel.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from taskflow import CancelRefused, TaskAdmin, TaskManager, TaskStatus, task_context
from tests.helpers import wait_finished


@pytest.fixture
async def manager() -> AsyncIterator[TaskManager]:
    manager = TaskManager(instance_id="web-1", shutdown_timeout=1.0)
    await manager.start()
    try:
        yield manager
    finally:
        await manager.stop()


async def wait_status(manager: TaskManager, task_id: str, status: TaskStatus) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        record = manager.get(task_id)
        if record is not None and record.status is status:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"task {task_id} never became {status.value}: {manager.get(task_id)}")


async def test_a_running_async_task_is_cancelled(manager: TaskManager) -> None:
    seen: list[str] = []

    @manager.task
    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task_id = manager.submit(slow)
    await wait_status(manager, task_id, TaskStatus.RUNNING)
    await manager.cancel(task_id)
    record = await wait_finished(manager, task_id)
    assert record.status is TaskStatus.CANCELLED
    assert seen == ["cancelled"]
    assert record.error and record.error.startswith("cancelled")
    assert record.end_time is not None


async def test_a_pending_task_never_starts() -> None:
    manager = TaskManager(max_concurrency=1, shutdown_timeout=1.0)
    started: list[str] = []
    release = asyncio.Event()

    @manager.task
    async def hold() -> None:
        await release.wait()

    @manager.task
    async def waiting() -> None:
        started.append("waiting")

    await manager.start()
    try:
        first = manager.submit(hold)
        second = manager.submit(waiting)
        await wait_status(manager, first, TaskStatus.RUNNING)
        assert manager.get(second).status is TaskStatus.PENDING  # type: ignore[union-attr]
        record = await manager.cancel(second)
        assert record.status is TaskStatus.CANCELLED
        release.set()
        assert (await wait_finished(manager, first)).status is TaskStatus.SUCCESS
        await asyncio.sleep(0.05)
        assert started == []
        assert manager.get(second).status is TaskStatus.CANCELLED  # type: ignore[union-attr]
    finally:
        await manager.stop()


async def test_a_sync_task_sees_the_flag_and_is_cancelled_when_it_returns(
    manager: TaskManager,
) -> None:
    steps: list[int] = []
    inside = threading.Event()

    @manager.task
    def crunch() -> str:
        for step in range(3000):
            inside.set()
            if task_context().cancelled:
                return "stopped early"
            steps.append(step)
            time.sleep(0.001)
        return "done"

    task_id = manager.submit(crunch)
    await asyncio.to_thread(inside.wait, 5)
    await manager.cancel(task_id)
    # Still running: the thread decides when it returns.
    record = await wait_finished(manager, task_id)
    assert record.status is TaskStatus.CANCELLED
    assert len(steps) < 3000


async def test_a_sync_task_that_ignores_the_flag_is_cancelled_once_it_returns(
    manager: TaskManager,
) -> None:
    inside = threading.Event()

    @manager.task
    def stubborn() -> None:
        inside.set()
        time.sleep(0.3)

    task_id = manager.submit(stubborn)
    await asyncio.to_thread(inside.wait, 5)
    await manager.cancel(task_id)
    await asyncio.sleep(0.1)
    assert manager.get(task_id).status is TaskStatus.RUNNING  # type: ignore[union-attr]
    record = await wait_finished(manager, task_id)
    assert record.status is TaskStatus.CANCELLED
    assert record.duration is not None and record.duration >= 0.3


async def test_cancelling_a_finished_or_unknown_task_is_refused(manager: TaskManager) -> None:
    @manager.task
    async def quick() -> None: ...

    task_id = manager.submit(quick)
    await wait_finished(manager, task_id)
    with pytest.raises(CancelRefused, match="has finished"):
        await manager.cancel(task_id)
    with pytest.raises(KeyError):
        await manager.cancel("0" * 32)


async def test_a_task_cancelled_during_its_backoff_does_not_retry(manager: TaskManager) -> None:
    attempts: list[int] = []
    tried = asyncio.Event()

    @manager.task(retries=5, delay=30)
    async def flaky() -> None:
        attempts.append(1)
        tried.set()
        raise RuntimeError("no")

    task_id = manager.submit(flaky)
    await asyncio.wait_for(tried.wait(), 5)
    await asyncio.sleep(0.02)
    await manager.cancel(task_id)
    record = await wait_finished(manager, task_id)
    assert record.status is TaskStatus.CANCELLED
    assert attempts == [1]


async def test_a_cancelled_task_can_be_retried(manager: TaskManager) -> None:
    @manager.task
    async def slow(n: int) -> None:
        await asyncio.sleep(30 if n else 0)

    task_id = manager.submit(slow, 1)
    await wait_status(manager, task_id, TaskStatus.RUNNING)
    await manager.cancel(task_id)
    await wait_finished(manager, task_id)
    assert manager.can_retry(manager.get(task_id))  # type: ignore[arg-type]


async def test_the_api_cancels_and_answers_404_and_409(manager: TaskManager) -> None:
    app = FastAPI()
    TaskAdmin(app, manager)

    @manager.task
    async def slow() -> None:
        await asyncio.sleep(30)

    task_id = manager.submit(slow)
    await wait_status(manager, task_id, TaskStatus.RUNNING)
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(f"/tasks/{task_id}/cancel")
        assert response.status_code == 202, response.text
        assert response.json()["task_id"] == task_id
        await wait_finished(manager, task_id)
        assert (await client.post(f"/tasks/{task_id}/cancel")).status_code == 409
        assert (await client.post(f"/tasks/{'0' * 32}/cancel")).status_code == 404
        listed = (await client.get("/tasks", params={"status": "cancelled"})).json()["items"]
        assert [item["task_id"] for item in listed] == [task_id]
        metrics = (await client.get("/tasks/metrics")).json()
        assert metrics["by_status"]["cancelled"] == 1


async def test_the_api_needs_the_admin_token_to_cancel(manager: TaskManager) -> None:
    app = FastAPI()
    TaskAdmin(app, manager, admin_token="s3cret-token-for-tests")

    @manager.task
    async def slow() -> None:
        await asyncio.sleep(30)

    task_id = manager.submit(slow)
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post(f"/tasks/{task_id}/cancel")).status_code == 401
        assert manager.get(task_id).status is not TaskStatus.CANCELLED  # type: ignore[union-attr]
        headers = {"Authorization": "Bearer s3cret-token-for-tests"}
        response = await client.post(f"/tasks/{task_id}/cancel", headers=headers)
        assert response.status_code == 202
    assert (await wait_finished(manager, task_id)).status is TaskStatus.CANCELLED


async def test_task_context_knows_the_task(manager: TaskManager) -> None:
    seen: dict[str, object] = {}

    @manager.task(retries=1)
    async def inspect_me() -> None:
        context = task_context()
        seen.update(
            task_id=context.task_id,
            func_name=context.func_name,
            attempt=context.attempt,
            instance_id=context.instance_id,
            cancelled=context.cancelled,
        )
        if context.attempt == 1:
            raise RuntimeError("again")

    @manager.task
    def inspect_sync() -> None:
        seen["sync"] = (task_context().task_id, task_context().attempt)

    task_id = manager.submit(inspect_me)
    await wait_finished(manager, task_id)
    assert seen == {
        "task_id": task_id,
        "func_name": "inspect_me",
        "attempt": 2,
        "instance_id": "web-1",
        "cancelled": False,
    }
    sync_id = manager.submit(inspect_sync)
    await wait_finished(manager, sync_id)
    assert seen["sync"] == (sync_id, 1)
    with pytest.raises(RuntimeError, match="only available inside a task"):
        task_context()


async def test_an_async_attempt_that_runs_out_fails_and_is_retried(manager: TaskManager) -> None:
    attempts: list[int] = []

    @manager.task(timeout=0.1, retries=1)
    async def sleepy() -> None:
        attempts.append(task_context().attempt)
        await asyncio.sleep(30)

    record = await wait_finished(manager, manager.submit(sleepy))
    assert record.status is TaskStatus.FAILED
    assert attempts == [1, 2]
    assert record.attempts == 2
    assert record.error == "AttemptTimedOut: attempt 2 ran longer than its timeout of 0.1 s"


async def test_a_sync_attempt_that_runs_out_is_failed_at_the_deadline(
    manager: TaskManager,
) -> None:
    flags: list[bool] = []

    @manager.task(timeout=0.1)
    def stuck() -> None:
        time.sleep(0.4)
        flags.append(task_context().cancelled)  # asked to stop: its attempt ran out

    started = time.monotonic()
    record = await wait_finished(manager, manager.submit(stuck))
    assert time.monotonic() - started < 0.35  # failed at the deadline, not when it returned
    assert record.status is TaskStatus.FAILED
    assert "timeout of 0.1 s" in (record.error or "")
    await asyncio.sleep(0.45)
    assert flags == [True]


async def test_a_task_raising_its_own_timeout_error_is_not_a_deadline(
    manager: TaskManager,
) -> None:
    @manager.task(timeout=5)
    async def own() -> None:
        raise TimeoutError("the mail server was slow")

    record = await wait_finished(manager, manager.submit(own))
    assert record.error == "TimeoutError: the mail server was slow"


async def test_a_quick_task_with_a_timeout_succeeds(manager: TaskManager) -> None:
    @manager.task(timeout=5)
    async def quick() -> int:
        return 1

    assert (await wait_finished(manager, manager.submit(quick))).status is TaskStatus.SUCCESS


def test_a_timeout_must_be_positive() -> None:
    manager = TaskManager()
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="timeout"):
            manager.task(timeout=bad)


async def test_a_request_from_another_instance_reaches_the_task(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    runner = TaskManager(snapshot_db=path, instance_id="a", cancel_poll_interval=0.05)
    other = TaskManager(snapshot_db=path, instance_id="b", cancel_poll_interval=0.05)

    @runner.task
    async def slow() -> None:
        await asyncio.sleep(30)

    await runner.start()
    await other.start()
    try:
        task_id = runner.submit(slow)
        await wait_status(runner, task_id, TaskStatus.RUNNING)
        await runner.flush()
        asked = time.monotonic()
        record = await other.cancel(task_id)
        assert record.status is TaskStatus.RUNNING  # asked; instance a stops it
        finished = await wait_finished(runner, task_id)
        assert finished.status is TaskStatus.CANCELLED
        assert time.monotonic() - asked < 1.0
        await runner.flush()
        assert (await other.aget(task_id)).status is TaskStatus.CANCELLED  # type: ignore[union-attr]
        with pytest.raises(CancelRefused):
            await other.cancel(task_id)
    finally:
        await other.stop()
        await runner.stop()


async def test_a_parked_or_orphaned_task_is_cancelled_in_the_backend(tmp_path: Path) -> None:
    from taskflow.models import TaskRecord

    manager = TaskManager(
        snapshot_db=tmp_path / "tasks.db",
        instance_id="b",
        heartbeat_interval=30,
        instance_expiry=90,
    )
    await manager.start()
    try:
        backend = manager.backend
        assert backend is not None
        parked = TaskRecord("p" * 32, "nightly", instance_id="", rerunnable=True, args=[])
        orphan = TaskRecord("o" * 32, "nightly", TaskStatus.RUNNING, instance_id="ghost-1")
        await backend.save([parked, orphan])
        for record in (parked, orphan):
            answer = await manager.cancel(record.task_id)
            assert answer.status is TaskStatus.CANCELLED
            stored = await backend.get(record.task_id)
            assert stored is not None and stored.status is TaskStatus.CANCELLED
            assert stored.instance_id == record.instance_id  # saved as its owner's
        assert await backend.live_owners() == set()  # nothing left for a claimer to run
    finally:
        await manager.stop()
