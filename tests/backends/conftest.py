"""Backend fixtures: one fresh store per test for every backend kind, cleaned up afterwards.

``backend`` is an opened backend parametrized over the kinds; ``store`` (same parameter) makes
more backends on the same data and reaches behind the backend (raw writes, consistency checks).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from redis.asyncio import Redis

from taskflow.backends.base import SnapshotBackend
from taskflow.backends.codec import TERMINAL_VALUES
from taskflow.backends.redis import RedisBackend
from taskflow.backends.redis.keys import RedisKeys
from taskflow.backends.sqlite import SqliteBackend
from taskflow.models import TaskRecord, TaskStatus
from taskflow.query import TaskQuery, sort_key

#: write_raw(task_id, func_name, status, sort_ts, data): store a row or hash as is, bypassing save.
RawWriter = Callable[[str, str, str, float, str], Awaitable[None]]


@dataclass
class Store:
    """One fresh shared store, and ways to look at it without going through the backend."""

    kind: str
    new_backend: Callable[[], SnapshotBackend]
    write_raw: RawWriter
    problems: Callable[[], Awaitable[list[str]]]
    made: list[SnapshotBackend] = field(default_factory=list)

    def make(self) -> SnapshotBackend:
        """A new, unopened backend on this store (closed at teardown)."""
        backend = self.new_backend()
        self.made.append(backend)
        return backend

    async def aclose(self) -> None:
        for backend in self.made:
            await backend.close()


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[Store]:
    """A Redis store under a random prefix; every key of that prefix is deleted afterwards."""
    keys = RedisKeys(f"tftest-{uuid.uuid4().hex[:12]}")
    client = Redis.from_url(redis_url, decode_responses=True)

    async def write_raw(task_id: str, func: str, status: str, ts: float, data: str) -> None:
        fields: dict[Any, Any] = {"data": data, "status": status, "func_name": func}
        await client.hset(keys.task(task_id), mapping={**fields, "sort_ts": repr(ts)})
        for index in (f"idx:status:{status}", f"idx:sf:{status}:{func}"):
            await client.zadd(keys.base + index, {task_id: ts})
        await client.sadd(keys.funcs, func)

    store = Store(
        "redis",
        lambda: RedisBackend(redis_url, prefix=keys.prefix),
        write_raw,
        lambda: redis_problems(client, keys),
    )
    try:
        yield store
    finally:
        await store.aclose()
        stale = [key async for key in client.scan_iter(match=keys.pattern, count=1000)]
        for start in range(0, len(stale), 1000):
            await client.delete(*stale[start : start + 1000])
        await client.aclose()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A SQLite store in a fresh file under ``tmp_path``."""
    path = tmp_path / "history" / "tasks.db"

    async def write_raw(task_id: str, func: str, status: str, ts: float, data: str) -> None:
        async with aiosqlite.connect(path, timeout=10) as conn:
            await conn.execute(
                "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, NULL, 'raw', ?, NULL)",
                (task_id, func, status, ts, ts, data),
            )
            await conn.commit()

    async def problems() -> list[str]:
        async with aiosqlite.connect(path) as conn:
            rows = await conn.execute_fetchall("PRAGMA integrity_check")
        return [str(row[0]) for row in rows if row[0] != "ok"]

    store = Store("sqlite", lambda: SqliteBackend(path), write_raw, problems)
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
async def postgres_store(postgres_url: str) -> AsyncIterator[Store]:
    """A PostgreSQL store in a schema of its own; the schema is dropped afterwards."""
    import asyncpg

    from taskflow.backends.postgres import PostgresBackend

    schema = f"tftest_{uuid.uuid4().hex[:12]}"

    async def write_raw(task_id: str, func: str, status: str, ts: float, data: str) -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(
                f"INSERT INTO {schema}.tasks VALUES ($1, $2, $3, $4, 'raw', $5)"
                " ON CONFLICT (task_id) DO UPDATE SET data = excluded.data,"
                " status = excluded.status, func_name = excluded.func_name",
                task_id,
                func,
                status,
                ts,
                data,
            )
        finally:
            await conn.close()

    async def problems() -> list[str]:
        return []  # one table: its rows are the records, its indexes PostgreSQL's own

    store = Store(
        "postgres", lambda: PostgresBackend(postgres_url, schema=schema), write_raw, problems
    )
    try:
        yield store
    finally:
        await store.aclose()
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store(request: pytest.FixtureRequest) -> Store:
    """The store of the backend kind under test (the parameter every contract test runs with)."""
    result: Store = request.getfixturevalue(f"{request.param}_store")
    return result


@pytest.fixture
async def backend(store: Store) -> SnapshotBackend:
    """An opened backend on a fresh store; closed at teardown."""
    backend = store.make()
    await backend.open()
    return backend


async def redis_problems(client: Redis, keys: RedisKeys) -> list[str]:
    """Every way the indexes disagree with the record hashes (empty when consistent)."""
    records: dict[str, dict[str, str]] = {}
    zsets: dict[str, dict[str, float]] = {}
    funcs: set[str] = set()
    live: dict[str, set[str]] = {}
    async for key in client.scan_iter(match=keys.pattern, count=1000):
        kind = await client.type(key)
        if key in (keys.instances, keys.heartbeats, keys.owners, keys.audit):
            continue  # the instance registry (checked by the cluster tests), the audit trail
        if key in (keys.schedules, keys.delayed) or key.startswith(keys.schedule("")):
            continue  # schedules and the delayed queue, checked by the schedule tests
        if key.startswith(keys.live("")):
            live[key.removeprefix(keys.live(""))] = {str(m) for m in await client.smembers(key)}
        elif kind == "hash":
            fields = await client.hgetall(key)
            records[key.removeprefix(keys.task(""))] = {str(k): str(v) for k, v in fields.items()}
        elif kind == "zset":
            members: list[Any] = await client.zrange(key, 0, -1, withscores=True)
            zsets[key] = {str(member): float(score) for member, score in members}
        elif key == keys.funcs:
            funcs = {str(name) for name in await client.smembers(key)}
    expected = expected_indexes(records, keys)
    problems = [
        f"{name}: has {zsets.get(name)}, records say {expected.get(name)}"
        for name in sorted(set(zsets) | set(expected))
        if zsets.get(name, {}) != expected.get(name, {})
    ]
    problems += live_problems(records, live)
    record_funcs = {fields["func_name"] for fields in records.values()}
    if funcs != record_funcs:
        problems.append(f"{keys.funcs} is {sorted(funcs)}, records use {sorted(record_funcs)}")
    return problems


def live_problems(records: dict[str, dict[str, str]], live: dict[str, set[str]]) -> list[str]:
    """How the live:<owner> sets disagree with the live records' owners."""
    expected: dict[str, set[str]] = {}
    for task_id, fields in records.items():
        if fields["status"] not in TERMINAL_VALUES:
            expected.setdefault(fields.get("owner", ""), set()).add(task_id)
    return [] if live == expected else [f"live sets are {live}, records say {expected}"]


def expected_indexes(
    records: dict[str, dict[str, str]], keys: RedisKeys
) -> dict[str, dict[str, float]]:
    """The sorted sets (name -> member -> score) the record hashes call for."""
    expected: dict[str, dict[str, float]] = {}
    for task_id, fields in records.items():
        status, func, ts = fields["status"], fields["func_name"], float(fields["sort_ts"])
        tags = [f"tag:{line}" for line in fields.get("tags", "").split("\n") if line]
        for name in (f"status:{status}", f"sf:{status}:{func}", *tags):
            expected.setdefault(f"{keys.base}idx:{name}", {})[task_id] = ts
    return expected


# -- records -----------------------------------------------------------------------------------

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
S, F, I, P, R = (  # noqa: E741 - short names keep the data tables readable
    TaskStatus.SUCCESS,
    TaskStatus.FAILED,
    TaskStatus.INTERRUPTED,
    TaskStatus.PENDING,
    TaskStatus.RUNNING,
)


def rec(
    task_id: str, *, func: str = "send_email", status: TaskStatus = S, at: float = 0.0
) -> TaskRecord:
    """A record whose sort time is ``T0 + at`` seconds, whatever its status."""
    moment = T0 + timedelta(seconds=at)
    if not status.finished:
        return TaskRecord(task_id, func, status, created_at=moment, instance_id="test-1")
    return TaskRecord(
        task_id,
        func,
        status,
        created_at=moment - timedelta(seconds=5),
        start_time=moment - timedelta(seconds=4),
        end_time=moment,
        attempts=1,
        error="RuntimeError: boom" if status is F else None,
        instance_id="test-1",
    )


def epoch(at: float) -> float:
    return (T0 + timedelta(seconds=at)).timestamp()


def ids(records: list[TaskRecord]) -> list[str]:
    return [r.task_id for r in records]


def newest_first(records: list[TaskRecord]) -> list[str]:
    return ids(sorted(records, key=sort_key, reverse=True))


async def read_all(backend: SnapshotBackend, limit: int, **filters: object) -> list[list[str]]:
    """Every page of a query, following next_cursor, as lists of ids."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await backend.query(TaskQuery.build(limit=limit, cursor=cursor, **filters))  # type: ignore[arg-type]
        pages.append(ids(page.records))
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
        assert len(pages) < 100, "paging does not end"


def mixed_history() -> list[TaskRecord]:
    """60 records over two functions and every status, with repeated sort times."""
    funcs = ["send_email", "resize"]
    statuses = [S, F, I, P, R]
    return [
        rec(f"mix-{i:03d}", func=funcs[i % 2], status=statuses[i % 5], at=i // 4) for i in range(60)
    ]
