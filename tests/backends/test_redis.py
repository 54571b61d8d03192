"""Redis-only behaviour: URL checks, key layout, password masking, outages, atomic saves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.crc import key_slot

from taskflow.backends import backend_from_url
from taskflow.backends.base import BackendError, SnapshotBackend
from taskflow.backends.redis import RedisBackend
from taskflow.backends.redis.backend import SAVE_CHUNK
from taskflow.backends.sqlite import SqliteBackend
from taskflow.models import TaskRecord, TaskStatus
from tests.backends.conftest import Store


def finished(task_id: str, func: str = "job") -> TaskRecord:
    now = datetime.now(timezone.utc)
    return TaskRecord(task_id, func, TaskStatus.SUCCESS, created_at=now, end_time=now)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://localhost:6379/abc", "database 'abc'"),
        ("redis://localhost:6379/0?db=x", "database 'x'"),
        ("redis://:6379/0", "no host"),
        ("redis://localhost:port/0", "port"),
        ("http://localhost:6379/0", "scheme 'http'"),
        ("unix://", "no socket path"),
        ("redis://localhost/0?socket_timeout=soon", "socket_timeout"),
    ],
)
def test_bad_urls_fail_at_construction(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        RedisBackend(url)


def test_construction_never_connects() -> None:
    backend = RedisBackend("redis://no-such-host.invalid:6379/3", prefix="app")
    assert backend.describe() == "redis://no-such-host.invalid:6379/3 prefix=app"
    assert isinstance(backend.clone(), RedisBackend)


@pytest.mark.parametrize("prefix", ["", "{tf}", "a b", "tf*"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisBackend("redis://localhost:6379/0", prefix=prefix)


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:s3cret@localhost:6379/2",
        "redis://:s3cret@localhost:6379/2",
        "rediss://localhost:6380/0?password=s3cret",
    ],
)
def test_describe_and_errors_mask_the_password(url: str) -> None:
    described = RedisBackend(url).describe()
    assert "s3cret" not in described
    assert "***" in described
    with pytest.raises(ValueError, match=r"\*\*\*") as caught:
        RedisBackend(url.replace("/2", "/two").replace("/0", "/zero"))
    assert "s3cret" not in str(caught.value)


async def test_an_unreachable_server_fails_fast_with_backend_error() -> None:
    backend = RedisBackend("redis://127.0.0.1:1/0", socket_connect_timeout=1.0)
    await backend.open()  # builds the pool only
    try:
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"127\.0\.0\.1:1"):
            await backend.ping()
        with pytest.raises(BackendError):
            await backend.save([finished("lost")])
        with pytest.raises(BackendError):
            await backend.load_recent(10)
        assert time.monotonic() - started < 5
    finally:
        await backend.close()


def test_backend_from_url_picks_the_class(tmp_path: Path) -> None:
    sqlite = backend_from_url(f"sqlite:///{tmp_path}/tasks.db")
    assert isinstance(sqlite, SqliteBackend)
    assert sqlite.describe() == f"sqlite:{tmp_path}/tasks.db"
    for url in (
        "redis://127.0.0.1:6379/15",
        "rediss://cache.example:6380/1",
        "unix:///run/redis.sock",
    ):
        assert isinstance(backend_from_url(url), RedisBackend)
    with pytest.raises(ValueError, match="'ftp'"):
        backend_from_url("ftp://example.com/tasks")
    with pytest.raises(ValueError, match="database 'zero'"):
        backend_from_url("redis://localhost:6379/zero")


@pytest.mark.redis
async def test_every_key_shares_the_prefix_hash_tag(redis_store: Store, redis_url: str) -> None:
    backend = redis_store.make()
    await backend.open()
    await backend.save(
        [finished("k1", "mail:send"), finished("k2", "resize image"), finished("k3")]
    )
    assert isinstance(backend, RedisBackend)
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [k async for k in client.scan_iter(match=f"*{backend.keys.prefix}*")]
    finally:
        await client.aclose()
    assert len(keys) == 8  # 3 records, the status index, 3 status+function indexes, funcs
    assert all(key.startswith(f"{{{backend.keys.prefix}}}:") for key in keys)
    assert len({key_slot(key.encode()) for key in keys}) == 1


@pytest.mark.redis
async def test_a_failing_save_writes_nothing(redis_store: Store, redis_url: str) -> None:
    backend = redis_store.make()
    await backend.open()
    assert isinstance(backend, RedisBackend)
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        await client.set(backend.keys.task("wrong-type"), "not a hash")
        with pytest.raises(BackendError, match="save failed"):
            await backend.save([finished("first"), finished("wrong-type"), finished("last")])
    finally:
        await client.delete(backend.keys.task("wrong-type"))
        await client.aclose()
    assert await backend.get("first") is None
    assert await backend.load_recent(10) == []
    assert await redis_store.problems() == []


@pytest.mark.redis
@pytest.mark.parametrize(
    "index", ["idx:status:success", "idx:sf:success:job", "funcs", "owners", "live:test-1"]
)
async def test_an_index_key_of_the_wrong_kind_fails_the_save_before_anything_is_written(
    redis_store: Store, redis_url: str, index: str
) -> None:
    backend = redis_store.make()
    await backend.open()
    assert isinstance(backend, RedisBackend)
    client = Redis.from_url(redis_url, decode_responses=True)
    key = backend.keys.base + index
    live = replace(finished("live"), status=TaskStatus.RUNNING, end_time=None)
    live.instance_id = "test-1"
    try:
        await client.set(key, "written by another program")
        with pytest.raises(BackendError, match="WRONGTYPE"):
            await backend.save([finished("first"), live, finished("last")])
        stored = [k async for k in client.scan_iter(match=backend.keys.pattern)]
        assert stored == [key]  # nothing else: no record, no index entry
    finally:
        await client.delete(key)
        await client.aclose()
    assert await redis_store.problems() == []


async def flush_scripts(redis_url: str) -> None:
    """Make the server forget every cached script, as a restart does."""
    raw = Redis.from_url(redis_url)
    try:
        await raw.script_flush()
    finally:
        await raw.aclose()


async def test_scripts_load_on_a_server_that_has_none(redis_store: Store, redis_url: str) -> None:
    # A fresh or restarted server has no scripts cached: the client must load them (a
    # two-word command, SCRIPT LOAD, which the command packing has to split like redis-py).
    await flush_scripts(redis_url)
    backend = redis_store.make()
    await backend.open()
    await backend.save([finished("after-flush")])
    stored = await backend.get("after-flush")
    assert stored is not None and stored.status is TaskStatus.SUCCESS


@pytest.mark.redis
async def test_layout_1_indexes_are_dropped_and_its_history_still_reads(
    redis_store: Store, redis_url: str
) -> None:
    writer = redis_store.make()
    await writer.open()
    records = [finished(f"old-{i}", "job" if i % 2 else "mail") for i in range(6)]
    await writer.save(records)
    assert isinstance(writer, RedisBackend)
    keys = writer.keys
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        # What an older version also kept: every record, the finished ones, and per function.
        scored = {r.task_id: r.end_time.timestamp() for r in records if r.end_time is not None}
        for name in ("idx:all", "idx:done", "idx:func:job", "idx:func:mail"):
            await client.zadd(keys.base + name, scored)
        reader = redis_store.make()
        await reader.open()
        assert [r.task_id for r in await reader.load_recent(10)] == [
            r.task_id for r in sorted(records, key=lambda r: r.task_id, reverse=True)
        ]
        left = [k async for k in client.scan_iter(match=keys.base + "idx:*")]
    finally:
        await client.aclose()
    assert not [k for k in left if "idx:all" in k or "idx:done" in k or "idx:func:" in k]
    assert await redis_store.problems() == []


async def stored_count(backend: SnapshotBackend) -> int:
    return sum((await backend.counts()).by_status.values())


def many(count: int, prefix: str) -> list[TaskRecord]:
    return [finished(f"{prefix}-{i}", "job" if i % 2 else "mail") for i in range(count)]


async def streaming_backend(store: Store) -> RedisBackend:
    """An open backend that has saved one record, "before": Redis has its save script, so
    every chunk of a large save streams (none goes as a plain call first)."""
    backend = store.make()
    assert isinstance(backend, RedisBackend)
    await backend.open()
    await backend.save([finished("before")])
    return backend


def on_encode(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch, then: Callable[[int], None]
) -> list[int]:
    """Record the size of every chunk the backend encodes, calling ``then(count so far)``
    just before each is encoded; returns the list of sizes."""
    encode, calls = backend._save_args, []

    def counted(records: list[TaskRecord], mode: str = "") -> list[object]:
        calls.append(len(records))
        then(len(calls))
        return encode(records, mode)

    monkeypatch.setattr(backend, "_save_args", counted)
    return calls


@pytest.mark.redis
async def test_a_large_save_streams_its_chunks_in_order(redis_store: Store) -> None:
    backend = await streaming_backend(redis_store)
    records = many(SAVE_CHUNK * 2 + 7, "big")
    # The same id in the first and the last chunk: the later copy must win.
    again = replace(records[0], status=TaskStatus.FAILED, error="second copy")
    await backend.save([*records, again])
    stored = await backend.get(records[0].task_id)
    assert stored is not None and stored.status is TaskStatus.FAILED
    assert await stored_count(backend) == len(records) + 1
    assert await redis_store.problems() == []


@pytest.mark.redis
async def test_a_large_save_reloads_scripts_the_server_lost(
    redis_store: Store, redis_url: str
) -> None:
    backend = await streaming_backend(redis_store)
    await flush_scripts(redis_url)
    records = many(SAVE_CHUNK + 1, "lost-scripts")
    await backend.save(records)
    assert await stored_count(backend) == len(records) + 1


@pytest.mark.redis
async def test_a_large_save_survives_its_connection_being_killed_midway(
    redis_store: Store, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await streaming_backend(redis_store)

    def kill(count: int) -> None:
        if count != 2:
            return
        # The first chunk is on its way: the server drops the connection.
        with SyncRedis.from_url(redis_url, decode_responses=True) as killer:
            db = str(killer.connection_pool.connection_kwargs.get("db", 0))
            streaming = [
                c["id"] for c in killer.client_list() if (c["cmd"], c["db"]) == ("evalsha", db)
            ]
            assert len(streaming) == 1
            killer.client_kill_filter(_id=streaming[0])

    calls = on_encode(backend, monkeypatch, kill)
    records = many(SAVE_CHUNK * 2, "killed")
    await backend.save(records)  # sent again, whole, on a new connection
    assert calls == [SAVE_CHUNK] * 4
    assert await stored_count(backend) == len(records) + 1
    assert await redis_store.problems() == []


@pytest.mark.redis
async def test_an_error_in_a_middle_chunk_fails_the_save_and_the_rest_is_stored(
    redis_store: Store, redis_url: str
) -> None:
    backend = await streaming_backend(redis_store)
    records = many(SAVE_CHUNK * 3, "chunked")
    wrong = backend.keys.task(records[SAVE_CHUNK].task_id)
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        await client.set(wrong, "not a hash")
        with pytest.raises(BackendError, match="save failed"):
            await backend.save(records)
    finally:
        await client.delete(wrong)
        await client.aclose()
    # The middle chunk (all or nothing) is not stored; those before and after it are.
    assert await backend.get(records[0].task_id) is not None
    assert await backend.get(records[SAVE_CHUNK + 1].task_id) is None
    assert await backend.get(records[-1].task_id) is not None
    await backend.save(records)  # and the next save works
    assert await stored_count(backend) == len(records) + 1
    assert await redis_store.problems() == []


@pytest.mark.redis
async def test_a_first_large_save_sends_each_chunk_once(
    redis_store: Store, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await flush_scripts(redis_url)  # as on a fresh or restarted server
    backend = redis_store.make()
    assert isinstance(backend, RedisBackend)
    await backend.open()
    calls = on_encode(backend, monkeypatch, lambda _count: None)
    records = many(SAVE_CHUNK * 3, "first")
    await backend.save(records)
    assert calls == [SAVE_CHUNK] * 3
    assert await stored_count(backend) == len(records)


@pytest.mark.redis
async def test_a_save_that_fails_midway_leaves_no_reply_for_the_next_caller(
    redis_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await streaming_backend(redis_store)

    def fail(count: int) -> None:
        if count == 3:  # two chunks sent, their replies unread
            raise ValueError("cannot encode")

    on_encode(backend, monkeypatch, fail)
    with pytest.raises(ValueError, match="cannot encode"):
        await backend.save(many(SAVE_CHUNK * 3, "cut"))
    monkeypatch.undo()
    # The pool hands the same connection out again: it must answer this call, not the save's.
    stored = await backend.get("before")
    assert stored is not None and stored.task_id == "before"
    # The chunks already sent may still be in the server's buffer of the closed connection:
    # each runs whole (a script), so the indexes agree once the server has read them all.
    deadline = time.monotonic() + 2
    problems = await redis_store.problems()
    while problems and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        problems = await redis_store.problems()
    assert problems == []
