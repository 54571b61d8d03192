"""Write a large history straight into a SQLite file, as many instances would have over time."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from taskflow.backends.sqlite import SqliteBackend
from taskflow.models import TaskRecord, TaskStatus, utcnow

FUNCS = ("send_welcome_email", "charge_card", "resize_image", "generate_report")
BATCH = 5_000


def seed_history(path: Path, count: int) -> None:
    """``count`` finished records, newest first half a second apart; every 17th one failed."""
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _seed(path, count)).result()


async def _seed(path: Path, count: int) -> None:
    backend = SqliteBackend(path)
    await backend.open()
    now = utcnow()
    try:
        for start in range(0, count, BATCH):
            batch = []
            for i in range(start, min(start + BATCH, count)):
                end = now - timedelta(seconds=1 + i * 0.5)
                failed = i % 17 == 0
                batch.append(
                    TaskRecord(
                        task_id=f"{i:08x}" + "0" * 24,
                        func_name=FUNCS[i % len(FUNCS)],
                        status=TaskStatus.FAILED if failed else TaskStatus.SUCCESS,
                        created_at=end - timedelta(seconds=0.2),
                        start_time=end - timedelta(seconds=0.1),
                        end_time=end,
                        attempts=1,
                        instance_id=f"web-{i % 3 + 1}",
                        error="RuntimeError: upstream timed out" if failed else None,
                        args=[i],
                        kwargs={},
                    )
                )
            await backend.save(batch)
    finally:
        await backend.close()
