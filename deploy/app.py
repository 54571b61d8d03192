"""The reference app: what `make run` serves and what every deployment stack runs.

Configured only by the TASKFLOW_* variables (see taskflow/settings.py). The /demo endpoints
enqueue representative tasks: fast, slow, fails then succeeds on retry, always fails.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.settings import Settings

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

settings = Settings.from_env()
task_manager = TaskManager(**settings.manager_kwargs())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # TaskAdmin starts the manager before this runs, so tasks can be submitted here.
    if os.environ.get("TASKFLOW_DEMO_SEED", "").lower() in ("1", "true", "yes"):
        # `make run` seeds a few tasks so a newcomer sees history in GET /tasks at once.
        for func, arg in (
            (fast_task, 1),
            (slow_task, 0.5),
            (flaky_task, 2),
            (failing_task, "demo failure"),
        ):
            task_manager.submit(func, arg)
    yield


app = FastAPI(title="taskflow reference app", lifespan=lifespan)
TaskAdmin(app, task_manager, display_func_args=settings.display_func_args)


@task_manager.task()
async def fast_task(n: int = 0) -> None:
    await asyncio.sleep(0.01)


@task_manager.task()
def slow_task(seconds: float = 1.0) -> None:
    import time

    time.sleep(seconds)


@task_manager.task(retries=3, delay=0.1, backoff=2.0)
def flaky_task(failures: int = 2) -> None:
    """Fails ``failures`` times per process for each argument value, then succeeds."""
    seen = _flaky_attempts.setdefault(failures, 0)
    _flaky_attempts[failures] = seen + 1
    if seen % (failures + 1) < failures:
        raise ConnectionError(f"transient failure {seen % (failures + 1) + 1} of {failures}")


_flaky_attempts: dict[int, int] = {}


@task_manager.task(retries=1, delay=0.05)
def failing_task(reason: str = "always fails") -> None:
    raise RuntimeError(reason)


@app.post("/demo/fast")
def demo_fast(background_tasks: BackgroundTasks, count: int = 1) -> dict[str, list[str | None]]:
    return {"task_ids": [background_tasks.add_task(fast_task, i) for i in range(count)]}


@app.post("/demo/slow")
def demo_slow(background_tasks: BackgroundTasks, seconds: float = 1.0) -> dict[str, str | None]:
    return {"task_id": background_tasks.add_task(slow_task, seconds)}


@app.post("/demo/flaky")
def demo_flaky(background_tasks: BackgroundTasks, failures: int = 2) -> dict[str, str | None]:
    return {"task_id": background_tasks.add_task(flaky_task, failures)}


@app.post("/demo/fail")
def demo_fail(
    background_tasks: BackgroundTasks, reason: str = "always fails"
) -> dict[str, str | None]:
    return {"task_id": background_tasks.add_task(failing_task, reason)}


@app.get("/")
def index() -> dict[str, object]:
    return {
        "instance_id": task_manager.instance_id,
        "tasks": "/tasks",
        "metrics": "/tasks/metrics",
        "try": [
            "POST /demo/fast?count=5",
            "POST /demo/slow?seconds=2",
            "POST /demo/flaky",
            "POST /demo/fail",
        ],
    }
