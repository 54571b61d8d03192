"""Bulk retry and purge through the API and the manager: count first, act within a limit, each
task retried once however often it is asked, live tasks never purged, bad filters a 422, and
admin only when a token is set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import jsonschema
import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager, retry
from taskflow.backends.sqlite import SqliteBackend
from taskflow.query import InvalidQuery
from taskflow.retry import MAX_BULK_RETRY_LIMIT
from tests.helpers import wait_until_idle

TOKEN = "bulk-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@dataclass
class Bulk:
    manager: TaskManager
    client: httpx.AsyncClient
    runs: dict[str, int]
    gate: asyncio.Event

    async def enqueue(self, name: str, token: str) -> str:
        response = await self.client.post(f"/enqueue/{name}", params={"token": token})
        return str(response.json()["task_id"])


@pytest.fixture(params=["memory", "sqlite"])
async def bulk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bulk]:
    backend = SqliteBackend(tmp_path / "tasks.db") if request.param == "sqlite" else None
    manager = TaskManager(snapshot_backend=backend, shutdown_timeout=0.2)
    runs: dict[str, int] = {}
    gate = asyncio.Event()

    @manager.task()
    def flaky(token: str) -> None:
        runs[token] = runs.get(token, 0) + 1
        if runs[token] == 1:
            raise RuntimeError(f"first run of {token} fails")

    @manager.task()
    def fine(token: str) -> None:
        runs[token] = runs.get(token, 0) + 1

    @manager.task()
    async def blocked(token: str) -> None:
        await gate.wait()

    funcs = {"flaky": flaky, "fine": fine, "blocked": blocked}
    app = FastAPI()

    @app.post("/enqueue/{name}")
    def enqueue(name: str, token: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(funcs[name], token)}

    TaskAdmin(app, manager, admin_token=TOKEN)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=AUTH
        ) as client:
            yield Bulk(manager, client, runs, gate)
        gate.set()


async def test_bulk_retry_counts_first_then_retries_each_failed_task_once(bulk: Bulk) -> None:
    for n in range(5):
        await bulk.enqueue("flaky", f"t{n}")
    await bulk.enqueue("fine", "ok")
    await wait_until_idle(bulk.manager)

    counted = await bulk.client.post("/tasks/bulk/retry", json={"dry_run": True})
    assert counted.status_code == 200 and counted.json() == {"dry_run": True, "matched": 5}
    assert all(count == 1 for count in bulk.runs.values())

    first = await bulk.client.post("/tasks/bulk/retry", json={"func_name": "flaky", "limit": 3})
    body = first.json()
    assert first.status_code == 200, body
    assert (body["matched"], body["retried"], body["more"]) == (5, 3, True)
    assert {r["retry_of"] for r in body["retries"]} <= set(await failed_ids(bulk.manager))
    second = (await bulk.client.post("/tasks/bulk/retry", json={})).json()
    assert (second["retried"], second["already_retried"], second["more"]) == (2, 3, False)
    await wait_until_idle(bulk.manager)
    again = (await bulk.client.post("/tasks/bulk/retry", json={})).json()
    assert (again["retried"], again["already_retried"]) == (0, 5)
    await wait_until_idle(bulk.manager)
    assert bulk.runs == {**{f"t{n}": 2 for n in range(5)}, "ok": 1}  # each retried once


async def failed_ids(manager: TaskManager) -> list[str]:
    return [record.task_id for record in await manager.aquery(status="failed")]


async def test_concurrent_bulk_retries_run_each_task_once(bulk: Bulk) -> None:
    for n in range(6):
        await bulk.enqueue("flaky", f"c{n}")
    await wait_until_idle(bulk.manager)
    answers = await asyncio.gather(
        *(bulk.client.post("/tasks/bulk/retry", json={"status": "failed"}) for _ in range(3))
    )
    bodies = [answer.json() for answer in answers]
    assert sum(body["retried"] for body in bodies) == 6, bodies
    await wait_until_idle(bulk.manager)
    assert bulk.runs == {f"c{n}": 2 for n in range(6)}


async def test_bulk_retry_filters_by_time(bulk: Bulk) -> None:
    await bulk.enqueue("flaky", "old")
    await wait_until_idle(bulk.manager)
    middle = datetime.now(timezone.utc)
    await asyncio.sleep(0.01)
    await bulk.enqueue("flaky", "new")
    await wait_until_idle(bulk.manager)
    since = {"since": middle.isoformat()}
    assert (await bulk.client.post("/tasks/bulk/retry", json={**since, "dry_run": True})).json()[
        "matched"
    ] == 1
    body = (await bulk.client.post("/tasks/bulk/retry", json={"until": middle.isoformat()})).json()
    assert body["retried"] == 1
    await wait_until_idle(bulk.manager)
    assert bulk.runs == {"old": 2, "new": 1}


async def test_purge_needs_confirmation_and_never_touches_live_tasks(bulk: Bulk) -> None:
    for n in range(3):
        await bulk.enqueue("fine", f"p{n}")
    await bulk.enqueue("flaky", "f")
    live = await bulk.enqueue("blocked", "live")
    await asyncio.sleep(0.05)
    await wait_for_finished(bulk.manager, 4)

    unconfirmed = await bulk.client.post("/tasks/bulk/purge", json={"status": "success"})
    assert unconfirmed.status_code == 422
    assert "confirm" in unconfirmed.text
    counted = await bulk.client.post("/tasks/bulk/purge", json={"dry_run": True})
    assert counted.json() == {"dry_run": True, "matched": 4}

    body = {"status": "success", "limit": 2, "confirm": True}
    purged = (await bulk.client.post("/tasks/bulk/purge", json=body)).json()
    assert purged == {"dry_run": False, "matched": 3, "purged": 2, "more": True}
    everything = (await bulk.client.post("/tasks/bulk/purge", json={"confirm": True})).json()
    assert (everything["purged"], everything["more"]) == (2, False)
    listed = (await bulk.client.get("/tasks")).json()["items"]
    assert [item["task_id"] for item in listed] == [live]
    assert (await bulk.client.get(f"/tasks/{live}")).json()["status"] == "running"
    await bulk.manager.flush()
    assert (await bulk.client.post("/tasks/bulk/purge", json={"dry_run": True})).json()[
        "matched"
    ] == 0


async def wait_for_finished(manager: TaskManager, count: int) -> None:
    for _ in range(200):
        counts = await manager.counts()
        if sum(n for s, n in counts.by_status.items() if s not in ("pending", "running")) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("tasks did not finish")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/tasks/bulk/retry", {"status": "success"}, "status"),
        ("/tasks/bulk/retry", {"status": "nonsense"}, "status"),
        ("/tasks/bulk/retry", {"limit": MAX_BULK_RETRY_LIMIT + 1}, "limit"),
        ("/tasks/bulk/retry", {"limit": 0}, "limit"),
        ("/tasks/bulk/retry", {"since": "2024-02-01", "until": "2024-01-01"}, "since"),
        ("/tasks/bulk/retry", {"since": "not a time"}, "since"),
        ("/tasks/bulk/retry", {"tag": "x"}, "tag"),
        ("/tasks/bulk/purge", {"status": "running", "confirm": True}, "status"),
        ("/tasks/bulk/purge", {"status": "pending", "dry_run": True}, "status"),
        ("/tasks/bulk/purge", {"func_name": "", "dry_run": True}, "func_name"),
        ("/tasks/bulk/purge", {"limit": 10**9, "confirm": True}, "limit"),
    ],
)
async def test_bad_filters_are_a_422_naming_the_field(
    bulk: Bulk, path: str, body: dict[str, object], field: str
) -> None:
    response = await bulk.client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert any(field in error["loc"] for error in response.json()["detail"]), response.json()


async def test_422_bodies_follow_the_documented_schema(make_client) -> None:
    app = FastAPI()
    TaskAdmin(app, TaskManager())
    async for client in make_client(app):
        document = app.openapi()
        for path in ("/tasks/bulk/retry", "/tasks/bulk/purge"):
            operation = document["paths"][path]["post"]
            assert "limit" in str(operation["requestBody"])
            schema = operation["responses"]["422"]["content"]["application/json"]["schema"]
            schema = {**schema, "components": document["components"]}
            for body in (b"{", b'{"limit": 1e999}', b'{"status": "x"}', b"[]", b'{"x": 1}'):
                response = await client.post(path, content=body)
                assert response.status_code == 422, (path, body)
                jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)


async def test_bulk_actions_need_the_token(bulk: Bulk) -> None:
    for path in ("/tasks/bulk/retry", "/tasks/bulk/purge"):
        bare = await bulk.client.post(path, json={"dry_run": True}, headers={"authorization": ""})
        assert bare.status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert (await bulk.client.post(path, json={}, headers=wrong)).status_code == 401
        foreign = {"origin": "https://evil.example"}
        assert (await bulk.client.post(path, json={}, headers=foreign)).status_code == 403


async def test_the_manager_api(bulk: Bulk) -> None:
    await bulk.enqueue("flaky", "m")
    await wait_until_idle(bulk.manager)
    manager = bulk.manager
    assert (await manager.retry_many(dry_run=True)).matched == 1
    result = await manager.retry_many(func_name="flaky")
    assert len(result.retried) == 1 and not result.more
    await wait_until_idle(manager)
    with pytest.raises(InvalidQuery):
        await manager.purge(status="running")
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    assert (await manager.purge(until=hour_ago)).purged == 0
    assert (await manager.purge(func_name="flaky")).purged == 2


async def test_a_bulk_retry_goes_on_after_its_cursor(
    bulk: Bulk, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(6):
        await bulk.enqueue("flaky", f"k{n}")
    await wait_until_idle(bulk.manager)
    first = (await bulk.client.post("/tasks/bulk/retry", json={"limit": 4})).json()
    assert (first["retried"], first["more"]) == (4, True) and first["next_cursor"]
    rest = await bulk.client.post(
        "/tasks/bulk/retry", json={"limit": 4, "cursor": first["next_cursor"]}
    )
    assert (rest.json()["retried"], rest.json()["already_retried"]) == (2, 0)
    assert rest.json()["more"] is False and rest.json()["next_cursor"] is None
    await wait_until_idle(bulk.manager)

    # However many were retried already, following the cursors gets through all of them.
    monkeypatch.setattr(retry, "BULK_SCAN_BUDGET", 2)
    seen, cursor, calls = 0, None, 0
    while True:
        body = {"cursor": cursor} if cursor else {}
        answer = (await bulk.client.post("/tasks/bulk/retry", json=body)).json()
        seen += answer["already_retried"] + answer["retried"]
        calls += 1
        if not answer["more"]:
            break
        cursor = answer["next_cursor"]
    assert (seen, calls) == (6, 3)
    bad = await bulk.client.post("/tasks/bulk/retry", json={"cursor": "not a cursor"})
    assert bad.status_code == 422 and "cursor" in str(bad.json()["detail"][0]["loc"])
