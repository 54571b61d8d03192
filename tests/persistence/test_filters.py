"""The dashboard's extra filters (instance, part of an id) and per-function failure rates."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from taskflow import TaskAdmin, TaskManager, TaskQuery, TaskRecord, TaskStatus
from taskflow.models import utcnow
from taskflow.persistence.history import ExtraFilter
from tests.helpers import wait_finished


def history(count: int) -> list[TaskRecord]:
    """Finished records, newest first, alternating between two instances and two functions."""
    now = utcnow()
    records = []
    for i in range(count):
        end = now - timedelta(seconds=i)
        records.append(
            TaskRecord(
                task_id=f"{i:04d}" + "ab" * 13 + ("ff" if 50 <= i < 60 else "00"),
                func_name="mail" if i % 2 else "charge",
                status=TaskStatus.FAILED if i % 3 == 0 else TaskStatus.SUCCESS,
                created_at=end - timedelta(seconds=0.5),
                start_time=end - timedelta(seconds=0.4),
                end_time=end,
                attempts=1,
                instance_id="web-1" if i % 2 else "web-2",
            )
        )
    return records


@pytest.fixture
async def filled(make_client):
    manager = TaskManager(max_records=1000)
    manager._store.restore(history(60))
    app = FastAPI()
    TaskAdmin(app, manager)
    async for client in make_client(app):
        yield manager, client


async def test_instance_filter_pages_through_one_instance_only(filled):
    _, client = filled
    seen: list[str] = []
    cursor = None
    while True:
        params = {"instance_id": "web-1", "limit": 7} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/tasks", params=params)).json()
        assert all(item["instance_id"] == "web-1" for item in body["items"])
        seen += [item["task_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 30


async def test_instance_filter_combines_with_status_and_function(filled):
    _, client = filled
    params = {"instance_id": "web-2", "status": "failed", "func_name": "charge", "limit": 100}
    items = (await client.get("/tasks", params=params)).json()["items"]
    assert len(items) == 10  # i even and divisible by 3: 0, 6, ..., 54
    assert {(i["instance_id"], i["status"], i["func_name"]) for i in items} == {
        ("web-2", "failed", "charge")
    }


async def test_id_search_finds_tasks_by_any_part_of_their_id(filled):
    _, client = filled
    items = (await client.get("/tasks", params={"id_contains": "0042"})).json()["items"]
    assert [i["task_id"] for i in items] == ["0042" + "ab" * 13 + "00"]
    items = (await client.get("/tasks", params={"id_contains": "abff"})).json()["items"]
    assert len(items) == 10
    full = "0017" + "ab" * 13 + "00"
    items = (await client.get("/tasks", params={"id_contains": full})).json()["items"]
    assert [i["task_id"] for i in items] == [full]
    assert (await client.get("/tasks", params={"id_contains": "zz"})).json() == {
        "items": [],
        "next_cursor": None,
    }


async def test_a_scan_stops_at_its_budget_and_continues_from_its_cursor(filled):
    manager, _ = filled
    extra = ExtraFilter(id_contains="abff")  # ids 0050..0059: the oldest ten of sixty
    pages = []
    cursor = None
    while True:
        query = TaskQuery.build(limit=10, cursor=cursor)
        page = await manager._scheduler.history.scan(query, extra, budget=25)
        pages.append(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    # 25 records examined per request: two empty pages that carry the scan on, then the matches.
    assert [len(p.records) for p in pages] == [0, 0, 10]
    assert all(r.task_id.endswith("ff") for r in pages[-1].records)


async def test_metrics_give_each_function_a_failure_rate_over_the_recent_window(filled):
    _, client = filled
    body = (await client.get("/tasks/metrics")).json()
    charge, mail = body["by_func"]["charge"], body["by_func"]["mail"]
    assert charge["count"] == mail["count"] == 30
    assert charge["failed_recent"] == 10 and mail["failed_recent"] == 10
    assert charge["failure_rate"] == pytest.approx(1 / 3)
    assert charge["p50"] == pytest.approx(0.4)
    assert body["window"] == 60


async def test_metrics_count_a_running_task_once_when_live_records_are_stored(tmp_path):
    manager = TaskManager(snapshot_db=tmp_path / "history.db", shutdown_timeout=0.1)
    app = FastAPI()
    TaskAdmin(app, manager)
    release = asyncio.Event()

    @manager.task()
    async def wait_here() -> None:
        await release.wait()

    async with app.router.lifespan_context(app):
        task_id = manager.submit(wait_here)
        while manager.get(task_id).status is not TaskStatus.RUNNING:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        await manager.flush()  # the live record is now in the backend as well
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            body = (await client.get("/tasks/metrics")).json()
            release.set()
            await wait_finished(manager, task_id)
            await manager.flush()
            after = (await client.get("/tasks/metrics")).json()
    assert body["by_status"] == {"running": 1}
    assert body["by_func"]["wait_here"]["count"] == 1, body
    assert after["by_status"] == {"success": 1}
