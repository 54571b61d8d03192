"""Large history: the 50 newest failed records of one function among 1,000,000, and startup.

Fills each backend with 1,000,000 finished records (done once per backend, the slow part), then
times ``query(status="failed", func_name=..., limit=50)`` and a full manager start, whose memory
must not depend on how much history is stored.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

from bench.common import (
    FUNCS,
    finished_records,
    ms,
    postgres_url,
    redis_url,
    report,
    summary,
    timed,
)
from taskflow import TaskManager
from taskflow.backends import PostgresBackend, RedisBackend, SnapshotBackend, SqliteBackend
from taskflow.query import TaskQuery

HISTORY = int(os.environ.get("BENCH_HISTORY", "1000000"))
FILL_BATCH = 10_000
QUERY_REPEAT = 200


async def fill(backend: SnapshotBackend, count: int) -> float:
    await backend.open()
    started = time.perf_counter()
    try:
        for done in range(0, count, FILL_BATCH):
            await backend.save(finished_records(min(FILL_BATCH, count - done)))
    finally:
        await backend.close()
    return time.perf_counter() - started


async def query_times(backend: SnapshotBackend) -> list[float]:
    await backend.open()
    try:
        query = TaskQuery.build(status="failed", func_name=FUNCS[3], limit=50)
        page = await backend.query(query)
        assert len(page.records) == 50, len(page.records)
        return await timed(lambda: backend.query(query), QUERY_REPEAT)
    finally:
        await backend.close()


async def startup(backend: SnapshotBackend) -> tuple[float, int]:
    """Seconds for ``TaskManager.start()`` and the bytes it left allocated."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    manager = TaskManager(snapshot_backend=backend)
    started = time.perf_counter()
    await manager.start()
    seconds = time.perf_counter() - started
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    await manager.stop()
    return seconds, held


async def run(name: str, make: object) -> None:
    small, large = make("small"), make("large")  # type: ignore[operator]
    await fill(small, 10_000)
    took = await fill(large, HISTORY)
    print(f" {name}: filled {HISTORY:,} records in {took:.0f} s")
    times = await query_times(large)
    report(
        f"{name}: 50 newest failed of one function among {HISTORY:,}",
        summary(times),
        "< 10 ms",
        statistics.median(times) < 0.010,
    )
    _, small_bytes = await startup(make("small"))  # type: ignore[operator]
    large_s, large_bytes = await startup(make("large"))  # type: ignore[operator]
    report(f"{name}: startup with {HISTORY:,} records stored", ms(large_s), "< 1 s", large_s < 1)
    same = large_bytes < small_bytes * 1.5 + 1_000_000
    report(
        f"{name}: memory after startup, {HISTORY:,} vs 10,000 stored",
        f"{large_bytes / 2**20:.1f} MiB vs {small_bytes / 2**20:.1f} MiB",
        "independent",
        same,
    )


async def main() -> None:
    print(f"history of {HISTORY:,} records")
    with tempfile.TemporaryDirectory() as tmp:
        await run("SQLite", lambda size: SqliteBackend(Path(tmp) / f"{size}.db"))
    with redis_url() as url:
        tag = uuid.uuid4().hex[:6]
        await run("Redis", lambda size: RedisBackend(url, prefix=f"bench-{size}-{tag}"))
    with postgres_url() as url:
        tag = uuid.uuid4().hex[:6]
        await run("PostgreSQL", lambda size: PostgresBackend(url, schema=f"bench_{size}_{tag}"))


if __name__ == "__main__":
    asyncio.run(main())
