"""The app the browser tests drive, configured by environment variables:

TEST_DB: shared SQLite history (in memory when unset); TEST_INSTANCE_ID: the instance's id;
TEST_ADMIN_TOKEN: protect the admin (open when unset); TEST_HEARTBEAT: stream heartbeat seconds.
TEST_SCHEDULE=1: a periodic schedule ``heartbeat`` every second (the Schedules view).
``POST /enqueue/{name}`` with ``{"args": [...], "kwargs": {...}}`` starts one of the tasks below.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from typing import Annotated, Any

from fastapi import BackgroundTasks, Body, FastAPI, HTTPException

from taskflow import TaskAdmin, TaskManager, task_context, task_log

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

task_manager = TaskManager(
    snapshot_db=os.environ.get("TEST_DB") or None,
    instance_id=os.environ.get("TEST_INSTANCE_ID") or None,
    shutdown_timeout=1.0,
)
app = FastAPI()
TaskAdmin(
    app,
    task_manager,
    display_func_args=True,
    admin_token=os.environ.get("TEST_ADMIN_TOKEN") or None,
    stream_heartbeat=float(os.environ.get("TEST_HEARTBEAT", "15")),
)


if os.environ.get("TEST_SCHEDULE") == "1":

    @task_manager.schedule(every=1, name="heartbeat")
    def heartbeat() -> None: ...


@task_manager.task()
def send_welcome_email(address: str) -> None:
    time.sleep(random.uniform(0.01, 0.08))


@task_manager.task(retries=2, delay=0.02)
def charge_card(amount: int, currency: str = "EUR") -> None:
    time.sleep(random.uniform(0.02, 0.1))
    if amount > 1000:
        raise ValueError(f"card declined: {amount} {currency} is over the limit")


@task_manager.task()
async def generate_report(name: str, seconds: float = 0.3) -> None:
    await asyncio.sleep(seconds)


@task_manager.task()
def resize_image(path: str, width: int = 640) -> None:
    time.sleep(random.uniform(0.005, 0.03))


@task_manager.task()
def explode(reason: str) -> None:
    raise RuntimeError(reason)


@task_manager.task()
async def crunch_numbers(steps: int = 10, delay: float = 0.3) -> None:
    """Logs a line and reports progress at every step (the Logs tab and the progress bars)."""
    for step in range(1, steps + 1):
        await asyncio.sleep(delay)
        task_log(f"step {step} done", level="warning" if step % 5 == 0 else "info", step=step)
        task_context().progress(step / steps, f"step {step} of {steps}")


@task_manager.task()
def say(message: str) -> None:
    task_log(message, level="error", echo=message)
    task_context().progress(0.5, message)


TASKS = {
    f.__name__: f
    for f in (
        say,
        send_welcome_email,
        charge_card,
        generate_report,
        resize_image,
        explode,
        crunch_numbers,
    )
}


@app.post("/enqueue/{name}")
def enqueue(
    name: str,
    background_tasks: BackgroundTasks,
    call: Annotated[dict[str, Any] | None, Body()] = None,
) -> dict[str, Any]:
    if name not in TASKS:
        raise HTTPException(404, f"no task {name}")
    args, kwargs = (call or {}).get("args", []), (call or {}).get("kwargs", {})
    task_id = background_tasks.add_task(TASKS[name], *args, **kwargs)
    return {"task_id": task_id, "instance_id": task_manager.instance_id}
