"""The SnapshotBackend contract: one body, run against every backend (see conftest.py).

Retention and counts live in test_retention.py.

Listings are checked against ``page_of``, the in-memory reference implementation of a query.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import datetime, timedelta, timezone

import pytest

from taskflow.backends.base import BackendError, HistoryCounts, SnapshotBackend
from taskflow.backends.codec import UnreadableRecord
from taskflow.models import TaskRecord
from taskflow.query import TaskQuery, page_of
from tests.backends.conftest import (
    T0,
    F,
    I,
    P,
    R,
    S,
    Store,
    epoch,
    ids,
    mixed_history,
    newest_first,
    read_all,
    rec,
)


async def test_roundtrip_keeps_every_field(backend: SnapshotBackend) -> None:
    plus_two = timezone(timedelta(hours=2))
    full = TaskRecord(
        task_id="roundtrip-1",
        func_name="send_email",
        status=F,
        created_at=datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=plus_two),
        start_time=datetime(2024, 5, 1, 12, 0, 1, 5, tzinfo=timezone.utc),
        end_time=datetime(2024, 5, 1, 12, 0, 3, 999999, tzinfo=timezone.utc),
        attempts=3,
        error="ValueError: bad address ü",
        traceback='Traceback (most recent call last):\n  File "app.py", line 3\nValueError: bad',
        instance_id="host-42",
        args=["a@example.com", 3, None, [1, 2.5]],
        kwargs={"subject": "Hi ✓", "nested": {"flag": True, "items": []}},
        retry_of="roundtrip-0",
    )
    bare = TaskRecord("roundtrip-2", "resize", P, created_at=T0)
    await backend.save([full, bare])

    got = await backend.get("roundtrip-1")
    assert got == full
    assert got is not None and got.created_at.utcoffset() == timedelta(hours=2)
    assert got.duration == full.duration
    assert await backend.get("roundtrip-2") == bare
    assert await backend.get("no-such-task") is None


async def test_load_recent_is_newest_first_and_limited(backend: SnapshotBackend) -> None:
    records = [rec(f"r-{i:02d}", at=i * 7 % 30) for i in range(30)]
    random.Random(1).shuffle(records)
    await backend.save(records)

    assert ids(await backend.load_recent(10)) == newest_first(records)[:10]
    assert ids(await backend.load_recent(100)) == newest_first(records)
    assert await backend.load_recent(0) == []


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"status": "failed"},
        {"status": "running"},
        {"func_name": "resize"},
        {"status": "success", "func_name": "send_email"},
        {"status": "pending", "func_name": "nobody"},
        {"since": T0 + timedelta(seconds=5), "until": T0 + timedelta(seconds=9)},
        {"since": T0 + timedelta(seconds=10), "status": "interrupted"},
        {"until": T0 + timedelta(seconds=3), "func_name": "send_email"},
    ],
    ids=repr,
)
async def test_query_filters_match_the_reference(
    backend: SnapshotBackend, filters: dict[str, object]
) -> None:
    history = mixed_history()
    await backend.save(history)

    for limit in (1, 7, 1000):
        query = TaskQuery.build(limit=limit, **filters)  # type: ignore[arg-type]
        page, expected = await backend.query(query), page_of(history, query)
        assert ids(page.records) == ids(expected.records)
        assert (page.next_cursor is None) == (expected.next_cursor is None)


async def test_since_and_until_are_inclusive(backend: SnapshotBackend) -> None:
    await backend.save([rec(f"b-{i}", at=i) for i in range(5)])
    page = await backend.query(
        TaskQuery.build(since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=3))
    )
    assert ids(page.records) == ["b-3", "b-2", "b-1"]


async def test_ties_are_broken_by_task_id_descending(backend: SnapshotBackend) -> None:
    await backend.save(
        [rec(f"tie-{c}", at=1) for c in "cadeb"] + [rec("later", at=2), rec("earlier")]
    )
    page = await backend.query(TaskQuery.build())
    assert ids(page.records) == ["later", "tie-e", "tie-d", "tie-c", "tie-b", "tie-a", "earlier"]


@pytest.mark.parametrize(("filters", "total"), [({}, 250), ({"status": "failed"}, 125)], ids=repr)
async def test_cursor_pages_have_no_gaps_or_repeats(
    backend: SnapshotBackend, filters: dict[str, object], total: int
) -> None:
    # Groups of three records share a sort time, so pages end in the middle of ties.
    records = [rec(f"p-{i:03d}", status=(F if i % 2 else S), at=i // 3) for i in range(250)]
    random.Random(7).shuffle(records)
    await backend.save(records)
    wanted = [r for r in records if "status" not in filters or r.status.value == filters["status"]]

    pages = await read_all(backend, 100, **filters)

    assert [len(p) for p in pages] == [min(100, total - start) for start in range(0, total, 100)]
    flat = [task_id for page in pages for task_id in page]
    assert len(flat) == len(set(flat)) == total
    assert flat == newest_first(wanted)


async def test_paging_through_a_large_tie(backend: SnapshotBackend) -> None:
    records = [rec(f"same-{i:04d}", at=5) for i in range(600)] + [rec("old", at=1)]
    await backend.save(records)
    pages = await read_all(backend, 250)
    assert [len(p) for p in pages] == [250, 250, 101]
    assert [task_id for page in pages for task_id in page] == newest_first(records)


async def test_pages_are_stable_while_newer_records_arrive(backend: SnapshotBackend) -> None:
    await backend.save([rec(f"s-{i:02d}", at=i) for i in range(20)])
    first = await backend.query(TaskQuery.build(limit=8))
    await backend.save([rec(f"new-{i}", at=100 + i) for i in range(5)])
    second = await backend.query(TaskQuery.build(limit=8, cursor=first.next_cursor))
    assert ids(first.records) + ids(second.records) == [f"s-{i:02d}" for i in range(19, 3, -1)]


async def test_saving_the_same_id_again_updates_it(backend: SnapshotBackend) -> None:
    await backend.save([rec("up", status=P, at=1)])
    await backend.save([rec("up", status=R, at=1)])
    done = rec("up", func="send_email", status=S, at=4)
    await backend.save([done])
    await backend.save([done])  # idempotent

    assert await backend.get("up") == done
    assert ids(await backend.load_recent(10)) == ["up"]
    assert ids((await backend.query(TaskQuery.build(status="running"))).records) == []
    assert ids((await backend.query(TaskQuery.build(status="success"))).records) == ["up"]
    assert await backend.counts() == HistoryCounts({"success": 1}, {"send_email": 1})


async def test_a_stale_live_copy_never_overwrites_a_finished_record(
    backend: SnapshotBackend, store: Store
) -> None:
    finished = rec("fin", status=F, at=3)
    await backend.save([finished])
    await backend.save([rec("fin", status=R, at=1), rec("fin", status=P, at=0)])
    # Inside one batch too, in either order.
    await backend.save([rec("a", status=S, at=2), rec("a", status=R, at=1)])
    await backend.save([rec("b", status=R, at=1), rec("b", status=S, at=2)])

    assert await backend.get("fin") == finished
    for task_id in ("a", "b"):
        assert await backend.get(task_id) == rec(task_id, status=S, at=2)
    assert (await backend.query(TaskQuery.build(status="running"))).records == []
    assert (await backend.query(TaskQuery.build(status="pending"))).records == []
    assert await backend.counts() == HistoryCounts({"failed": 1, "success": 2}, {"send_email": 3})
    assert await store.problems() == []


async def test_a_large_batch_naming_ids_twice_applies_them_in_order(
    backend: SnapshotBackend, store: Store
) -> None:
    # Larger than one Redis script call: the copies of "a" and "b" land in different calls.
    filler = [rec(f"f-{i:05d}", at=i / 100) for i in range(6000)]
    batch = [rec("a", status=S, at=2), rec("b", status=R, at=1), *filler]
    batch += [rec("a", status=R, at=1), rec("b", status=S, at=2)]
    await backend.save(batch)
    for task_id in ("a", "b"):
        assert await backend.get(task_id) == rec(task_id, status=S, at=2)
    assert (await backend.query(TaskQuery.build(status="running"))).records == []
    assert await store.problems() == []


async def test_a_finished_record_may_be_replaced_by_a_finished_one(
    backend: SnapshotBackend,
) -> None:
    await backend.save([rec("again", status=F, at=1)])
    await backend.save([rec("again", func="resize", status=S, at=2)])
    assert await backend.get("again") == rec("again", func="resize", status=S, at=2)
    assert await backend.counts() == HistoryCounts({"success": 1}, {"resize": 1})
    assert (await backend.query(TaskQuery.build(func_name="send_email"))).records == []


async def test_malformed_stored_data_is_skipped(
    backend: SnapshotBackend, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    good = [rec(f"good-{i}", status=F, at=i) for i in range(5)]
    await backend.save(good)
    # Bad entries are the newest and sit between good ones, so pages must read past them.
    unknown_status = json.dumps(rec("bad-status", status=F).to_dict() | {"status": "exploded"})
    for task_id, at, data in [
        ("bad-json", 9, "{oops"),
        ("bad-shape", 8, "[1, 2]"),
        ("bad-status", 3.5, unknown_status),
    ]:
        await store.write_raw(task_id, "send_email", "failed", epoch(at), data)

    with caplog.at_level(logging.WARNING):
        assert ids(await backend.load_recent(10)) == newest_first(good)
        assert [i for page in await read_all(backend, 2) for i in page] == newest_first(good)
        filtered = await backend.query(
            TaskQuery.build(status="failed", func_name="send_email", limit=3)
        )
        assert ids(filtered.records) == ["good-4", "good-3", "good-2"]
        assert filtered.next_cursor is not None
        for unreadable in ("bad-json", "bad-status"):
            with pytest.raises(UnreadableRecord, match=unreadable):
                await backend.get(unreadable)
    assert backend.codec.unreadable >= 3
    warned = caplog.text
    for task_id in ("bad-json", "bad-shape", "bad-status"):
        assert task_id in warned


async def test_an_empty_save_is_a_no_op(backend: SnapshotBackend) -> None:
    await backend.save([])
    assert await backend.load_recent(10) == []
    assert await backend.counts() == HistoryCounts({}, {})


async def test_ten_thousand_records_in_one_call(backend: SnapshotBackend) -> None:
    statuses = [S, F, I, R]
    records = [
        rec(f"k-{i:05d}", func=f"fn{i % 4}", status=statuses[i % 7 % 4], at=i / 8)
        for i in range(10_000)
    ]
    await backend.save(records)

    counts = await backend.counts()
    assert sum(counts.by_status.values()) == sum(counts.by_func.values()) == 10_000
    query = TaskQuery.build(status="failed", func_name="fn1", limit=50)
    assert ids((await backend.query(query)).records) == ids(page_of(records, query).records)


async def test_concurrent_saves_from_one_instance(backend: SnapshotBackend, store: Store) -> None:
    batches = [[rec(f"g{b}-{i}", at=b * 10 + i) for i in range(10)] for b in range(20)]
    await asyncio.gather(*(backend.save(batch) for batch in batches))
    assert len(await backend.load_recent(1000)) == 200
    assert await store.problems() == []


async def test_other_instances_see_saved_records(backend: SnapshotBackend, store: Store) -> None:
    other = backend.clone()
    store.made.append(other)
    assert other.describe() == backend.describe()
    await other.open()
    await backend.save([rec("shared", status=S, at=1)])
    assert await other.get("shared") == rec("shared", status=S, at=1)
    third = store.make()
    await third.open()
    assert ids(await third.load_recent(5)) == ["shared"]


async def test_open_and_close_are_idempotent(backend: SnapshotBackend) -> None:
    await backend.open()
    await backend.ping()
    await backend.save([rec("kept")])
    await backend.close()
    await backend.close()
    for call in (
        backend.ping(),
        backend.get("kept"),
        backend.save([rec("x")]),
        backend.load_recent(1),
    ):
        with pytest.raises(BackendError, match="not open"):
            await call
    await backend.open()
    assert await backend.get("kept") == rec("kept")
