"""One odd value never stops persistence, and one bad stored value never stops reads.

Every test runs against each real backend (a SQLite file, a Redis prefix). The hypothesis test
pushes generated records with the values orjson refuses (lone surrogates, integers past 64
bits, NaN and infinities, deep nesting, very long strings, arbitrary objects) through a real
manager's flush: each record ends stored or quarantined, and every other record of its batch
is stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskflow import TaskManager, TaskRecord, TaskStatus
from taskflow.backends import RedisBackend, SqliteBackend
from taskflow.backends.base import SnapshotBackend
from taskflow.backends.codec import UnreadableRecord
from taskflow.events import EventKind
from taskflow.models import new_task_id, utcnow
from taskflow.query import TaskQuery
from tests.backends.conftest import Store
from tests.helpers import wait_finished

NON_UTF8_NAME = os.fsdecode(b"caf\xff")  # a lone surrogate, as a non-UTF-8 file name gives


async def started(backend: SnapshotBackend, **options: Any) -> TaskManager:
    manager = TaskManager(snapshot_backend=backend, **options)
    await manager.start()
    return manager


async def test_a_task_failing_with_a_non_utf8_file_name_does_not_stop_persistence(
    store: Store,
) -> None:
    manager = await started(store.make())

    @manager.task()
    def open_file() -> None:
        raise RuntimeError("file " + NON_UTF8_NAME + " not found")

    @manager.task()
    def fine(n: int) -> int:
        return n

    try:
        bad = manager.submit(open_file)
        await wait_finished(manager, bad)
        good = [manager.submit(fine, n) for n in range(5)]
        for task_id in good:
            await wait_finished(manager, task_id)
        assert await manager.flush()
        reader = store.make()
        await reader.open()
        stored = await reader.get(bad)
        assert stored is not None and stored.status is TaskStatus.FAILED
        assert "caf\\udcff" in (stored.error or "")  # escaped, still readable
        for task_id in good:
            assert (await reader.get(task_id)) is not None
        assert manager.ready
        persistence = (await _metrics(manager))["persistence"]
        assert persistence["made_safe"] >= 1
        assert persistence["unflushed"] == persistence["flush_failures"] == 0
    finally:
        await manager.stop()


async def test_arguments_orjson_refuses_are_shown_safe_and_never_rerun(store: Store) -> None:
    manager = await started(store.make(), display_func_args=True)

    @manager.task()
    def take(value: object) -> None:
        return None

    try:
        huge = manager.submit(take, 2**64 + 1)
        named = manager.submit(take, NON_UTF8_NAME)
        money = manager.submit(take, Decimal("10.00"))
        plain = manager.submit(take, {"n": 2**63})
        for task_id in (huge, named, money, plain):
            await wait_finished(manager, task_id)
        assert await manager.flush()
        reader = store.make()
        await reader.open()
        shown = {task_id: await reader.get(task_id) for task_id in (huge, named, money, plain)}
        assert shown[huge].args == [str(2**64 + 1)] and not shown[huge].rerunnable
        assert shown[named].args == ["caf\\udcff"] and not shown[named].rerunnable
        assert shown[money].args == ["Decimal('10.00')"] and not shown[money].rerunnable
        assert shown[plain].args == [{"n": 2**63}] and shown[plain].rerunnable
    finally:
        await manager.stop()


async def test_a_record_that_cannot_be_encoded_is_quarantined_and_its_batch_stored(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    manager = await started(store.make())
    try:
        good = [_finished(f"good {n}") for n in range(20)]
        poison = _finished("poison")
        poison.instance_id = b"\xff"  # type: ignore[assignment]  # bytes: nothing makes it safe
        for record in [*good[:10], poison, *good[10:]]:
            manager._store.add(record)
            manager._bus.publish(EventKind.FINISHED, record)
        with caplog.at_level(logging.ERROR):
            assert await manager.flush()
        reader = store.make()
        await reader.open()
        for record in good:
            assert (await reader.get(record.task_id)) is not None
        assert await reader.get(poison.task_id) is None
        assert caplog.text.count(poison.task_id) == 1  # logged once, with its id
        persistence = (await _metrics(manager))["persistence"]
        assert persistence["quarantined"] == 1 and persistence["unflushed"] == 0
        page = await manager.aquery(limit=100)
        assert poison.task_id in {r.task_id for r in page}  # still served from memory
    finally:
        await manager.stop()


class _FailsOnce:
    """Wraps a real backend's save so that its first call raises an unexpected error."""

    def __init__(self, backend: SnapshotBackend) -> None:
        self.backend = backend
        self.real_save = backend.save
        self.calls = 0
        backend.save = self.save  # type: ignore[method-assign]

    async def save(self, records: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in a backend")
        await self.real_save(records)


async def test_an_unexpected_error_in_a_write_is_logged_counted_and_retried(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    backend = store.make()
    fault = _FailsOnce(backend)
    manager = await started(backend)

    @manager.task()
    async def fine() -> None:
        return None

    try:
        with caplog.at_level(logging.WARNING):
            ids = [manager.submit(fine) for _ in range(5)]
            for task_id in ids:
                await wait_finished(manager, task_id)
            deadline = asyncio.get_running_loop().time() + 5
            while manager._store.unflushed() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert fault.calls >= 2
        assert not manager._store.unflushed()
        assert "a bug in a backend" in caplog.text and "Traceback" in caplog.text
        persistence = (await _metrics(manager))["persistence"]
        assert persistence["flush_failures"] >= 1
        assert manager.ready  # a write worked again
    finally:
        await manager.stop()


# -- reading stored values that cannot be decoded ----------------------------------------------


async def test_a_stored_value_that_is_not_utf8_neither_fails_startup_nor_a_listing(
    store: Store, raw_bytes_writer: Any
) -> None:
    writer = store.make()
    await writer.open()
    good = [_finished(f"good {n}", at=n) for n in range(5)]
    await writer.save(good)
    bad_id = new_task_id()
    await raw_bytes_writer(
        store, bad_id, b'{"task_id": "' + bad_id.encode() + b'", "x": "\xff\xfe"}'
    )

    manager = await started(store.make())  # reads the newest history at startup
    try:
        assert manager.ready
        listed = {r.task_id for r in await manager.aquery(limit=100)}
        assert {r.task_id for r in good} <= listed
    finally:
        await manager.stop()


@pytest.fixture
def raw_bytes_writer(store: Store) -> Any:
    """Writes bytes as a record's stored data, as another program could."""

    async def write(store: Store, task_id: str, data: bytes) -> None:
        await store.write_raw(task_id, "send_email", "failed", utcnow().timestamp(), "{}")
        if store.kind == "sqlite":
            import aiosqlite

            path = store.made[0].path  # type: ignore[attr-defined]
            async with aiosqlite.connect(path) as conn:
                await conn.execute(
                    "UPDATE tasks SET data = CAST(? AS TEXT) WHERE task_id = ?", (data, task_id)
                )
                await conn.commit()
        elif store.kind == "postgres":
            # PostgreSQL refuses text that is not valid UTF-8 at the door: what another
            # program can store there is text that is not a record.
            bad = data.decode("utf-8", "replace")
            await store.write_raw(task_id, "send_email", "failed", utcnow().timestamp(), bad)
        else:
            from redis.asyncio import Redis

            backend = store.made[0]
            assert isinstance(backend, RedisBackend)
            client = Redis.from_url(backend.url)
            await client.hset(backend.keys.task(task_id), "data", data)
            await client.aclose()

    return write


async def test_getting_an_unreadable_record_is_a_clear_error(store: Store) -> None:
    backend = store.make()
    await backend.open()
    await store.write_raw("broken", "send_email", "failed", 1.0, "{not json")
    with pytest.raises(UnreadableRecord, match="broken"):
        await backend.get("broken")


# -- property: every generated record is stored or quarantined, and never blocks the rest ------

SURROGATE = st.characters(categories=["Cs"])
TEXT = st.text(st.one_of(st.characters(), SURROGATE), max_size=40)
HUGE_INT = st.one_of(st.integers(), st.integers(min_value=2**64), st.integers(max_value=-(2**63)))
ODD = st.one_of(
    st.none(),
    st.booleans(),
    HUGE_INT,
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.just("x" * 100_000),
    st.builds(object),
    st.decimals(allow_nan=False),
    st.binary(max_size=20),
    st.sets(st.integers(), max_size=3),
)
VALUES = st.recursive(
    ODD,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(TEXT, st.integers()), inner, max_size=4),
    ),
    max_leaves=12,
)


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


@st.composite
def hostile_records(draw: st.DrawFn) -> TaskRecord:
    record = _finished(draw(TEXT) or "f", task_id=draw(st.uuids()).hex)
    record.error = draw(st.one_of(st.none(), TEXT))
    record.traceback = draw(st.one_of(st.none(), TEXT, st.just("t" * 50_000)))
    record.args = draw(st.one_of(st.none(), st.lists(VALUES, max_size=3), st.just([_deep(400)])))
    record.kwargs = draw(st.one_of(st.none(), st.dictionaries(TEXT, VALUES, max_size=3)))
    return record


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(hostile_records(), min_size=1, max_size=6))
def test_generated_records_are_stored_or_quarantined_and_never_block_their_batch(
    kind: str, batch: list[TaskRecord], request: pytest.FixtureRequest
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        if kind == "sqlite":
            make = lambda: SqliteBackend(Path(folder) / "tasks.db")  # noqa: E731
        else:
            url = request.getfixturevalue("redis_url")
            prefix = f"tftest-{uuid.uuid4().hex[:12]}"
            make = lambda: RedisBackend(url, prefix=prefix)  # noqa: E731
        asyncio.run(_store_or_quarantine(make, batch))


async def _store_or_quarantine(make: Any, hostile: list[TaskRecord]) -> None:
    manager = await started(make())
    reader = make()
    try:
        good = [_finished("plain") for _ in range(3)]
        for record in [good[0], *hostile, good[1], good[2]]:
            manager._store.add(record)
            manager._bus.publish(EventKind.FINISHED, record)
        assert await manager.flush()
        await reader.open()
        stored_ids = set()
        for record in [*hostile, *good]:
            stored = await reader.get(record.task_id)
            if stored is not None:
                stored_ids.add(record.task_id)
                assert stored.func_name  # made safe, still readable
        assert {r.task_id for r in good} <= stored_ids
        # Every generated value can be made safe, so nothing needs the quarantine (which the
        # test above shows for a record that cannot be made safe).
        assert stored_ids == {r.task_id for r in [*hostile, *good]}
        assert not manager._store.unflushed()
        listed = await reader.query(TaskQuery(limit=100))  # every stored record reads back
        assert stored_ids <= {r.task_id for r in listed.records}
    finally:
        await manager.stop()
        await reader.close()
        if isinstance(reader, RedisBackend):
            await _drop_prefix(reader)


async def _drop_prefix(backend: RedisBackend) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(backend.url)
    keys = [key async for key in client.scan_iter(match=backend.keys.pattern, count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _finished(func_name: str, at: float | None = None, task_id: str | None = None) -> TaskRecord:
    now = utcnow()
    record = TaskRecord(task_id=task_id or new_task_id(), func_name=func_name, instance_id="test")
    record.status = TaskStatus.FAILED
    record.start_time = record.end_time = now
    if at is not None:
        from datetime import datetime, timezone

        record.end_time = datetime.fromtimestamp(1_700_000_000 + at, timezone.utc)
    return record


async def _metrics(manager: TaskManager) -> dict[str, Any]:
    from taskflow.web.metrics import collect

    return await collect(manager)
