"""Walking a selection for a bulk retry: newest first across its statuses, and on after a
cursor without a gap or a repeat (ties of sort time across statuses included)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from taskflow.models import TaskRecord, TaskStatus
from taskflow.persistence.bulk import Bulk
from taskflow.persistence.health import BackendHealth
from taskflow.persistence.history import History
from taskflow.persistence.store import TaskStore
from taskflow.query import Cursor, Selection, sort_key
from taskflow.retry import RETRYABLE

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def finished(store: TaskStore, task_id: str, status: TaskStatus, at: float) -> TaskRecord:
    end = T0 + timedelta(seconds=at)
    record = TaskRecord(task_id, "job", status, created_at=end, end_time=end)
    store.add(record)
    store.finish(record)
    return record


async def flushed() -> bool:
    return True


async def test_the_walk_is_newest_first_across_statuses_and_resumes_after_a_cursor() -> None:
    store = TaskStore()
    health = BackendHealth(connected=True, reachable=True)
    bulk = Bulk(store, None, health, History(store, None, health, live_in_backend=False), flushed)
    statuses = [TaskStatus.FAILED, TaskStatus.INTERRUPTED, TaskStatus.SUCCESS]
    records = [finished(store, f"t{n:03d}", statuses[n % 3], at=n // 4) for n in range(60)]
    selection = Selection.build(allowed=RETRYABLE)
    expected = [r.task_id for r in sorted(records, key=sort_key, reverse=True)]
    expected = [i for i in expected if store.get(i).status in RETRYABLE]  # type: ignore[union-attr]

    walked = [r async for r in bulk.walk(selection)]
    assert [r.task_id for r in walked] == expected
    for cut in (1, 7, 20, 39):
        after = Cursor(walked[cut - 1].sort_time.timestamp(), walked[cut - 1].task_id)
        assert [r.task_id async for r in bulk.walk(selection, after)] == expected[cut:]
