"""A background task queued by a request that then failed: FastAPI never runs it, and its record
must not stay pending (and in memory) forever."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import BackgroundTasks, FastAPI, HTTPException
from fastapi.responses import JSONResponse

from taskflow import TaskAdmin, TaskManager, TaskRecord, TaskStatus
from taskflow.backends import SqliteBackend
from taskflow.cluster import idempotent_task_id
from taskflow.models import utcnow
from tests.helpers import wait_finished

NEVER_RUN = "not run: the request that queued it failed before its response"


def _app(manager: TaskManager, ran: list[str], ids: list[str]) -> FastAPI:
    app = FastAPI()
    TaskAdmin(app, manager)

    @manager.task()
    async def note(name: str) -> None:
        ran.append(name)

    @app.post("/refused")
    async def refused(background_tasks: BackgroundTasks) -> None:
        ids.append(background_tasks.add_task(note, "refused"))
        raise HTTPException(409, "refused")

    @app.post("/broken")
    async def broken(background_tasks: BackgroundTasks) -> None:
        ids.append(background_tasks.add_task(note, "broken"))
        raise RuntimeError("a bug after queuing the task")

    @app.post("/refused-once")
    async def refused_once(background_tasks: BackgroundTasks) -> None:
        ids.append(background_tasks.add_task(note, "refused-once", idempotency_key="order-7"))
        raise HTTPException(409, "refused")

    @app.post("/error-response")
    async def error_response(background_tasks: BackgroundTasks) -> JSONResponse:
        # A returned response carries the request's background tasks: FastAPI runs them.
        ids.append(background_tasks.add_task(note, "error-response"))
        return JSONResponse({"detail": "rejected, but the task runs"}, status_code=422)

    return app


@pytest.mark.parametrize(
    ("path", "status"), [("/refused", 409), ("/broken", 500)], ids=["http-exception", "bug"]
)
async def test_a_task_of_a_failed_request_is_recorded_as_never_run(
    path: str, status: int, make_client
) -> None:
    manager = TaskManager()
    ran: list[str] = []
    ids: list[str] = []
    app = _app(manager, ran, ids)
    async for client in make_client(app):
        if status == 500:  # a server answers 500; the in-process transport raises the bug
            with pytest.raises(RuntimeError, match="a bug after queuing"):
                await client.post(path)
        else:
            assert (await client.post(path)).status_code == status
        assert manager.store.live() == []
        record = manager.store.get(ids[0])
        assert record is not None
        assert (record.status, record.error) == (TaskStatus.INTERRUPTED, NEVER_RUN)
        shown = (await client.get(f"/tasks/{ids[0]}")).json()
        assert (shown["status"], shown["error"]) == ("interrupted", NEVER_RUN)
    assert ran == []


async def test_a_task_of_a_returned_error_response_still_runs(make_client) -> None:
    manager = TaskManager()
    ran: list[str] = []
    ids: list[str] = []
    app = _app(manager, ran, ids)
    async for client in make_client(app):
        assert (await client.post("/error-response")).status_code == 422
        record = await wait_finished(manager, ids[0])
    assert record.status is TaskStatus.SUCCESS
    assert ran == ["error-response"]


async def test_with_durable_acceptance_the_never_run_record_is_stored(
    tmp_path: Path, make_client
) -> None:
    # Held out of writes until its response is accepted; the failed request writes it once,
    # as never run, instead of leaving it held (and pending) in memory.
    backend = SqliteBackend(tmp_path / "tasks.db")
    manager = TaskManager(snapshot_backend=backend)
    ran: list[str] = []
    ids: list[str] = []
    app = _app(manager, ran, ids)
    async for client in make_client(app):
        answer = await client.post("/refused")
        flushed = await manager.flush()
        live = manager.store.live()
    # Asserted once the app has stopped: a failure then fails instead of leaving a live
    # record (and the backend's thread) behind.
    assert (answer.status_code, flushed, live) == (409, True, [])
    reopened = SqliteBackend(tmp_path / "tasks.db")
    await reopened.open()
    try:
        stored = await reopened.get(ids[0])
    finally:
        await reopened.close()
    assert stored is not None
    assert (stored.status, stored.error) == (TaskStatus.INTERRUPTED, NEVER_RUN)
    assert ran == []


async def test_an_idempotent_task_of_a_failed_request_leaves_the_stored_one_alone(
    tmp_path: Path, make_client
) -> None:
    # Its id is the key's: the task stored under it was run (and claimed) by another instance,
    # after this one started, and must not be overwritten by a record of a task never run.
    path = tmp_path / "tasks.db"
    done = TaskRecord(
        task_id=idempotent_task_id("order-7"),
        func_name="note",
        status=TaskStatus.SUCCESS,
        end_time=utcnow(),
        idempotency_key="order-7",
    )
    other_instance = SqliteBackend(path)
    manager = TaskManager(snapshot_backend=SqliteBackend(path))
    ran: list[str] = []
    ids: list[str] = []
    app = _app(manager, ran, ids)
    async for client in make_client(app):
        await other_instance.open()
        await other_instance.save([done])
        await other_instance.close()
        answer = await client.post("/refused-once")
        flushed = await manager.flush()
        remembered = manager.store.get(ids[0]) if ids else None
        live = manager.store.live()
    assert (answer.status_code, flushed, live) == (409, True, [])
    assert ids == [done.task_id]
    assert remembered is None
    reopened = SqliteBackend(path)
    await reopened.open()
    try:
        stored = await reopened.get(done.task_id)
    finally:
        await reopened.close()
    assert stored is not None and stored.status is TaskStatus.SUCCESS
    assert ran == []
