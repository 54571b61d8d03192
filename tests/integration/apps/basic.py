"""A small app for the process tests, configured by environment variables:

TEST_BACKEND_URL: backend URL (``sqlite:///...`` or ``redis://...``); TEST_DB: SQLite file
(shorthand); in memory when neither is set. TEST_REDIS_PREFIX: key prefix for Redis.
TEST_SHUTDOWN_TIMEOUT: drain seconds. TEST_SNAPSHOT_INTERVAL: safety-net flush seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.backends import SnapshotBackend, backend_from_url

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")


def _backend() -> SnapshotBackend | None:
    url = os.environ.get("TEST_BACKEND_URL")
    if not url and os.environ.get("TEST_DB"):
        url = f"sqlite:///{os.environ['TEST_DB']}"
    if not url:
        return None
    if url.startswith("redis"):
        from taskflow.backends import RedisBackend

        return RedisBackend(url, prefix=os.environ.get("TEST_REDIS_PREFIX", "taskflow"))
    return backend_from_url(url)


task_manager = TaskManager(
    snapshot_backend=_backend(),
    snapshot_interval=float(os.environ.get("TEST_SNAPSHOT_INTERVAL", "30")),
    shutdown_timeout=float(os.environ.get("TEST_SHUTDOWN_TIMEOUT", "20")),
)
app = FastAPI()
TaskAdmin(app, task_manager)


@task_manager.task()
def sleep_sync(seconds: float) -> None:
    time.sleep(seconds)


@task_manager.task()
async def sleep_async(seconds: float) -> None:
    await asyncio.sleep(seconds)


@app.post("/sleep")
def enqueue_sleep(background_tasks: BackgroundTasks, seconds: float = 1.0, sync: bool = True):
    func = sleep_sync if sync else sleep_async
    return {"task_id": background_tasks.add_task(func, seconds)}


@app.post("/burst")
def enqueue_burst(background_tasks: BackgroundTasks, count: int = 10, seconds: float = 0.0):
    ids = [background_tasks.add_task(sleep_async, seconds) for _ in range(count)]
    return {"task_ids": ids, "instance_id": task_manager.instance_id}


@app.get("/ping")
def ping() -> dict[str, float]:
    # A sync route: it needs a free thread in FastAPI's pool as well as a free event loop.
    return {"time": time.monotonic()}


@app.get("/aping")
async def aping() -> dict[str, float]:
    return {"time": time.monotonic()}
