"""Task control on every backend: the cancellation part of the cluster contract, the
``cancelled`` status, and the log lines and progress stored with a record.

Several backend objects (separate connections) read one store's log of requests, each from its
own position, as the instances of a cluster do.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path

import aiosqlite
import pytest

from taskflow.backends.base import CANCEL_BATCH, BackendError, SnapshotBackend
from taskflow.backends.postgres.schema import SCHEMA_VERSION as PG_VERSION
from taskflow.backends.sqlite import SqliteBackend
from taskflow.backends.sqlite.schema import APPLICATION_ID, MIGRATIONS
from taskflow.backends.sqlite.schema import SCHEMA_VERSION as SQLITE_VERSION
from taskflow.models import TaskRecord, TaskStatus
from taskflow.query import TaskQuery
from tests.backends.conftest import F, R, Store, epoch, rec

C = TaskStatus.CANCELLED


async def test_a_reader_starts_at_the_end_and_sees_later_requests_in_order(
    store: Store, backend: SnapshotBackend
) -> None:
    await backend.request_cancel("before")
    ids, position = await backend.cancel_requests(None)
    assert ids == []
    assert await backend.cancel_requests(position) == ([], position)  # nothing new: same place

    for task_id in ("a", "b", "a"):
        await backend.request_cancel(task_id)
    ids, later = await backend.cancel_requests(position)
    assert ids == ["a", "b", "a"]
    assert later != position
    assert await backend.cancel_requests(later) == ([], later)


async def test_every_reader_sees_every_request_once(store: Store) -> None:
    writers = [store.make() for _ in range(3)]
    readers = [store.make() for _ in range(2)]
    for backend in (*writers, *readers):
        await backend.open()
    positions = [(await reader.cancel_requests(None))[1] for reader in readers]
    wanted = [f"t-{w}-{n}" for w in range(3) for n in range(20)]

    async def write(w: int) -> None:
        for n in range(20):
            await writers[w].request_cancel(f"t-{w}-{n}")

    await asyncio.gather(*(write(w) for w in range(3)))
    for reader, position in zip(readers, positions, strict=True):
        seen: list[str] = []
        while True:
            ids, position = await reader.cancel_requests(position)
            if not ids:
                break
            seen += ids
        assert sorted(seen) == sorted(wanted)
        for w in range(3):  # each writer's requests in the order it made them
            assert [i for i in seen if i.startswith(f"t-{w}-")] == [f"t-{w}-{n}" for n in range(20)]


async def test_a_long_log_is_read_in_batches(backend: SnapshotBackend) -> None:
    _, position = await backend.cancel_requests(None)
    for n in range(CANCEL_BATCH + 5):
        await backend.request_cancel(f"t-{n}")
    first, position = await backend.cancel_requests(position)
    rest, position = await backend.cancel_requests(position)
    assert (len(first), len(rest)) == (CANCEL_BATCH, 5)
    assert first[0] == "t-0" and rest[-1] == f"t-{CANCEL_BATCH + 4}"


async def test_cancelled_is_a_terminal_status_everywhere(backend: SnapshotBackend) -> None:
    cancelled = rec("c-1", status=C, at=10)
    await backend.save([rec("r-1", status=R, at=5), cancelled])
    assert (await backend.get("c-1")).status is C  # type: ignore[union-attr]
    page = await backend.query(TaskQuery.build(status="cancelled"))
    assert [r.task_id for r in page.records] == ["c-1"]
    page = await backend.query(TaskQuery.build(status="cancelled", func_name="send_email"))
    assert [r.task_id for r in page.records] == ["c-1"]
    # A stale running copy never replaces it, as for every finished status.
    await backend.save([replace(cancelled, status=R, end_time=None)])
    assert (await backend.get("c-1")).status is C  # type: ignore[union-attr]
    counts = await backend.counts()
    assert counts.by_status.get("cancelled") == 1
    # Retention counts it as finished.
    assert await backend.prune(older_than=None, keep=0) == 1
    assert await backend.get("c-1") is None


async def test_log_lines_and_progress_are_stored_with_the_record(backend: SnapshotBackend) -> None:
    record = rec("logged", status=R)
    record.logs = [
        {"at": 1.5, "level": "info", "message": "step \u2603", "fields": {"n": 1}},
        {"at": 2.5, "level": "error", "message": "\ud800 lone surrogate"},
    ]
    record.logs_dropped = 7
    record.progress = {"fraction": 0.4, "message": "step 2 of 5"}
    await backend.save([record])
    stored = await backend.get("logged")
    assert stored is not None
    assert stored.logs is not None and stored.logs[0] == record.logs[0]
    assert stored.logs[1]["message"].endswith("lone surrogate")  # made safe, kept
    assert stored.logs_dropped == 7
    assert stored.progress == {"fraction": 0.4, "message": "step 2 of 5"}
    listed = (await backend.query(TaskQuery.build(status="running"))).records
    assert listed[0].progress == stored.progress


async def test_a_cancelled_idempotent_task_gives_its_key_back(backend: SnapshotBackend) -> None:
    await backend.save([rec("key-1", status=C)])
    assert await backend.claim_new(rec("key-1", status=TaskStatus.PENDING)) is None


@pytest.mark.parametrize("position", ["not-a-position", "-1", "1; DROP TABLE tasks"])
async def test_a_foreign_position_is_refused_without_harm(
    backend: SnapshotBackend, position: str
) -> None:
    with pytest.raises((ValueError, BackendError)):
        await backend.cancel_requests(position)


async def test_a_version_3_sqlite_file_is_migrated_for_cancellation(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    async with aiosqlite.connect(path) as conn:
        for step in (0, 1, 2):
            for statement in MIGRATIONS[step]:
                await conn.execute(statement)
        await conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        await conn.execute("PRAGMA user_version = 3")
        await conn.commit()
    backend = SqliteBackend(path)
    await backend.open()
    try:
        await backend.save([rec("kept", status=C)])
        _, position = await backend.cancel_requests(None)
        await backend.request_cancel("t-1")
        assert (await backend.cancel_requests(position))[0] == ["t-1"]
        assert (await backend.pragmas())["user_version"] == SQLITE_VERSION
        assert [r.status for r in await backend.load_recent(10)] == [C]
    finally:
        await backend.close()


@pytest.mark.postgres
async def test_a_version_1_postgres_schema_is_migrated_for_cancellation(postgres_url: str) -> None:
    import asyncpg

    from taskflow.backends.postgres import PostgresBackend
    from taskflow.backends.postgres.schema import migrations

    schema = f"tftest_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        for statement in migrations(schema)[0]:
            await conn.execute(statement)
        await conn.execute(f"CREATE TABLE {schema}.schema_version (version integer NOT NULL)")
        await conn.execute(f"INSERT INTO {schema}.schema_version VALUES (1)")
        backend = PostgresBackend(postgres_url, schema=schema)
        await backend.open()
        try:
            _, position = await backend.cancel_requests(None)
            await backend.request_cancel("t-1")
            assert (await backend.cancel_requests(position))[0] == ["t-1"]
        finally:
            await backend.close()
        version = await conn.fetchval(f"SELECT max(version) FROM {schema}.schema_version")
        assert version == PG_VERSION
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


def tagged(task_id: str, tags: dict[str, str], **kwargs: object) -> TaskRecord:
    record = rec(task_id, **kwargs)  # type: ignore[arg-type]
    record.tags = tags
    return record


async def test_tags_are_stored_indexed_and_combined(store: Store, backend: SnapshotBackend) -> None:
    await backend.save(
        [
            tagged("a1", {"tenant": "acme", "plan": "pro"}, at=1),
            tagged("a2", {"tenant": "acme"}, at=2, status=F),
            tagged("b1", {"tenant": "bolt", "plan": "pro"}, at=3),
            rec("none", at=4),
        ]
    )
    assert (await backend.get("a1")).tags == {"tenant": "acme", "plan": "pro"}  # type: ignore[union-attr]

    async def listed(**filters: object) -> list[str]:
        page = await backend.query(TaskQuery.build(**filters))  # type: ignore[arg-type]
        return [r.task_id for r in page.records]

    assert await listed(tags=["tenant:acme"]) == ["a2", "a1"]
    assert await listed(tags=["tenant:acme", "plan:pro"]) == ["a1"]
    assert await listed(tags={"plan": "pro"}) == ["b1", "a1"]
    assert await listed(tags=["tenant:acme"], status="failed") == ["a2"]
    assert await listed(tags=["tenant:acme"], func_name="other") == []
    assert await listed(tags=["tenant:nobody"]) == []
    # Pages follow the tag's order with cursors.
    first = await backend.query(TaskQuery.build(tags=["tenant:acme"], limit=1))
    assert [r.task_id for r in first.records] == ["a2"] and first.next_cursor
    rest = await backend.query(TaskQuery.build(tags=["tenant:acme"], cursor=first.next_cursor))
    assert [r.task_id for r in rest.records] == ["a1"]
    # A record's sort time moves when it finishes: the tag index follows it.
    done = tagged("a1", {"tenant": "acme", "plan": "pro"}, at=10)
    await backend.save([done])
    assert await listed(tags=["tenant:acme"]) == ["a1", "a2"]
    assert await store.problems() == []
    # Retention removes tag entries with their records.
    assert await backend.prune(older_than=None, keep=0) == 4
    assert await listed(tags=["tenant:acme"]) == []
    assert await store.problems() == []


async def test_many_tagged_records_page_through_in_order(backend: SnapshotBackend) -> None:
    records = [
        tagged(f"t{n:03d}", {"tenant": "acme" if n % 3 else "bolt"}, at=n) for n in range(60)
    ]
    await backend.save(records)
    seen: list[str] = []
    cursor = None
    while True:
        page = await backend.query(TaskQuery.build(tags=["tenant:acme"], limit=7, cursor=cursor))
        seen += [r.task_id for r in page.records]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"t{n:03d}" for n in reversed(range(60)) if n % 3]


async def test_sqlite_tag_rows_go_with_their_tasks(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "tasks.db")
    await backend.open()
    try:
        await backend.save([tagged("a", {"tenant": "acme", "plan": "pro"}, status=R, at=1)])
        await backend.save([tagged("a", {"tenant": "acme", "plan": "pro"}, at=5)])  # finished
        await backend.save([tagged("b", {"tenant": "acme"}, at=6), rec("c", at=7)])
        async with aiosqlite.connect(tmp_path / "tasks.db") as conn:
            rows = await conn.execute_fetchall("SELECT tag, task_id, sort_ts FROM task_tags")
            assert sorted(rows) == sorted(
                [
                    ("plan:pro", "a", epoch(5)),
                    ("tenant:acme", "a", epoch(5)),
                    ("tenant:acme", "b", epoch(6)),
                ]
            )
        assert await backend.prune(older_than=None, keep=1) == 2
        async with aiosqlite.connect(tmp_path / "tasks.db") as conn:
            assert await conn.execute_fetchall("SELECT task_id FROM task_tags") == []
    finally:
        await backend.close()
