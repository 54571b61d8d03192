"""A small app for the process tests, configured by environment variables:

TEST_DB: SQLite file for history (in memory when unset); TEST_SHUTDOWN_TIMEOUT: drain seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

task_manager = TaskManager(
    snapshot_db=os.environ.get("TEST_DB") or None,
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


@app.get("/ping")
def ping() -> dict[str, float]:
    # A sync route: it needs a free thread in FastAPI's pool as well as a free event loop.
    return {"time": time.monotonic()}


@app.get("/aping")
async def aping() -> dict[str, float]:
    return {"time": time.monotonic()}
