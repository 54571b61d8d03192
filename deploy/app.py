"""The reference app: what `make run` serves and what every deployment stack runs.

Configured only by the TASKFLOW_* variables (see taskflow/settings.py). The /demo endpoints
enqueue representative tasks: fast, slow, fails then succeeds on retry, always fails. Each answers
with the ids it enqueued and the id of the instance that took the request, which is how the load
tests and the runner's tests see that requests were spread over every instance.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Query

from taskflow import ManagedBackgroundTasks, TaskAdmin, TaskManager
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
TaskAdmin(
    app,
    task_manager,
    display_func_args=settings.display_func_args,
    admin_token=settings.admin_token,  # TASKFLOW_ADMIN_TOKEN; /healthz and /readyz stay open
)

#: Most tasks one POST /demo/fast may enqueue.
MAX_DEMO_COUNT = 1000


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


# `background_tasks: BackgroundTasks` works just the same (TaskAdmin installs the managed class);
# the subclass annotation only tells type checkers that add_task returns the task id.
@app.post("/demo/fast")
def demo_fast(
    background_tasks: ManagedBackgroundTasks,
    count: Annotated[int, Query(ge=1, le=MAX_DEMO_COUNT)] = 1,
) -> dict[str, object]:
    ids = [background_tasks.add_task(fast_task, i) for i in range(count)]
    return {"task_ids": ids, "instance_id": task_manager.instance_id}


@app.post("/demo/slow")
def demo_slow(
    background_tasks: ManagedBackgroundTasks, seconds: Annotated[float, Query(ge=0, le=3600)] = 1.0
) -> dict[str, object]:
    task_id = background_tasks.add_task(slow_task, seconds)
    return {"task_id": task_id, "instance_id": task_manager.instance_id}


@app.post("/demo/flaky")
def demo_flaky(
    background_tasks: ManagedBackgroundTasks, failures: Annotated[int, Query(ge=0, le=3)] = 2
) -> dict[str, object]:
    task_id = background_tasks.add_task(flaky_task, failures)
    return {"task_id": task_id, "instance_id": task_manager.instance_id}


@app.post("/demo/fail")
def demo_fail(
    background_tasks: ManagedBackgroundTasks, reason: str = "always fails"
) -> dict[str, object]:
    task_id = background_tasks.add_task(failing_task, reason)
    return {"task_id": task_id, "instance_id": task_manager.instance_id}


@app.get("/")
def index() -> dict[str, object]:
    return {
        "instance_id": task_manager.instance_id,
        "tasks": "/tasks",
        "dashboard": "/tasks/dashboard",
        "metrics": "/tasks/metrics",
        "try": [
            "POST /demo/fast?count=5",
            "POST /demo/slow?seconds=2",
            "POST /demo/flaky",
            "POST /demo/fail",
        ],
    }
