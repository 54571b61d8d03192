"""The bulk part of the history contract, on every backend: counting a selection and purging it
(oldest first, within a limit, never a live record, every index kept consistent)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskflow.backends.base import SnapshotBackend
from taskflow.models import TERMINAL_STATUSES
from taskflow.query import Selection, TaskQuery, sort_key
from taskflow.retry import RETRYABLE
from tests.backends.conftest import T0, F, I, P, R, S, Store, ids, mixed_history, rec


def select(allowed=TERMINAL_STATUSES, **filters: object) -> Selection:
    return Selection.build(allowed=allowed, **filters)  # type: ignore[arg-type]


SELECTIONS = [
    {},
    {"status": "failed"},
    {"status": "success", "func_name": "resize"},
    {"func_name": "send_email"},
    {"since": T0 + timedelta(seconds=3)},
    {"until": T0 + timedelta(seconds=7)},
    {"since": T0 + timedelta(seconds=2), "until": T0 + timedelta(seconds=9), "status": "failed"},
    {"func_name": "nobody"},
]


@pytest.mark.parametrize("filters", SELECTIONS)
async def test_count_selected_matches_the_reference(
    backend: SnapshotBackend, filters: dict[str, object]
) -> None:
    records = mixed_history()
    await backend.save(records)
    selection = select(**filters)
    assert await backend.count_selected(selection) == sum(map(selection.matches, records))
    retryable = select(RETRYABLE, **{k: v for k, v in filters.items() if k != "status"})
    assert await backend.count_selected(retryable) == sum(map(retryable.matches, records))


@pytest.mark.parametrize("filters", SELECTIONS)
async def test_purge_deletes_the_oldest_matching_finished_records(
    backend: SnapshotBackend, store: Store, filters: dict[str, object]
) -> None:
    records = mixed_history()
    await backend.save(records)
    selection = select(**filters)
    matching = sorted((r for r in records if selection.matches(r)), key=sort_key)
    first = await backend.purge(selection, 5)
    assert first == min(5, len(matching))
    gone = {r.task_id for r in matching[:first]}
    for record in records:
        assert (await backend.get(record.task_id) is None) == (record.task_id in gone)
    rest = await backend.purge(selection, 1000)
    assert rest == len(matching) - first
    left = ids((await backend.query(TaskQuery(limit=1000))).records)
    assert sorted(left) == sorted(r.task_id for r in records if not selection.matches(r))
    assert await backend.count_selected(selection) == 0
    assert await store.problems() == []


async def test_purge_never_deletes_a_live_record(backend: SnapshotBackend, store: Store) -> None:
    records = [rec("live-p", status=P, at=1), rec("live-r", status=R, at=2), rec("done", at=3)]
    await backend.save(records)
    assert await backend.purge(select(), 100) == 1
    assert await backend.get("live-p") is not None and await backend.get("live-r") is not None
    assert await backend.get("done") is None
    assert await store.problems() == []


async def test_a_purge_larger_than_one_chunk(backend: SnapshotBackend, store: Store) -> None:
    records = [
        rec(f"many-{i:05d}", func="bulk", status=(F, I, S)[i % 3], at=i / 10) for i in range(2600)
    ]
    await backend.save(records)
    selection = select(RETRYABLE, func_name="bulk")
    expected = sum(map(selection.matches, records))
    assert await backend.count_selected(selection) == expected
    assert await backend.purge(selection, 1200) == 1200
    assert await backend.purge(selection, 10_000) == expected - 1200
    assert await backend.count_selected(select(func_name="bulk")) == 2600 - expected
    assert await store.problems() == []


async def test_a_purge_is_seen_by_every_instance(backend: SnapshotBackend, store: Store) -> None:
    other = store.make()
    await other.open()
    await backend.save([rec("seen-1", status=F), rec("seen-2", status=S, at=1)])
    assert await other.purge(select(status="failed"), 10) == 1
    assert await backend.get("seen-1") is None
    assert ids((await backend.query(TaskQuery())).records) == ["seen-2"]
    counts = await backend.counts()
    assert counts.by_status == {"success": 1}
    assert await backend.purge(select(), 0) == 0


async def test_a_purge_takes_the_records_out_of_their_tags_listings(
    backend: SnapshotBackend, store: Store
) -> None:
    records = [rec("old", at=1), rec("new", at=5)]
    for record in records:
        record.tags = {"tenant": "acme"}
    await backend.save(records)
    assert await backend.purge(select(until=T0 + timedelta(seconds=2)), 100) == 1
    page = await backend.query(TaskQuery.build(tags=["tenant:acme"]))
    assert ids(page.records) == ["new"]
    assert await store.problems() == []
