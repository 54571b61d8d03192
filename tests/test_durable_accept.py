"""Durable acceptance: a response that returns task ids is released only once those tasks are
in the backend, whether the response is whole or streamed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import BackgroundTasks, Depends, FastAPI
from fastapi.responses import StreamingResponse

from taskflow import TaskAdmin, TaskManager
from taskflow.backends import SqliteBackend


class _Gated(SqliteBackend):
    """A real SQLite backend whose task writes wait until the test opens the gate."""

    gate: asyncio.Event

    async def save(self, records):  # type: ignore[no-untyped-def]
        await self.gate.wait()
        await super().save(records)


async def _slow() -> None:
    await asyncio.sleep(30)  # still running when the response is released: stored as live


def _app(tmp_path: Path, *, auto_install: bool = True) -> tuple[FastAPI, _Gated]:
    backend = _Gated(tmp_path / "tasks.db")
    manager = TaskManager(snapshot_backend=backend, accept_timeout=10.0, shutdown_timeout=0.1)
    manager.task(_slow)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=auto_install)

    @app.post("/bound")
    async def bound(tasks: BackgroundTasks = Depends(manager.get_tasks)) -> dict[str, str | None]:
        return {"task_id": tasks.add_task(_slow)}

    @app.post("/whole")
    async def whole(background_tasks: BackgroundTasks) -> dict[str, str | None]:
        return {"task_id": background_tasks.add_task(_slow)}

    @app.post("/streamed")
    async def streamed(background_tasks: BackgroundTasks) -> StreamingResponse:
        task_id = background_tasks.add_task(_slow)

        async def parts() -> AsyncIterator[bytes]:
            for part in (f"{task_id}\n", "second\n", "third\n"):
                yield part.encode()

        return StreamingResponse(parts(), background=background_tasks)

    return app, backend


async def _released_only_after_the_write(
    app: FastAPI, backend: _Gated, path: str, make_client
) -> str:
    backend.gate = asyncio.Event()
    backend.gate.set()  # startup may write
    text = ""
    async for client in make_client(app):
        backend.gate.clear()
        answer = asyncio.create_task(client.post(path))
        await asyncio.sleep(0.3)
        left_early = answer.done()
        backend.gate.set()  # before any failure: the shutdown's final flush needs it open
        assert not left_early, "the response left before its task was stored"
        response = await asyncio.wait_for(answer, 10)
        assert response.status_code == 200
        task_id = response.text.split()[0].strip('{}"').removeprefix('task_id":"')
        stored = await backend.get(task_id)
        assert stored is not None and stored.status.value in ("pending", "running")
        text = response.text
    return text


async def test_a_whole_response_waits_for_the_write(tmp_path: Path, make_client) -> None:
    app, backend = _app(tmp_path)
    text = await _released_only_after_the_write(app, backend, "/whole", make_client)
    assert text.startswith('{"task_id":"')


async def test_a_streamed_response_waits_for_the_write_and_arrives_whole(
    tmp_path: Path, make_client
) -> None:
    app, backend = _app(tmp_path)
    text = await _released_only_after_the_write(app, backend, "/streamed", make_client)
    assert text.splitlines()[1:] == ["second", "third"]


async def test_without_auto_install_a_bound_dependency_waits(tmp_path: Path, make_client) -> None:
    # TaskAdmin(auto_install=False) leaves FastAPI's BackgroundTasks alone; the tasks that
    # Depends(manager.get_tasks) gives are still held until stored.
    app, backend = _app(tmp_path, auto_install=False)
    text = await _released_only_after_the_write(app, backend, "/bound", make_client)
    assert text.startswith('{"task_id":"')
