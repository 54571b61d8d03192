"""The SnapshotBackend contract for retention and counts, run against every backend."""

from __future__ import annotations

from datetime import timedelta

from taskflow.backends.base import HistoryCounts, SnapshotBackend
from taskflow.query import TaskQuery
from tests.backends.conftest import T0, F, I, P, R, S, Store, ids, mixed_history, newest_first, rec


async def test_prune_by_age_removes_only_old_finished_records(
    backend: SnapshotBackend, store: Store
) -> None:
    old = [rec(f"old-{s.value}", status=s, at=i) for i, s in enumerate([S, F, I])]
    old_live = [rec("old-pending", status=P, at=1), rec("old-running", status=R, at=2)]
    boundary = rec("at-cutoff", status=S, at=10)
    new = [rec(f"new-{i}", status=F, func="resize", at=20 + i) for i in range(3)]
    await backend.save(old + old_live + [boundary] + new)

    removed = await backend.prune(older_than=T0 + timedelta(seconds=10), keep=None)

    assert removed == 3
    assert sorted(ids(await backend.load_recent(100))) == sorted(ids([*old_live, boundary, *new]))
    assert all([await backend.get(r.task_id) is None for r in old])
    assert (
        await backend.query(TaskQuery.build(status="success", func_name="send_email"))
    ).records == [boundary]
    assert await backend.counts() == HistoryCounts(
        {"pending": 1, "running": 1, "success": 1, "failed": 3}, {"send_email": 3, "resize": 3}
    )
    assert await store.problems() == []


async def test_prune_by_count_keeps_the_newest_finished(
    backend: SnapshotBackend, store: Store
) -> None:
    finished = [rec(f"f-{i:02d}", status=[S, F, I][i % 3], at=i // 2) for i in range(20)]
    live = [rec("live-0", status=P, at=0), rec("live-1", status=R, at=30)]
    await backend.save(finished + live)

    assert await backend.prune(older_than=None, keep=5) == 15
    assert await backend.prune(older_than=None, keep=5) == 0

    kept = newest_first(finished)[:5]
    assert sorted(ids(await backend.load_recent(100))) == sorted([*kept, "live-0", "live-1"])
    assert await store.problems() == []


async def test_prune_by_age_and_count_together(backend: SnapshotBackend, store: Store) -> None:
    await backend.save([rec(f"c-{i:02d}", func=f"fn{i % 4}", status=F, at=i) for i in range(30)])
    assert await backend.prune(older_than=None, keep=None) == 0
    # Age alone would remove 10, count alone 20: the union goes.
    assert await backend.prune(older_than=T0 + timedelta(seconds=10), keep=10) == 20
    assert ids(await backend.load_recent(100)) == [f"c-{i:02d}" for i in range(29, 19, -1)]
    assert await backend.prune(older_than=T0 + timedelta(seconds=25), keep=100) == 5
    assert (await backend.counts()).by_func == {"fn0": 1, "fn1": 2, "fn2": 1, "fn3": 1}
    assert await store.problems() == []


async def test_prune_in_several_chunks(backend: SnapshotBackend, store: Store) -> None:
    await backend.save([rec(f"m-{i:04d}", func=f"fn{i % 3}", at=i) for i in range(2500)])
    assert await backend.prune(older_than=None, keep=100) == 2400
    assert ids(await backend.load_recent(1000)) == [f"m-{i:04d}" for i in range(2499, 2399, -1)]
    assert await store.problems() == []


async def test_counts_by_status_and_function(backend: SnapshotBackend) -> None:
    assert await backend.counts() == HistoryCounts({}, {})
    await backend.save(mixed_history())
    counts = await backend.counts()
    assert counts.by_status == {
        "success": 12,
        "failed": 12,
        "interrupted": 12,
        "pending": 12,
        "running": 12,
    }
    assert counts.by_func == {"send_email": 30, "resize": 30}
