"""Shared pieces of the benchmarks: records, timing, a private Redis, printing figures."""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from taskflow.models import TaskRecord, TaskStatus, new_task_id, utcnow

FUNCS = [f"func_{i}" for i in range(20)]
STATUSES = [TaskStatus.SUCCESS] * 8 + [TaskStatus.FAILED] + [TaskStatus.INTERRUPTED]


def finished_records(count: int, *, spread_seconds: float = 86_400.0) -> list[TaskRecord]:
    """``count`` finished records over the last ``spread_seconds``, realistic mix of outcomes."""
    now = utcnow()
    records = []
    for _ in range(count):
        end = now - timedelta(seconds=random.random() * spread_seconds)
        status = random.choice(STATUSES)
        records.append(
            TaskRecord(
                task_id=new_task_id(),
                func_name=random.choice(FUNCS),
                status=status,
                created_at=end - timedelta(seconds=0.2),
                start_time=end - timedelta(seconds=0.1),
                end_time=end,
                attempts=1 if status is TaskStatus.SUCCESS else 3,
                error=None if status is TaskStatus.SUCCESS else "RuntimeError: boom",
                instance_id="bench-1",
            )
        )
    return records


async def timed(call: Callable[[], Awaitable[object]], repeat: int) -> list[float]:
    """Seconds taken by each of ``repeat`` awaited calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def summary(times: list[float]) -> str:
    return f"median {ms(statistics.median(times))}, best {ms(min(times))}, worst {ms(max(times))}"


def report(name: str, value: str, target: str, ok: bool) -> None:
    print(f"  {name:<58} {value:<44} target {target:<12} {'OK' if ok else 'MISSED'}", flush=True)


@contextmanager
def postgres_url() -> Iterator[str]:
    """``TASKFLOW_BENCH_POSTGRES_URL``, or a private PostgreSQL cluster (fsync on, as in
    production) on a free port for this run. Each use takes a schema of its own."""
    if os.environ.get("TASKFLOW_BENCH_POSTGRES_URL"):
        yield os.environ["TASKFLOW_BENCH_POSTGRES_URL"]
        return
    from tests.integration.postgres_process import PostgresProcess, pg_bin

    if pg_bin() is None:
        raise SystemExit("bench: needs PostgreSQL installed or TASKFLOW_BENCH_POSTGRES_URL")
    server = PostgresProcess.create(fsync=True)
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def redis_url() -> Iterator[str]:
    """``TASKFLOW_BENCH_REDIS_URL``, or a private redis-server on a free port for this run."""
    if os.environ.get("TASKFLOW_BENCH_REDIS_URL"):
        yield os.environ["TASKFLOW_BENCH_REDIS_URL"]
        return
    from tests.conftest import RedisProcess

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: needs redis-server or TASKFLOW_BENCH_REDIS_URL")
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisProcess.start(binary, Path(workdir))
        try:
            yield f"{server.url}/0"
        finally:
            server.stop()
