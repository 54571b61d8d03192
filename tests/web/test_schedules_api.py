"""The schedules API: listing, pause and resume behind the admin token, hostile names a 4xx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskflow import TaskAdmin, TaskManager
from taskflow.web.auth.limits import LoginLimiter

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    manager = TaskManager(snapshot_db=tmp_path / "tasks.db", shutdown_timeout=0.2)
    app = FastAPI()
    admin = TaskAdmin(app, manager, admin_token=TOKEN)
    admin.auth.limiter = LoginLimiter(per_address=10**9, total=10**9)

    @manager.schedule(every=0.2, name="tick")
    def tick() -> None: ...

    @manager.schedule(cron="0 3 * * *", timezone="Europe/Berlin", catch_up="skip")
    async def nightly() -> None: ...

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_schedules_are_listed_with_their_runs(client: httpx.AsyncClient) -> None:
    await asyncio.sleep(0.5)
    body = (await client.get("/tasks/schedules", headers=AUTH)).json()
    views = {item["name"]: item for item in body["items"]}
    assert sorted(views) == ["nightly", "tick"]
    tick, nightly = views["tick"], views["nightly"]
    assert tick["spec"] == "every 0:00:00.200000" and tick["catch_up"] == "once"
    assert tick["last_run"] is not None and tick["last_task_id"] is not None
    assert tick["last_status"] in ("pending", "running", "success")
    assert nightly["spec"] == "cron 0 3 * * * Europe/Berlin" and nightly["catch_up"] == "skip"
    assert nightly["last_run"] is None and nightly["next_run"] is not None
    assert not nightly["paused"]
    run = (await client.get(f"/tasks/{tick['last_task_id']}", headers=AUTH)).json()
    assert run["schedule"] == "tick" and run["scheduled_for"] == tick["last_run"]


async def test_pause_and_resume_need_the_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/tasks/schedules")).status_code == 401
    assert (await client.post("/tasks/schedules/tick/pause")).status_code == 401
    paused = await client.post("/tasks/schedules/tick/pause", headers=AUTH)
    assert paused.status_code == 200 and paused.json() == {"name": "tick", "paused": True}
    views = (await client.get("/tasks/schedules", headers=AUTH)).json()["items"]
    assert [v["paused"] for v in views if v["name"] == "tick"] == [True]
    resumed = await client.post("/tasks/schedules/tick/resume", headers=AUTH)
    assert resumed.json() == {"name": "tick", "paused": False}
    missing = await client.post("/tasks/schedules/nope/pause", headers=AUTH)
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(min_size=1, max_size=80), action=st.sampled_from(["pause", "resume", "x"]))
async def test_hostile_schedule_names_get_a_4xx(
    client: httpx.AsyncClient, name: str, action: str
) -> None:
    path = f"/tasks/schedules/{quote(name, safe='')}/{action}"
    response = await client.post(path, headers=AUTH)
    assert 400 <= response.status_code < 500, (name, response.status_code)


async def test_an_unreachable_backend_is_a_503_not_a_500() -> None:
    from taskflow.backends.redis import RedisBackend

    manager = TaskManager(snapshot_backend=RedisBackend("redis://127.0.0.1:1/0"))
    app = FastAPI()
    TaskAdmin(app, manager)
    manager.schedule(every=60, name="tick")(lambda: None)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            listed = await http.get("/tasks/schedules")
            paused = await http.post("/tasks/schedules/tick/pause")
    assert listed.status_code == paused.status_code == 503
    assert "does not answer" in listed.json()["detail"]
