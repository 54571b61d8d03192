"""Two backends on one store (as two instances have), for each backend kind; cleaned up after."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taskflow.backends.base import SnapshotBackend
from taskflow.backends.sqlite import SqliteBackend


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def two_instances(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[SnapshotBackend, SnapshotBackend]]:
    """Two opened backends sharing one SQLite file or one Redis prefix."""
    if request.param == "sqlite":
        backends: list[SnapshotBackend] = [SqliteBackend(tmp_path / "tasks.db") for _ in "ab"]
    else:
        from taskflow.backends.redis import RedisBackend

        url = request.getfixturevalue("redis_url")
        prefix = f"tftest-{uuid.uuid4().hex[:12]}"
        backends = [RedisBackend(url, prefix=prefix) for _ in "ab"]
    for backend in backends:
        await backend.open()
    try:
        yield backends[0], backends[1]
    finally:
        if request.param == "redis":
            from redis.asyncio import Redis

            client = Redis.from_url(request.getfixturevalue("redis_url"))
            keys = [key async for key in client.scan_iter(match=f"{{{prefix}}}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
        for backend in backends:
            await backend.close()
