"""Group commit: tasks that finish together share backend writes, and the metrics show how many."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fastapi import BackgroundTasks, FastAPI, HTTPException

from taskflow import TaskAdmin, TaskManager
from taskflow.backends import SqliteBackend
from taskflow.web.metrics import collect
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
        while manager.persistence_stats()["unflushed"] and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        persistence = (await collect(manager))["persistence"]
    finally:
        await manager.stop()
    assert persistence["flushed_total"] == TASKS
    # One write per task would be 200 (plus the live records' writes); a burst shares them.
    assert 1 <= persistence["flush_writes_total"] < TASKS / 4, persistence


class _Recording(SqliteBackend):
    """A real SQLite backend that remembers the status of every record each save carried."""

    saved: list[str]

    async def save(self, records):  # type: ignore[no-untyped-def]
        self.saved.extend(r.status.value for r in records)
        await super().save(records)


def _durable_app(tmp_path: Path, ran: list[str]) -> tuple[FastAPI, TaskManager, _Recording]:
    backend = _Recording(tmp_path / "tasks.db")
    backend.saved = []
    manager = TaskManager(snapshot_backend=backend)  # durable acceptance is the default
    app = FastAPI()
    TaskAdmin(app, manager)

    @manager.task()
    async def note(name: str) -> None:
        ran.append(name)

    @app.post("/ok")
    async def ok(background_tasks: BackgroundTasks) -> dict[str, str | None]:
        return {"task_id": background_tasks.add_task(note, "ok")}

    @app.post("/ok-after-a-while")
    async def ok_after_a_while(background_tasks: BackgroundTasks) -> dict[str, str | None]:
        task_id = background_tasks.add_task(note, "ok")
        await asyncio.sleep(0.5)  # longer than the delay before live records are written
        return {"task_id": task_id}

    @app.post("/refused")
    async def refused(background_tasks: BackgroundTasks) -> None:
        background_tasks.add_task(note, "refused")
        raise HTTPException(404, "no such thing")

    return app, manager, backend


async def test_durable_acceptance_writes_a_short_task_once_finished(
    tmp_path: Path, make_client
) -> None:
    # The held response starts its task before the group commit takes its batch: the write
    # that releases the response carries the finished record, not a pending one written again.
    ran: list[str] = []
    app, manager, backend = _durable_app(tmp_path, ran)
    async for client in make_client(app):
        for _ in range(5):
            answers = await asyncio.gather(*(client.post("/ok") for _ in range(32)))
            assert {a.status_code for a in answers} == {200}
        await wait_until_idle(manager)
    assert len(ran) == 160
    assert backend.saved.count("success") == 160
    assert "pending" not in backend.saved and "running" not in backend.saved, backend.saved


async def test_a_record_is_held_from_its_creation_until_its_response(
    tmp_path: Path, make_client
) -> None:
    # An endpoint that works on after queuing its task: no client knows the id yet, so the
    # pending record is not written meanwhile; the write that releases the response carries
    # the finished one.
    ran: list[str] = []
    app, manager, backend = _durable_app(tmp_path, ran)
    async for client in make_client(app):
        answer = await client.post("/ok-after-a-while")
        await wait_until_idle(manager)
    assert answer.status_code == 200 and ran == ["ok"]
    assert backend.saved == ["success"], backend.saved


async def test_an_error_response_starts_no_task_early(tmp_path: Path, make_client) -> None:
    # FastAPI runs no background task of a request that raised, so neither do we.
    ran: list[str] = []
    app, _, _ = _durable_app(tmp_path, ran)
    async for client in make_client(app):
        assert (await client.post("/refused")).status_code == 404
        assert (await client.post("/ok")).status_code == 200
        deadline = time.monotonic() + 10
        while not ran and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
    assert ran == ["ok"]
