"""/readyz tells the truth: not ready while writes fail (even when pings answer), while a write
hangs, and while the backend cannot be opened, which is retried until it opens.

Real SQLite files throughout; where a fault cannot be made in-process (writes that fail while
reads work, a write that hangs), the real backend's ``save`` is wrapped. The real faults (a full
disk, a stopped Redis) are drilled with real processes in tests/integration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.backends import SqliteBackend
from taskflow.backends.base import BackendError
from tests.helpers import wait_until_idle


class FaultySave:
    """Wraps a real backend's save: ``mode`` "fail" raises BackendError, "hang" never answers
    until set back to "ok"."""

    def __init__(self, backend: SqliteBackend) -> None:
        self.real_save = backend.save
        self.mode = "ok"
        self.released = asyncio.Event()
        backend.save = self.save  # type: ignore[method-assign]

    async def save(self, records: Any) -> list[str]:
        if self.mode == "fail":
            raise BackendError("database or disk is full")
        if self.mode == "hang":
            await self.released.wait()
        return await self.real_save(records)


async def noop() -> None:
    return None


def app_for(manager: TaskManager) -> FastAPI:
    app = FastAPI()
    TaskAdmin(app, manager)
    manager.task(noop)

    @app.post("/enqueue")
    async def enqueue(background_tasks: BackgroundTasks) -> dict[str, str | None]:
        return {"task_id": background_tasks.add_task(noop)}

    return app


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    stack: list[Any] = []

    async def serve(manager: TaskManager) -> httpx.AsyncClient:
        app = app_for(manager)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        stack.append(lifespan)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        stack.append(client)
        return client

    yield serve
    for item in reversed(stack):
        if isinstance(item, httpx.AsyncClient):
            await item.aclose()
        else:
            await item.__aexit__(None, None, None)


async def wait_for_status(client: httpx.AsyncClient, status: int, within: float) -> float:
    """Seconds until /readyz answers ``status``; fails after ``within``."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        if (await client.get("/readyz")).status_code == status:
            return time.monotonic() - began
        await asyncio.sleep(0.05)
    body = (await client.get("/readyz")).json()
    raise AssertionError(f"/readyz did not turn {status} within {within}s: {body}")


async def test_failing_writes_make_it_not_ready_although_pings_answer(
    served: Callable[..., Any], tmp_path: Path
) -> None:
    backend = SqliteBackend(tmp_path / "tasks.db")
    fault = FaultySave(backend)
    manager = TaskManager(snapshot_backend=backend)
    client = await served(manager)
    assert (await client.get("/readyz")).status_code == 200

    fault.mode = "fail"
    ids = [(await client.post("/enqueue")).json()["task_id"] for _ in range(5)]
    await wait_until_idle(manager)
    await wait_for_status(client, 503, within=2)
    await asyncio.sleep(3)  # several pings (every 1 s while not ready) answer meanwhile
    body = (await client.get("/readyz")).json()
    assert body["ready"] is False and body["backend_reachable"] is True
    assert body["backend_writable"] is False and "disk is full" in body["backend_error"]
    assert body["unflushed"] == len(ids)

    fault.mode = "ok"
    await wait_for_status(client, 200, within=8)  # the next retry of the write (backoff)
    assert (await client.get("/readyz")).json()["unflushed"] == 0
    for task_id in ids:
        assert await backend.get(task_id) is not None


async def test_a_hung_write_makes_it_not_ready_and_enqueues_stop_waiting_for_it(
    served: Callable[..., Any], tmp_path: Path
) -> None:
    backend = SqliteBackend(tmp_path / "tasks.db")
    fault = FaultySave(backend)
    manager = TaskManager(snapshot_backend=backend, accept_timeout=1.0)
    client = await served(manager)
    fault.mode = "hang"
    began = time.monotonic()
    first = (await client.post("/enqueue")).json()["task_id"]  # waits accept_timeout at most
    assert time.monotonic() - began < 1.5
    detected = await wait_for_status(client, 503, within=5)
    assert detected < 4.5, detected
    began = time.monotonic()
    later = [(await client.post("/enqueue")).json()["task_id"] for _ in range(5)]
    assert (time.monotonic() - began) / 5 < 0.2  # not ready: no wait for a write
    fault.mode = "ok"
    fault.released.set()
    await wait_for_status(client, 200, within=8)
    for task_id in [first, *later]:
        deadline = time.monotonic() + 5
        while await backend.get(task_id) is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert await backend.get(task_id) is not None


async def test_a_backend_that_cannot_open_at_startup_is_opened_once_it_can(
    served: Callable[..., Any], tmp_path: Path
) -> None:
    blocker = tmp_path / "history"
    blocker.write_text("a file where the database's folder must go")
    manager = TaskManager(snapshot_db=blocker / "tasks.db")
    client = await served(manager)  # starts anyway, serving from memory
    body = (await client.get("/readyz")).json()
    assert body["ready"] is False and "cannot open" in body["backend_error"]
    ids = [(await client.post("/enqueue")).json()["task_id"] for _ in range(3)]
    await wait_until_idle(manager)

    blocker.unlink()
    await wait_for_status(client, 200, within=5)
    reader = SqliteBackend(blocker / "tasks.db")
    await reader.open()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if all([await reader.get(task_id) for task_id in ids]):
                break
            await asyncio.sleep(0.05)
        assert all([await reader.get(task_id) for task_id in ids])
    finally:
        await reader.close()


async def test_a_failing_read_does_not_take_it_out_of_rotation(
    served: Callable[..., Any], tmp_path: Path
) -> None:
    backend = SqliteBackend(tmp_path / "tasks.db")
    manager = TaskManager(snapshot_backend=backend)
    client = await served(manager)

    async def failing_query(query: Any) -> Any:
        raise BackendError("a query the backend refused")

    backend.query = failing_query  # type: ignore[method-assign]
    assert (await client.get("/tasks")).status_code == 200  # served from memory
    assert (await client.get("/readyz")).status_code == 200
