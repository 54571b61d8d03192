"""Each way a route gets managed background tasks, and apps that opt out."""

from __future__ import annotations

from fastapi import BackgroundTasks, Depends, FastAPI

from taskflow import ManagedBackgroundTasks, TaskAdmin, TaskManager, TaskStatus
from tests.helpers import wait_finished

done: list[str] = []


def send_email(address: str) -> None:
    done.append(address)


async def test_annotation_gets_a_managed_instance_that_returns_ids(manager, make_client):
    manager.task(retries=1)(send_email)
    app = FastAPI()
    TaskAdmin(app, manager)

    @app.post("/signup")
    def signup(email: str, background_tasks: BackgroundTasks) -> dict[str, object]:
        kind = type(background_tasks).__name__
        return {"task_id": background_tasks.add_task(send_email, address=email), "kind": kind}

    async for client in make_client(app):
        body = (await client.post("/signup", params={"email": "a@example.com"})).json()
        assert body["kind"] == "ManagedBackgroundTasks"
        record = await wait_finished(manager, body["task_id"])
        assert (record.func_name, record.status) == ("send_email", TaskStatus.SUCCESS)
        assert "a@example.com" in done


async def test_depends_get_tasks_works_without_installing(make_client):
    manager = TaskManager()
    app = FastAPI()  # no TaskAdmin: nothing installed, no lifespan hooks

    @manager.task()
    async def work(n: int) -> None:
        done.append(f"work-{n}")

    @app.post("/go")
    async def go(tasks: ManagedBackgroundTasks = Depends(manager.get_tasks)) -> dict[str, str]:
        return {"task_id": tasks.add_task(work, 7)}

    async for client in make_client(app):
        task_id = (await client.post("/go")).json()["task_id"]
        record = await wait_finished(manager, task_id)
        assert record.status is TaskStatus.SUCCESS
        assert "work-7" in done


async def _route_stays_plain(app: FastAPI, manager: TaskManager, make_client) -> None:
    ran: list[int] = []

    @app.post("/x")
    def x(background_tasks: BackgroundTasks) -> dict[str, object]:
        return {"result": background_tasks.add_task(ran.append, 1)}

    async for client in make_client(app):
        assert (await client.post("/x")).json() == {"result": None}
    assert ran == [1]
    assert manager.store.live() == []


async def test_app_without_taskadmin_keeps_plain_behaviour(manager, make_client):
    TaskAdmin(FastAPI(), manager)  # installs the managed class for the whole process
    await _route_stays_plain(FastAPI(), manager, make_client)


async def test_auto_install_off_keeps_plain_parameters_plain(manager, make_client):
    TaskAdmin(FastAPI(), TaskManager())  # another app installs the managed class process-wide
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=False)
    await _route_stays_plain(app, manager, make_client)


async def test_unregistered_functions_are_tracked_under_module_and_qualname(manager, app_client):
    app, client = app_client
    ran: list[str] = []

    def helper(value: str) -> None:
        ran.append(value)

    @app.post("/adhoc")
    def adhoc(background_tasks: BackgroundTasks) -> dict[str, object]:
        return {"task_id": background_tasks.add_task(helper, "v")}

    task_id = (await client.post("/adhoc")).json()["task_id"]
    await wait_finished(manager, task_id)
    body = (await client.get(f"/tasks/{task_id}")).json()
    assert body["func_name"] == (
        "tests.test_background."
        "test_unregistered_functions_are_tracked_under_module_and_qualname.<locals>.helper"
    )
    assert body["status"] == "success"
    assert ran == ["v"]


async def test_tasks_run_after_the_response_in_order_of_adding(manager, make_client):
    order: list[str] = []
    app = FastAPI()
    TaskAdmin(app, manager)

    @app.post("/two")
    async def two(background_tasks: BackgroundTasks) -> dict[str, object]:
        ids = [
            background_tasks.add_task(order.append, "first"),
            background_tasks.add_task(order.append, "second"),
        ]
        order.append("handler")
        return {"ids": ids}

    async for client in make_client(app):
        ids = (await client.post("/two")).json()["ids"]
        for task_id in ids:
            await wait_finished(manager, task_id)
    assert order[0] == "handler"
    assert sorted(order[1:]) == ["first", "second"]
