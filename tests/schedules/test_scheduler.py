"""Scheduled tasks through the manager: periodic schedules (in memory and on a shared SQLite
file with two managers as two instances), pause and resume, catch-up policies, delayed one-off
tasks (``schedule_once``, ``add_task(run_at=/countdown=)``) and their errors."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager, TaskRecord, TaskStatus
from taskflow.backends.sqlite import SqliteBackend
from taskflow.models import utcnow
from taskflow.schedules.spec import Every
from tests.helpers import wait_finished

INTERVAL = 0.2


async def eventually(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_periodic_schedule_runs_each_tick_once_as_a_linked_task() -> None:
    manager = TaskManager()
    ticks: list[float] = []

    @manager.schedule(every=INTERVAL, name="heartbeat-report")
    def report() -> None:
        ticks.append(time.time())

    async with manager.lifespan():
        await asyncio.sleep(1.3)
    assert len(ticks) >= 4
    records = [r for r in manager.query(limit=100) if r.schedule == "heartbeat-report"]
    assert len(records) == len(ticks)
    due = sorted(r.scheduled_for for r in records if r.scheduled_for is not None)
    assert len(set(due)) == len(due)  # never a tick twice
    gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(due)}
    assert gaps == {INTERVAL}  # and none missed
    assert all(
        r.status is TaskStatus.SUCCESS and r.func_name == "heartbeat-report" for r in records
    )


async def test_an_async_schedule_gets_its_retries() -> None:
    manager = TaskManager()
    calls: list[int] = []

    @manager.schedule(every=INTERVAL, retries=2, delay=0.01)
    async def flaky() -> None:
        calls.append(1)
        if len(calls) % 2:
            raise RuntimeError("first attempt fails")

    async with manager.lifespan():
        await eventually(
            lambda: _any(manager, lambda r: r.schedule == "flaky" and r.status.finished)
        )
    finished = [r for r in manager.query() if r.schedule == "flaky" and r.status.finished]
    assert finished[-1].status is TaskStatus.SUCCESS and finished[-1].attempts == 2


async def _any(manager: TaskManager, predicate) -> bool:  # type: ignore[no-untyped-def]
    return any(predicate(r) for r in await manager.aquery(limit=200))


async def test_two_instances_on_one_file_fire_each_tick_once(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    fired: list[tuple[str, float]] = []
    managers = []
    for name in ("web-1", "web-2", "web-3"):
        manager = TaskManager(snapshot_db=db, instance_id=name)

        def tick(name: str = name) -> None:
            fired.append((name, time.time()))

        manager.schedule(every=INTERVAL, name="shared")(tick)
        managers.append(manager)
    for manager in managers:
        await manager.start()
    await asyncio.sleep(2.5)
    for manager in managers:
        await manager.stop()
    records = await _scheduled_records(db, "shared")
    due = sorted(r.scheduled_for for r in records)
    assert len(due) == len(fired) >= 8
    assert len(set(due)) == len(due)
    gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(due)}
    assert gaps == {INTERVAL}
    assert len({name for name, _ in fired}) >= 2  # the instances share the work


async def _scheduled_records(db: Path, schedule: str):  # type: ignore[no-untyped-def]
    reader = TaskManager(snapshot_db=db, instance_id="reader")
    async with reader.lifespan():
        return [r for r in await reader.aquery(limit=1000) if r.schedule == schedule]


async def test_pause_on_one_instance_stops_every_instance(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    fired: list[str] = []
    managers = []
    for name in ("web-1", "web-2"):
        manager = TaskManager(snapshot_db=db, instance_id=name)
        manager.schedule(every=INTERVAL, name="ping")(lambda name=name: fired.append(name))
        managers.append(manager)
        await manager.start()
    try:
        await eventually(lambda: _truthy(len(fired) >= 2))
        await managers[0].pause_schedule("ping")
        (view,) = await managers[1].schedules()
        assert view.paused and view.next_run is None
        await asyncio.sleep(0.3)
        count = len(fired)
        await asyncio.sleep(1.0)
        assert len(fired) == count
        await managers[1].resume_schedule("ping")
        await eventually(lambda: _truthy(len(fired) > count))
        (view,) = await managers[0].schedules()
        assert not view.paused and view.last_run is not None and view.next_run is not None
        assert view.spec == "every 0:00:00.200000" and view.func_name == "ping"
        with pytest.raises(KeyError):
            await managers[0].pause_schedule("nope")
    finally:
        for manager in managers:
            await manager.stop()


async def _truthy(value: bool) -> bool:
    return value


@pytest.mark.parametrize(("policy", "runs"), [("once", 1), ("skip", 0)])
async def test_missed_ticks_follow_the_catch_up_policy(
    tmp_path: Path, policy: str, runs: int
) -> None:
    db = tmp_path / "tasks.db"
    hour = timedelta(hours=1)
    # The last tick claimed was three hours ago: two were missed, the newest is due (late).
    backend = SqliteBackend(db)
    await backend.open()
    old = TaskRecord("old", "hourly", TaskStatus.SUCCESS, instance_id="gone")
    await backend.claim_tick("hourly", Every(hour).latest(utcnow()) - 3 * hour, old)
    await backend.close()
    manager = TaskManager(snapshot_db=db)
    fired: list[int] = []

    @manager.schedule(every=hour, catch_up=policy, grace=timedelta(seconds=0))  # type: ignore[arg-type]
    def hourly() -> None:
        fired.append(1)

    async with manager.lifespan():
        await asyncio.sleep(1.2)  # two rounds or more: still one run at most
        (view,) = await manager.schedules()
    assert len(fired) == runs
    assert (view.last_run == Every(hour).latest(utcnow())) is (runs == 1)


async def test_schedule_once_runs_at_its_time_and_is_scheduled_until_then() -> None:
    manager = TaskManager()
    seen: list[str] = []

    @manager.task
    async def remind(who: str) -> None:
        seen.append(who)

    async with manager.lifespan():
        started = time.monotonic()
        task_id = await manager.schedule_once(remind, "ops", countdown=0.5)
        record = manager.get(task_id)
        assert record is not None and record.status is TaskStatus.SCHEDULED
        assert [r.task_id for r in await manager.aquery(status="scheduled")] == [task_id]
        done = await wait_finished(manager, task_id)
        assert time.monotonic() - started >= 0.45
    assert done.status is TaskStatus.SUCCESS and seen == ["ops"]
    assert done.scheduled_for is not None


async def test_a_delayed_task_accepted_by_a_stopped_instance_runs_on_another(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.db"
    ran: list[str] = []

    def build(name: str) -> TaskManager:
        manager = TaskManager(snapshot_db=db, instance_id=name)
        manager.task(name="deliver")(lambda: ran.append(name))
        return manager

    first, second = build("web-1"), build("web-2")
    await first.start()
    run_at = datetime.now(timezone.utc) + timedelta(seconds=1)
    task_id = await first.schedule_once(first.definition("deliver").func, run_at=run_at, key="k1")
    again = await first.schedule_once(first.definition("deliver").func, run_at=run_at, key="k1")
    assert again == task_id  # one delayed task per key
    await first.stop()
    await second.start()
    try:
        done = await wait_finished(second, task_id, timeout=5)
        assert done.status is TaskStatus.SUCCESS and done.instance_id == "web-2"
        assert ran == ["web-2"]
        assert utcnow() >= run_at
    finally:
        await second.stop()


async def test_a_delayed_task_cancelled_before_its_time_never_runs() -> None:
    manager = TaskManager()
    seen: list[str] = []

    @manager.task
    async def remind(who: str) -> None:
        seen.append(who)

    async with manager.lifespan():
        task_id = await manager.schedule_once(remind, "ops", countdown=0.3)
        record = await manager.cancel(task_id)
        assert record.status is TaskStatus.CANCELLED
        await asyncio.sleep(0.8)
        assert manager.get(task_id).status is TaskStatus.CANCELLED  # type: ignore[union-attr]
    assert seen == []


async def test_a_delayed_task_cancelled_from_another_instance_runs_nowhere(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.db"
    ran: list[str] = []

    def build(name: str) -> TaskManager:
        manager = TaskManager(snapshot_db=db, instance_id=name)
        manager.task(name="deliver")(lambda: ran.append(name))
        return manager

    first, second = build("web-1"), build("web-2")
    await first.start()
    await second.start()
    try:
        run_at = datetime.now(timezone.utc) + timedelta(seconds=0.5)
        task_id = await first.schedule_once(first.definition("deliver").func, run_at=run_at)
        assert (await second.cancel(task_id)).status is TaskStatus.CANCELLED
        await asyncio.sleep(1.5)
        for manager in (first, second):
            record = await manager.aget(task_id)
            assert record is not None and record.status is TaskStatus.CANCELLED
        assert ran == []
    finally:
        await first.stop()
        await second.stop()


async def test_add_task_with_run_at_or_countdown_in_a_request() -> None:
    manager = TaskManager()
    app = FastAPI()
    TaskAdmin(app, manager)
    seen: list[int] = []

    @manager.task
    def later(n: int) -> None:
        seen.append(n)

    @app.post("/later")
    def enqueue(background_tasks: BackgroundTasks) -> dict[str, object]:
        at = datetime.now(timezone.utc) + timedelta(seconds=0.3)
        return {
            "a": background_tasks.add_task(later, 1, countdown=0.2),
            "b": background_tasks.add_task(later, n=2, run_at=at),
        }

    async with (
        manager.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        ids = (await client.post("/later")).json()
        page = (await client.get("/tasks", params={"status": "scheduled"})).json()
        assert sorted(t["task_id"] for t in page["items"]) == sorted(ids.values())
        for task_id in ids.values():
            assert (await wait_finished(manager, task_id)).status is TaskStatus.SUCCESS
    assert sorted(seen) == [1, 2]


async def test_delayed_tasks_refuse_what_another_instance_could_not_run() -> None:
    manager = TaskManager()

    @manager.task
    def registered(value: object) -> None: ...

    def unregistered() -> None: ...

    async with manager.lifespan():
        with pytest.raises(ValueError, match="not a registered task"):
            await manager.schedule_once(unregistered, countdown=1)
        with pytest.raises(ValueError, match="JSON values"):
            await manager.schedule_once(registered, object(), countdown=1)
        with pytest.raises(ValueError, match="timezone-aware"):
            await manager.schedule_once(registered, 1, run_at=datetime(2030, 1, 1))
        with pytest.raises(ValueError, match="exactly one"):
            await manager.schedule_once(registered, 1)
        with pytest.raises(ValueError, match="countdown"):
            await manager.schedule_once(registered, 1, countdown=-5)
    with pytest.raises(RuntimeError, match="started manager"):
        await manager.schedule_once(registered, 1, countdown=1)


def test_schedule_registration_errors() -> None:
    manager = TaskManager()

    @manager.schedule(every=60)
    def job() -> None: ...

    with pytest.raises(ValueError, match="already registered"):
        manager.schedule(every=60, name="job")(lambda: None)
    with pytest.raises(ValueError, match="catch_up"):
        manager.schedule(every=60, name="other", catch_up="all")(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="five-field"):
        manager.schedule(cron="every day")


@pytest.fixture
async def started() -> AsyncIterator[TaskManager]:
    manager = TaskManager()
    async with manager.lifespan():
        yield manager


@pytest.mark.parametrize("sync_route", [True, False])
async def test_a_response_returns_a_delayed_task_id_once_it_is_stored(
    tmp_path: Path, sync_route: bool
) -> None:
    db = tmp_path / "tasks.db"
    manager = TaskManager(snapshot_db=db)
    app = FastAPI()
    TaskAdmin(app, manager)

    @manager.task
    def later(n: int) -> None: ...

    if sync_route:

        @app.post("/later")
        def enqueue(background_tasks: BackgroundTasks) -> dict[str, object]:
            return {"id": background_tasks.add_task(later, 1, countdown=60)}

    else:

        @app.post("/later")
        async def enqueue_async(background_tasks: BackgroundTasks) -> dict[str, object]:
            return {"id": background_tasks.add_task(later, 1, countdown=60)}

    reader = SqliteBackend(db)
    async with (
        manager.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        await reader.open()
        try:
            for _ in range(5):
                task_id = (await client.post("/later")).json()["id"]
                # Read straight from the file the moment the response is in: already stored.
                stored = await reader.get(task_id)
                assert stored is not None and stored.status is TaskStatus.SCHEDULED
                assert stored.scheduled_for is not None
        finally:
            await reader.close()


@pytest.mark.parametrize(
    ("requeue", "status", "runs"), [(True, "success", 1), (False, "interrupted", 0)]
)
async def test_a_tick_whose_claimer_died_is_taken_over_not_lost(
    tmp_path: Path, requeue: bool, status: str, runs: int
) -> None:
    db = tmp_path / "tasks.db"
    hour = timedelta(hours=1)
    tick = Every(hour).latest(utcnow())
    # An instance claimed the tick (its run stored with the claim), then died before running it.
    backend = SqliteBackend(db)
    await backend.open()
    orphan = TaskRecord(
        "orphan-run",
        "hourly",
        TaskStatus.PENDING,
        instance_id="gone-1",
        args=[],
        kwargs={},
        rerunnable=True,
        schedule="hourly",
        scheduled_for=tick,
    )
    assert await backend.claim_tick("hourly", tick, orphan)
    await backend.close()

    manager = TaskManager(snapshot_db=db, heartbeat_interval=0.2, instance_expiry=0.8)
    ran: list[int] = []

    @manager.schedule(every=hour, requeue_on_interrupt=requeue)
    def hourly() -> None:
        ran.append(1)

    async with manager.lifespan():
        await eventually(
            lambda: _any(manager, lambda r: r.task_id == "orphan-run" and r.status.finished)
        )
        await asyncio.sleep(0.5)  # and the survivor does not fire that tick itself
        record = await manager.aget("orphan-run")
    assert record is not None and record.status.value == status
    assert len(ran) == runs
