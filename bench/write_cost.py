"""What one record's write costs, by the size of the batch it is written in.

The group commit writes everything that finished meanwhile in one batch: thousands of records
under a steady load without durable acceptance, but with it at most one per waiting request
(a load of 32 concurrent requests writes batches of about 20). Each size writes about 6,000
fresh finished records straight through the backend's ``save`` and prints the CPU time per
record: this process's (the event loop and SQLite's thread) and, for Redis, the server's
(``INFO cpu``), which on a 2-core machine runs on the same cores as the app.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import redis

from bench.common import redis_url
from taskflow.backends import RedisBackend, SnapshotBackend, SqliteBackend
from taskflow.models import TaskRecord, TaskStatus, new_task_id, utcnow

BATCH_SIZES = (1, 20, 200, 2_000)
RECORDS_PER_SIZE = 6_000


def _finished(count: int) -> list[TaskRecord]:
    now = utcnow()
    return [
        TaskRecord(
            task_id=new_task_id(),
            func_name="send_email",
            status=TaskStatus.SUCCESS,
            created_at=now,
            start_time=now,
            end_time=now,
            attempts=1,
            instance_id="bench-1",
        )
        for _ in range(count)
    ]


def _server_cpu(client: redis.Redis | None) -> float:
    if client is None:
        return 0.0
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def per_record(
    backend: SnapshotBackend, server: redis.Redis | None
) -> list[tuple[int, float, float]]:
    """(batch size, this process's CPU us per record, the Redis server's) for each size."""
    await backend.open()
    try:
        await backend.save(_finished(20_000))  # a table and indexes that are not empty
        figures = []
        for size in BATCH_SIZES:
            batches = [_finished(size) for _ in range(max(1, RECORDS_PER_SIZE // size))]
            count = size * len(batches)
            server_before = _server_cpu(server)
            before = time.process_time()
            for batch in batches:
                await backend.save(batch)
            cpu = (time.process_time() - before) / count * 1e6
            figures.append((size, cpu, (_server_cpu(server) - server_before) / count * 1e6))
        return figures
    finally:
        await backend.close()


def _print(name: str, figures: list[tuple[int, float, float]]) -> None:
    for size, cpu, server in figures:
        extra = f" + {server:5.1f} in redis-server" if server else ""
        print(f"  {name:<8} batches of {size:>5,}: {cpu:6.1f} us CPU per record{extra}", flush=True)


async def main() -> None:
    print(f"write cost per record by batch size ({RECORDS_PER_SIZE:,} records per size)")
    with tempfile.TemporaryDirectory() as tmp:
        _print("SQLite", await per_record(SqliteBackend(Path(tmp) / "bench.db"), None))
    with redis_url() as url:
        server = redis.Redis.from_url(url)
        try:
            backend = RedisBackend(url, prefix=f"bench-{uuid.uuid4().hex[:6]}")
            _print("Redis", await per_record(backend, server))
        finally:
            server.close()


if __name__ == "__main__":
    asyncio.run(main())
