"""The audit trail over HTTP: every state-changing admin action is recorded with its time,
client address, actor (never a secret) and target, and listed newest first, paged."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.backends.sqlite import SqliteBackend
from taskflow.web.auth import CSRF_COOKIE, LoginLimiter
from tests.helpers import wait_until_idle

TOKEN = "audit-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["memory", "sqlite"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    backend = SqliteBackend(tmp_path / "tasks.db") if request.param == "sqlite" else None
    manager = TaskManager(snapshot_backend=backend, shutdown_timeout=0.2)

    @manager.task()
    def boom(n: int) -> None:
        raise RuntimeError(f"boom {n}")

    app = FastAPI()

    @app.post("/boom")
    def enqueue(n: int, background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(boom, n)}

    admin = TaskAdmin(app, manager, admin_token=TOKEN)
    admin.auth.limiter = LoginLimiter(per_address=10**6, total=10**6)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for n in range(3):
                await client.post("/boom", params={"n": n})
            await wait_until_idle(manager)
            yield client


async def audit(client: httpx.AsyncClient, **params: object) -> dict:
    response = await client.get("/tasks/audit", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


async def test_admin_actions_are_recorded_newest_first(client: httpx.AsyncClient) -> None:
    failed = (await client.get("/tasks", params={"status": "failed"}, headers=AUTH)).json()
    one = failed["items"][0]["task_id"]
    retried = await client.post(f"/tasks/{one}/retry", headers=AUTH)
    assert retried.status_code == 202
    await client.post("/tasks/bulk/retry", json={"dry_run": True}, headers=AUTH)  # not recorded
    await client.post("/tasks/bulk/retry", json={"func_name": "boom"}, headers=AUTH)
    purge = {"status": "success", "confirm": True}
    await client.post("/tasks/bulk/purge", json=purge, headers=AUTH)

    items = (await audit(client))["items"]
    assert [item["action"] for item in items] == ["purge", "bulk retry", "retry"]
    assert all(item["client"] == "203.0.113.7" for item in items)
    assert all(item["actor"] == "bearer token" for item in items)
    assert items[2]["target"] == f"task {one}: retry {retried.json()['task_id']}"
    # The single retry may have failed already: then it is one of the failed tasks too.
    assert re.match(
        r"tasks func_name='boom': retried \d of \d matched \(1 retried", items[1]["target"]
    )
    assert items[0]["target"] == "tasks status='success': purged 0 of 0 matched"
    assert items[0]["at"] >= items[1]["at"] >= items[2]["at"]
    assert TOKEN not in str(items)

    first = await audit(client, limit=2)
    assert [i["action"] for i in first["items"]] == ["purge", "bulk retry"]
    rest = await audit(client, limit=2, before=first["next_before"])
    assert [i["action"] for i in rest["items"]] == ["retry"] and rest["next_before"] is None


async def test_logins_and_logouts_are_recorded_with_their_session(
    client: httpx.AsyncClient,
) -> None:
    login = await client.post("/tasks/login", data={"token": TOKEN})
    assert login.status_code == 303
    csrf = client.cookies[CSRF_COOKIE]
    same_site = {"x-csrf-token": csrf, "sec-fetch-site": "same-origin"}
    assert (await client.post("/tasks/logout", headers=same_site)).status_code == 204
    await client.post("/tasks/login", data={"token": "wrong"})  # logged, not an admin action
    items = (await audit(client))["items"]
    assert [item["action"] for item in items] == ["logout", "login"]
    actors = {item["actor"] for item in items}
    assert len(actors) == 1 and actors.pop().startswith("session ")
    assert all(client.cookies.get("taskflow_session", "x") not in i["actor"] for i in items)


async def test_the_trail_is_admin_only_and_its_parameters_checked(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/tasks/audit")).status_code == 401
    for params in ({"limit": 0}, {"limit": 501}, {"before": "not-hex"}, {"before": "a" * 65}):
        response = await client.get("/tasks/audit", params=params, headers=AUTH)
        assert response.status_code == 422, (params, response.text)
