"""TaskManager: registration, the store bound under many tasks, submitting outside requests."""

from __future__ import annotations

import gc
import os
import socket
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import Depends, FastAPI

from taskflow import ManagedBackgroundTasks, TaskManager, TaskStatus
from tests.helpers import wait_finished, wait_until_idle


def test_task_decorator_with_and_without_arguments():
    manager = TaskManager()

    @manager.task
    def plain() -> None: ...

    @manager.task(retries=2, delay=0.5, backoff=3.0, name="custom")
    async def configured() -> None: ...

    assert manager.definition("plain").func is plain
    custom = manager.definition("custom")
    assert custom.func is configured
    assert (custom.policy.retries, custom.policy.delay, custom.policy.backoff) == (2, 0.5, 3.0)
    assert plain() is None  # the function comes back unchanged


def test_two_functions_under_one_name_is_a_clear_error():
    manager = TaskManager()

    @manager.task(name="send")
    def first() -> None: ...

    def second() -> None: ...

    with pytest.raises(ValueError, match="task name 'send' is already registered"):
        manager.task(name="send")(second)
    manager.task(name="send")(first)  # registering the same function again is harmless


def test_snapshot_db_and_backend_together_is_an_error():
    with pytest.raises(ValueError, match="not both"):
        TaskManager(snapshot_db="a.db", snapshot_backend="sqlite:///b.db")


def test_instance_id_defaults_to_host_and_pid():
    assert TaskManager().instance_id == f"{socket.gethostname()}-{os.getpid()}"
    assert TaskManager(instance_id="web-1").instance_id == "web-1"


def test_a_forked_worker_works_out_its_own_instance_id():
    parent = TaskManager().instance_id  # cached in this process now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child, as a gunicorn worker is
        os.write(write, TaskManager().instance_id.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 256).decode()
    os.close(read)
    assert child == f"{socket.gethostname()}-{pid}"
    assert TaskManager().instance_id == parent


async def noop(i: int) -> None:
    return None


async def _run_many(manager: TaskManager, count: int, batch: int = 5_000) -> None:
    manager.task(noop)
    for start in range(0, count, batch):
        for i in range(start, min(count, start + batch)):
            manager.submit(noop, i)
        await wait_until_idle(manager)


async def test_100k_tasks_stay_within_the_store_bound_and_memory_stays_flat():
    manager = TaskManager(max_records=2_000)
    await manager.start()
    tracemalloc.start()
    try:
        await _run_many(manager, 20_000)  # fills the window: steady state from here on
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        await _run_many(manager, 80_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
        await manager.stop()
    assert len(manager._store) == 2_000
    assert not manager._store._calls  # exact arguments: the records hold them, not calls
    assert all(r.status is TaskStatus.SUCCESS for r in manager._store)
    # 80,000 more tasks through a full store: memory must not grow with the task count
    # (each record alone is ~1 KiB, so a leak would show as tens of MiB).
    assert grown < 512 * 1024, f"memory grew by {grown / 1024:.0f} KiB"


async def test_fastapi_taskflows_names_startup_shutdown_and_background_tasks(make_client):
    """The seed's spellings work as written there (docs/migrating.md): a lifespan that calls
    ``startup()``/``shutdown()``, and ``Depends(task_manager.background_tasks)``."""
    manager = TaskManager()
    ran: list[str] = []

    @manager.task()
    async def note(text: str) -> None:
        ran.append(text)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await manager.startup()
        yield
        await manager.shutdown()

    app = FastAPI(lifespan=lifespan)

    @app.post("/note")
    async def post_note(
        background_tasks: ManagedBackgroundTasks = Depends(manager.background_tasks),
    ) -> dict[str, str | None]:
        return {"task_id": background_tasks.add_task(note, "hello")}

    async for client in make_client(app):
        assert manager.ready
        task_id = (await client.post("/note")).json()["task_id"]
        record = await wait_finished(manager, task_id)
        assert record.status is TaskStatus.SUCCESS and ran == ["hello"]
    assert not manager.ready  # shutdown() stopped it


async def test_submit_needs_a_started_manager():
    manager = TaskManager()
    with pytest.raises(RuntimeError, match="started manager"):
        manager.submit(print)


async def take(blob: str) -> None:
    return None


async def test_memory_is_bounded_by_bytes_for_large_arguments():
    # 1 MiB arguments are too large to keep (max_args_bytes): neither stored nor held.
    manager = TaskManager(display_func_args=True)
    manager.task(take)
    await manager.start()
    tracemalloc.start()
    try:
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        for n in range(200):
            manager.submit(take, str(n) * (1024 * 1024 // len(str(n))))
            await wait_until_idle(manager)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
        await manager.stop()
    assert grown < 8 * 1024 * 1024, f"memory grew by {grown / 2**20:.0f} MiB for 200 tasks"
    assert all(r.args[0].startswith("<arguments truncated: ") for r in manager._store)


async def test_the_finished_window_is_bounded_by_bytes_as_well_as_count():
    # Arguments just under max_args_bytes are kept exactly: the window's byte bound evicts.
    manager = TaskManager(max_records=10_000, max_bytes=4 * 1024 * 1024)
    manager.task(take)
    await manager.start()
    try:
        for _ in range(400):
            manager.submit(take, "x" * 60_000)
        await wait_until_idle(manager)
    finally:
        await manager.stop()
    assert manager._store.finished_bytes <= 4 * 1024 * 1024
    assert 40 <= len(manager._store) <= 70  # ~61 KB each
    assert all(record.rerunnable for record in manager._store)
