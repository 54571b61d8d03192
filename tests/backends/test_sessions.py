"""Revoked dashboard sessions: shared by every backend on a store, until they would have expired."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiosqlite
import pytest

from taskflow.backends.base import SnapshotBackend
from taskflow.backends.sqlite import SqliteBackend
from taskflow.backends.sqlite.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from tests.backends.conftest import Store, rec


def later(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


async def test_a_revoked_session_is_seen_by_every_backend_on_the_store(
    store: Store, backend: SnapshotBackend
) -> None:
    other = store.make()
    await other.open()
    assert not await backend.session_revoked("s-1")
    await backend.revoke_session("s-1", later(60))
    assert await backend.session_revoked("s-1")
    assert await other.session_revoked("s-1")
    assert not await other.session_revoked("s-2")
    await other.revoke_session("s-1", later(60))  # idempotent
    assert await backend.session_revoked("s-1")


async def test_a_revocation_ends_when_the_session_would_have_expired(
    backend: SnapshotBackend,
) -> None:
    await backend.revoke_session("short", later(0.3))
    await backend.revoke_session("already-expired", later(-1))
    assert await backend.session_revoked("short")
    assert not await backend.session_revoked("already-expired")
    await asyncio.sleep(0.4)
    assert not await backend.session_revoked("short")


async def test_revocations_leave_the_history_alone(store: Store, backend: SnapshotBackend) -> None:
    await backend.save([rec("t-1")])
    await backend.revoke_session("s-1", later(60))
    assert [r.task_id for r in await backend.load_recent(10)] == ["t-1"]
    assert await store.problems() == []


async def test_sqlite_prunes_expired_revocations(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "tasks.db")
    await backend.open()
    try:
        await backend.revoke_session("old", later(0.2))
        await asyncio.sleep(0.3)
        await backend.revoke_session("new", later(60))
    finally:
        await backend.close()
    with sqlite3.connect(tmp_path / "tasks.db") as conn:
        rows = conn.execute("SELECT session_id FROM revoked_sessions").fetchall()
    assert rows == [("new",)]


async def test_a_version_2_file_is_migrated_keeping_its_history(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    async with aiosqlite.connect(path) as conn:
        for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):
            await conn.execute(statement)
        await conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        await conn.execute("PRAGMA user_version = 2")
        await conn.commit()
    backend = SqliteBackend(path)
    await backend.open()
    try:
        await backend.save([rec("kept")])
        await backend.close()
        await backend.open()  # the migration ran once; opening again changes nothing
        assert (await backend.pragmas())["user_version"] == SCHEMA_VERSION >= 3
        assert [r.task_id for r in await backend.load_recent(10)] == ["kept"]
        await backend.revoke_session("s-1", later(60))
        assert await backend.session_revoked("s-1")
    finally:
        await backend.close()


@pytest.mark.redis
async def test_redis_keeps_a_revocation_under_the_prefix_with_a_ttl(
    redis_store: Store, redis_url: str
) -> None:
    from redis.asyncio import Redis

    from taskflow.backends.redis import RedisBackend

    backend = redis_store.make()
    assert isinstance(backend, RedisBackend)
    await backend.open()
    await backend.revoke_session("s-1", later(60))
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        key = backend.keys.revoked("s-1")
        assert key.startswith(backend.keys.base)
        assert 55_000 < await client.pttl(key) <= 60_000
    finally:
        await client.aclose()
