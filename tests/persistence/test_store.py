"""The store's bounds: count and bytes, for the recent window and for what waits for a write.

A property test drives a real TaskStore through random sequences of what the manager does
(add, finish, flush, quarantine, restore, discard) and checks after every step that the byte
totals are exactly the sum of what each record is counted at, and that the bounds hold.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.persistence.store import RECORD_BYTES, CallSpec, TaskStore

MAX_RECORDS, MAX_BYTES = 6, 12_000
MAX_UNFLUSHED, MAX_UNFLUSHED_BYTES = 5, 10_000


def record(n: int, error_size: int) -> TaskRecord:
    rec = TaskRecord(task_id=f"t{n}", func_name="f", instance_id="i")
    rec.error = "e" * error_size
    return rec


steps = st.lists(
    st.tuples(
        st.sampled_from(["add", "finish", "flush", "quarantine", "restore", "discard"]),
        st.integers(0, 12),
        st.integers(0, 5_000),
    ),
    max_size=60,
)


def check(store: TaskStore) -> None:
    weights = store._weights
    finished = sum(weights[i] for i in store._finished)
    unflushed = sum(weights[i] for i in store._unflushed)
    assert store.finished_bytes == finished
    assert store.unflushed_bytes == unflushed
    assert set(weights) == set(store._finished) | set(store._unflushed)
    assert len(store._finished) <= MAX_RECORDS
    assert len(store._finished) <= 1 or store.finished_bytes <= MAX_BYTES
    assert len(store._unflushed) <= MAX_UNFLUSHED
    assert len(store._unflushed) <= 1 or store.unflushed_bytes <= MAX_UNFLUSHED_BYTES


@settings(max_examples=200, deadline=None)
@given(steps)
def test_byte_totals_stay_exact_and_bounded(actions: list[tuple[str, int, int]]) -> None:
    store = TaskStore(
        max_records=MAX_RECORDS,
        max_unflushed=MAX_UNFLUSHED,
        max_bytes=max(MAX_BYTES, RECORD_BYTES),
        max_unflushed_bytes=max(MAX_UNFLUSHED_BYTES, RECORD_BYTES),
    )
    store.track_unflushed = True
    records: dict[int, TaskRecord] = {}
    for action, n, size in actions:
        if action == "add" and n not in records:
            records[n] = record(n, size)
            store.add(records[n], CallSpec(print, ("x" * size,), {}, size, keep=size % 2 == 0))
        elif action == "finish" and n in records:
            records[n].status = TaskStatus.SUCCESS
            records[n].end_time = utcnow()
            store.finish(records[n])
        elif action == "flush":
            store.mark_flushed(store.unflushed())
        elif action == "quarantine" and n in records:
            store.quarantine(records[n])
        elif action == "restore":
            stored = record(100 + n, size)
            stored.status = TaskStatus.FAILED
            stored.end_time = utcnow()
            store.restore([stored])
        elif action == "discard" and n in records:
            store.discard(f"t{n}")
        check(store)
