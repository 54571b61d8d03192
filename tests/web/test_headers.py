"""Every admin and health response says no-store and nosniff, errors included; assets keep ETag."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.dashboard.routes import ASSETS
from tests.helpers import wait_finished
from tests.sse import EventStream

TOKEN = "headers-test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def setup() -> AsyncIterator[tuple[FastAPI, TaskManager, httpx.AsyncClient]]:
    manager = TaskManager(shutdown_timeout=0.2)
    app = FastAPI()
    TaskAdmin(app, manager, admin_token=TOKEN, display_func_args=True)

    @manager.task()
    def boom(secret: str) -> None:
        raise RuntimeError(f"failed with {secret}")

    @app.post("/boom")
    def enqueue(background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(boom, "s3cret-argument")}

    @app.get("/own")
    def own() -> dict[str, str]:
        return {"the app's": "own route"}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, manager, client


def assert_private(response: httpx.Response) -> None:
    what = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    assert response.headers.get_list("cache-control") == ["no-store"], what
    assert response.headers.get_list("x-content-type-options") == ["nosniff"], what


async def test_every_admin_and_health_response_is_no_store_and_nosniff(setup):
    app, manager, client = setup
    failed = (await client.post("/boom")).json()["task_id"]
    await wait_finished(manager, failed)
    detail = await client.get(f"/tasks/{failed}", headers=BEARER)
    assert "s3cret-argument" in detail.text and detail.json()["traceback"]  # what is at stake
    responses = [
        detail,
        await client.get("/tasks", headers=BEARER),
        await client.get("/tasks/", headers=BEARER),
        await client.get("/tasks/metrics", headers=BEARER),
        await client.post(f"/tasks/{failed}/retry", headers=BEARER),  # 202
        await client.get("/healthz"),
        await client.get("/readyz"),
        await client.get("/tasks/login"),
        await client.post("/tasks/login", data={"token": TOKEN}),  # 303 with the cookies
        await client.get("/tasks/dashboard"),
        await client.post(
            "/tasks/logout", headers={"X-CSRF-Token": client.cookies["taskflow_csrf"]}
        ),
        # Errors: from the routes, from the app's exception handlers and from routing itself.
        await client.get("/tasks"),  # 401
        await client.get("/tasks", headers={"Authorization": "Bearer wrong"}),  # 401
        await client.post("/tasks/x/retry", headers={"Origin": "https://evil.example"}),  # 403
        await client.get("/tasks/0123/", headers=BEARER),  # 404 from the router
        await client.get("/tasks/nope", headers=BEARER),  # 404 from the route
        await client.post("/tasks/a/b/c", headers=BEARER),  # 404 below the mount
        await client.delete("/tasks/metrics", headers=BEARER),  # 405
        await client.get("/tasks", params={"status": "exploded"}, headers=BEARER),  # 422
        await client.post(f"/tasks/{detail.json()['task_id']}/retry", headers=BEARER),
        await client.get("/tasks/dashboard/nope.js"),  # 404
    ]
    assert {r.status_code for r in responses} >= {200, 202, 204, 303, 401, 403, 404, 405, 422}
    for response in responses:
        assert_private(response)
    async with EventStream(app, "/tasks/stream", headers=BEARER) as stream:
        assert stream.response_headers["cache-control"] == "no-store"
        assert stream.response_headers["x-content-type-options"] == "nosniff"


async def test_the_health_endpoints_say_so_when_not_ready_too(setup):
    _, manager, client = setup
    manager.draining = True
    try:
        response = await client.get("/readyz")
    finally:
        manager.draining = False
    assert response.status_code == 503
    assert_private(response)


@pytest.mark.parametrize("name", sorted(ASSETS))
async def test_the_dashboard_assets_keep_their_own_revalidation(setup, name):
    _, _, client = setup
    response = await client.get(f"/tasks/dashboard/{name}")
    assert response.headers.get_list("cache-control") == ["no-cache"]
    assert response.headers["etag"]
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]


async def test_the_apps_own_routes_are_left_alone(setup):
    _, _, client = setup
    for path in ("/own", "/tasksfoo", "/nope"):
        response = await client.get(path)
        assert "cache-control" not in response.headers, path
        assert "x-content-type-options" not in response.headers, path


async def test_under_a_root_path_and_a_custom_admin_path():
    app = FastAPI()
    TaskAdmin(app, TaskManager(), path="/admin/jobs")
    transport = httpx.ASGITransport(app=app, root_path="/app")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in ("/app/admin/jobs", "/app/admin/jobs/metrics", "/app/admin/jobs/x/y/z"):
            assert_private(await client.get(path))
        assert "cache-control" not in (await client.get("/app/tasks")).headers
