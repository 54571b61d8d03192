"""TaskAdmin: lifecycle hooks (with and without an app lifespan) and health endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager, TaskStatus
from tests.helpers import wait_finished


async def test_hooks_wrap_an_app_that_has_its_own_lifespan():
    events: list[str] = []
    manager = TaskManager()

    @manager.task()
    async def hello(who: str) -> None:
        events.append(f"task:{who}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        events.append(f"app-start(manager started={manager._started})")
        manager.submit(hello, "from-startup")
        yield {"greeting": "hi"}
        events.append(f"app-stop(manager started={manager._started})")

    app = FastAPI(lifespan=lifespan)
    TaskAdmin(app, manager)

    async with app.router.lifespan_context(app) as state_dict:
        assert state_dict == {"greeting": "hi"}
        assert manager._started
        for record in manager.live_tasks():
            await wait_finished(manager, record.task_id)
    assert events == [
        "app-start(manager started=True)",
        "task:from-startup",
        "app-stop(manager started=True)",
    ]
    assert not manager._started


async def test_healthz_and_readyz(app_client):
    _, client = app_client
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


async def test_readyz_reports_draining_and_healthz_stays_alive(app_client, manager):
    _, client = app_client
    manager.draining = True
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["draining"] is True
    assert (await client.get("/healthz")).status_code == 200
    manager.draining = False


async def test_readyz_is_not_ready_before_startup():
    app = FastAPI()
    TaskAdmin(app, TaskManager())
    transport = httpx.ASGITransport(app=app)  # no lifespan: the manager never started
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/readyz")).status_code == 503


async def test_shutdown_interrupts_tasks_past_the_timeout_and_logs_one_summary(caplog):
    manager = TaskManager(shutdown_timeout=0.2)
    app = FastAPI()
    TaskAdmin(app, manager)

    @manager.task()
    async def quick() -> None:
        pass

    @manager.task()
    async def stuck() -> None:
        import asyncio

        await asyncio.sleep(30)

    @app.post("/enqueue")
    def enqueue(background_tasks: BackgroundTasks) -> dict[str, object]:
        return {
            "quick": background_tasks.add_task(quick),
            "stuck": background_tasks.add_task(stuck),
        }

    caplog.set_level("INFO", logger="taskflow")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ids = (await client.post("/enqueue")).json()
        await wait_finished(manager, ids["quick"])
    stuck_record = manager.get(ids["stuck"])
    assert stuck_record is not None and stuck_record.status is TaskStatus.INTERRUPTED
    summaries = [r.getMessage() for r in caplog.records if "taskflow shutdown" in r.getMessage()]
    assert len(summaries) == 1
    assert "1 interrupted" in summaries[0]


async def test_custom_path_mounts_the_api_there(make_client):
    manager = TaskManager()
    app = FastAPI()
    TaskAdmin(app, manager, path="/admin/jobs/")
    async for client in make_client(app):
        assert (await client.get("/admin/jobs")).status_code == 200
        assert (await client.get("/tasks")).status_code == 404


async def test_the_conventional_spelling_a_lifespan_and_a_router(make_client):
    from contextlib import asynccontextmanager

    from fastapi import Depends

    from taskflow import ManagedBackgroundTasks, admin_router

    manager = TaskManager()
    ran: list[str] = []

    @manager.task()
    async def note(text: str) -> None:
        ran.append(text)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # the app's own, composed with the manager's
        async with manager.lifespan(app):
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(admin_router(manager))

    @app.post("/note")
    async def post_note(tasks: ManagedBackgroundTasks = Depends(manager.get_tasks)) -> dict:
        task_id = tasks.add_task(note, "hello")
        # The seed's synchronous history read works inside async def too (from memory here).
        return {"task_id": task_id, "known": [r.task_id for r in manager.query(limit=10)]}

    async for client in make_client(app):
        body = (await client.post("/note")).json()
        assert body["task_id"] in body["known"]
        record = await wait_finished(manager, body["task_id"])
        assert record.status is TaskStatus.SUCCESS and ran == ["hello"]
        listed = (await client.get("/tasks")).json()["items"]
        assert [item["task_id"] for item in listed] == [body["task_id"]]
        assert (await client.get(f"/tasks/{body['task_id']}")).status_code == 200
        assert (await client.get("/tasks/dashboard")).status_code == 200
    assert not manager.ready  # the lifespan stopped it
