"""The schedule part of the backend contract: tick claims, paused schedules, delayed tasks.

Concurrency is real: several backend objects (separate connections) race on one store, and
exactly one of them may win each tick and each due task.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from taskflow.backends.base import SnapshotBackend
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.query import TaskQuery
from tests.backends.conftest import Store

TICK = datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc)


async def opened(store: Store, count: int) -> list[SnapshotBackend]:
    backends = [store.make() for _ in range(count)]
    for backend in backends:
        await backend.open()
    return backends


def run(task_id: str, owner: str = "web-1") -> TaskRecord:
    """The pending record of a tick's run, as the scheduler claims it."""
    return TaskRecord(task_id, "report", TaskStatus.PENDING, instance_id=owner, schedule="report")


def delayed(task_id: str, due: datetime, owner: str = "web-1") -> TaskRecord:
    return TaskRecord(
        task_id,
        "send_report",
        TaskStatus.SCHEDULED,
        instance_id=owner,
        args=[1],
        kwargs={"to": "ops"},
        rerunnable=True,
        scheduled_for=due,
    )


async def test_a_tick_is_claimed_once_and_never_before_the_newest(
    backend: SnapshotBackend,
) -> None:
    assert await backend.schedule_states() == {}
    assert await backend.claim_tick("report", TICK, run("run-1"))
    assert not await backend.claim_tick("report", TICK, run("run-2"))
    assert not await backend.claim_tick("report", TICK - timedelta(seconds=1), run("run-3"))
    assert await backend.claim_tick("report", TICK + timedelta(seconds=1), run("run-4"))
    assert await backend.claim_tick("other", TICK, run("run-5"))  # schedules are independent
    states = await backend.schedule_states()
    assert sorted(states) == ["other", "report"]
    report = states["report"]
    assert report.last_tick == TICK + timedelta(seconds=1)
    assert report.last_task_id == "run-4"
    assert not report.paused
    # The winner's run is stored with its claim; a loser's is not.
    stored = await backend.get("run-1")
    assert stored is not None and stored.status is TaskStatus.PENDING
    assert stored.schedule == "report" and stored.instance_id == "web-1"
    assert await backend.get("run-2") is None and await backend.get("run-3") is None


async def test_ticks_keep_their_sub_second_time(backend: SnapshotBackend) -> None:
    tick = TICK + timedelta(microseconds=100_000)
    assert await backend.claim_tick("fast", tick, run("a"))
    assert not await backend.claim_tick("fast", tick, run("b"))
    assert await backend.claim_tick("fast", tick + timedelta(milliseconds=100), run("c"))
    assert (await backend.schedule_states())["fast"].last_tick == tick + timedelta(milliseconds=100)


async def test_concurrent_claimers_of_one_tick_exactly_one_wins(store: Store) -> None:
    backends = await opened(store, 6)
    for n in range(15):
        tick = TICK + timedelta(seconds=n)
        wins = await asyncio.gather(
            *(
                b.claim_tick("every-second", tick, run(f"run-{n}-{i}"))
                for i, b in enumerate(backends)
            )
        )
        assert sum(wins) == 1, (n, wins)
        winner = wins.index(True)
        state = (await backends[0].schedule_states())["every-second"]
        assert state.last_task_id == f"run-{n}-{winner}"
        stored = [await backends[0].get(f"run-{n}-{i}") for i in range(len(backends))]
        assert [r is not None for r in stored] == wins


async def test_concurrent_claimers_of_a_new_schedule_exactly_one_wins(store: Store) -> None:
    backends = await opened(store, 6)
    wins = await asyncio.gather(
        *(b.claim_tick("new", TICK, run(str(i))) for i, b in enumerate(backends))
    )
    assert sum(wins) == 1


async def test_a_paused_schedule_claims_nothing_until_resumed(store: Store) -> None:
    first, second = await opened(store, 2)
    await first.set_paused("report", True)
    await first.set_paused("report", True)  # idempotent
    assert (await second.schedule_states())["report"].paused
    assert (await second.schedule_states())["report"].last_tick is None
    assert not await second.claim_tick("report", TICK, run("run-1"))
    await second.set_paused("report", False)
    assert not (await first.schedule_states())["report"].paused
    assert await first.claim_tick("report", TICK, run("run-2"))
    await first.set_paused("report", True)
    state = (await second.schedule_states())["report"]
    assert state.paused and state.last_tick == TICK and state.last_task_id == "run-2"


async def test_a_delayed_task_is_stored_scheduled_and_claimed_when_due(
    store: Store, backend: SnapshotBackend
) -> None:
    now = utcnow()
    soon, later = now + timedelta(seconds=30), now + timedelta(hours=1)
    await backend.add_delayed(delayed("d-later", later))
    await backend.add_delayed(delayed("d-soon", soon))
    stored = await backend.get("d-soon")
    assert stored is not None and stored.status is TaskStatus.SCHEDULED
    assert stored.scheduled_for == soon and stored.kwargs == {"to": "ops"}
    page = await backend.query(TaskQuery.build(status="scheduled"))
    assert sorted(r.task_id for r in page.records) == ["d-later", "d-soon"]
    assert (await backend.counts()).by_status.get("scheduled") == 2
    assert await backend.next_due() == soon

    assert await backend.claim_due(now, "web-2", 10) == []
    claimed = await backend.claim_due(soon, "web-2", 10)
    assert [r.task_id for r in claimed] == ["d-soon"]
    assert claimed[0].status is TaskStatus.SCHEDULED and claimed[0].args == [1]
    assert await backend.next_due() == later
    assert await backend.claim_due(soon, "web-3", 10) == []

    # The claimer owns it now: its pending copy is saved, the acceptor's stale copy refused.
    running = replace(claimed[0], status=TaskStatus.RUNNING, instance_id="web-2")
    assert await backend.save([running]) == []
    assert await backend.save([delayed("d-soon", soon, owner="web-1")]) == ["d-soon"]
    got = await backend.get("d-soon")
    assert got is not None and got.status is TaskStatus.RUNNING
    assert await store.problems() == []


async def test_adding_a_delayed_task_again_moves_it(backend: SnapshotBackend) -> None:
    now = utcnow()
    await backend.add_delayed(delayed("d-1", now + timedelta(hours=1)))
    await backend.add_delayed(delayed("d-1", now - timedelta(seconds=1)))
    assert await backend.next_due() == now - timedelta(seconds=1)
    assert [r.task_id for r in await backend.claim_due(now, "web-2", 10)] == ["d-1"]
    assert await backend.next_due() is None


async def test_a_delayed_task_that_already_ran_is_not_claimed_again(
    backend: SnapshotBackend,
) -> None:
    now = utcnow()
    done = replace(
        delayed("d-1", now),
        status=TaskStatus.SUCCESS,
        start_time=now,
        end_time=now,
        instance_id="web-1",
    )
    await backend.save([done])
    await backend.add_delayed(delayed("d-1", now - timedelta(seconds=1)))
    assert await backend.claim_due(now, "web-2", 10) == []
    got = await backend.get("d-1")
    assert got is not None and got.status is TaskStatus.SUCCESS


async def test_concurrent_claimers_get_each_due_task_exactly_once(store: Store) -> None:
    backends = await opened(store, 5)
    now = utcnow()
    for n in range(40):
        await backends[0].add_delayed(delayed(f"d-{n:02d}", now - timedelta(seconds=n)))

    async def drain(backend: SnapshotBackend, owner: str) -> list[str]:
        got: list[str] = []
        while batch := await backend.claim_due(now, owner, 3):
            got += [r.task_id for r in batch]
        return got

    results = await asyncio.gather(*(drain(b, f"web-{i}") for i, b in enumerate(backends)))
    everything = [task_id for result in results for task_id in result]
    assert sorted(everything) == [f"d-{n:02d}" for n in range(40)]
    assert await backends[0].next_due() is None
