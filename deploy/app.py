"""The reference app: what `make run` serves and what every deployment stack runs.

Configured only by the TASKFLOW_* variables (see taskflow/settings.py). The /demo endpoints
enqueue representative tasks: fast, slow, fails then succeeds on retry, always fails. Each answers
with the ids it enqueued and the id of the instance that took the request, which is how the load
tests and the runner's tests see that requests were spread over every instance. Every response
also names the instance that answered in an ``X-Taskflow-Instance`` header, so a client can tell
a read served from another instance (out of the shared backend) from one served by the instance
that ran the task (out of its memory): the load tests (loadtest/) rely on that.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated

from fastapi import FastAPI, Header, Query
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskflow import ManagedBackgroundTasks, TaskAdmin, TaskManager
from taskflow.settings import Settings

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

settings = Settings.from_env()
task_manager = TaskManager(**settings.manager_kwargs())
logger = logging.getLogger("deploy.app")

#: Response header naming the instance (gunicorn worker) that answered.
INSTANCE_HEADER = "X-Taskflow-Instance"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # TaskAdmin starts the manager before this runs, so tasks can be submitted here.
    if os.environ.get("TASKFLOW_DEMO_SEED", "").lower() in ("1", "true", "yes"):
        # `make run` seeds a few tasks so a newcomer sees history in GET /tasks at once. Every
        # worker runs this; the idempotency keys make it four tasks for the whole stack.
        for func, arg in (
            (fast_task, 1),
            (slow_task, 0.5),
            (flaky_task, 2),
            (failing_task, "demo failure"),
        ):
            task_manager.submit(func, arg, idempotency_key=f"demo-seed-{func.__name__}")
    # Everything the worker built at startup (imported modules, the app, its routes) lives as
    # long as the worker: keep it out of the garbage collector's full collections. Requests
    # held for durable acceptance survive the young generations, so full collections run
    # often under load; this made them about three times cheaper (docs/performance.md).
    gc.collect()
    gc.freeze()
    yield


app = FastAPI(title="taskflow reference app", lifespan=lifespan)
TaskAdmin(
    app,
    task_manager,
    display_func_args=settings.display_func_args,
    admin_token=settings.admin_token,  # TASKFLOW_ADMIN_TOKEN; /healthz and /readyz stay open
)


class InstanceHeader:
    """Pure ASGI middleware (no buffering, so streams pass untouched): adds INSTANCE_HEADER."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(INSTANCE_HEADER, task_manager.instance_id)
            await send(message)

        await self.app(scope, receive, send_named)


app.add_middleware(InstanceHeader)

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


@task_manager.task()
async def once_task(key: str) -> None:
    await asyncio.sleep(0.05)  # long enough for duplicates sent at once to overlap with it
    # One line per execution: the idempotency load test counts them in the instances' logs.
    logger.info("once_task ran for key %s", key)


#: Seconds between two ticks of the demo schedule (TASKFLOW_DEMO_TICK, the app's own switch:
#: the schedules load test sets 1 to count every tick; a minute otherwise).
DEMO_TICK = float(os.environ.get("TASKFLOW_DEMO_TICK") or 60)


@task_manager.schedule(every=timedelta(seconds=DEMO_TICK), name="demo_tick", retries=1)
async def demo_tick() -> None:
    """A periodic task: each tick runs once across every instance (docs/schedules.md)."""
    # One line per execution: the schedules load test counts them in the instances' logs.
    logger.info("demo_tick ran")


#: A client's key for one request (the Idempotency-Key header): sending the request again, to any
#: instance, returns the same task ids and runs nothing twice. nginx resends such requests to
#: another instance when the first one failed mid-request (nginx/snippets/idempotency.conf).
RequestKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)]


def task_key(request_key: str | None, index: int = 0) -> str | None:
    """The idempotency key of a request's ``index``-th task, or None for a request without."""
    return None if request_key is None else f"request:{request_key}:{index}"


# `background_tasks: BackgroundTasks` works just the same (TaskAdmin installs the managed class);
# the subclass annotation only tells type checkers that add_task returns the task id.
@app.post("/demo/fast")
def demo_fast(
    background_tasks: ManagedBackgroundTasks,
    count: Annotated[int, Query(ge=1, le=MAX_DEMO_COUNT)] = 1,
    request_key: RequestKey = None,
) -> dict[str, object]:
    ids = [
        background_tasks.add_task(fast_task, i, idempotency_key=task_key(request_key, i))
        for i in range(count)
    ]
    return {"task_ids": ids, "instance_id": task_manager.instance_id}


@app.post("/demo/slow")
def demo_slow(
    background_tasks: ManagedBackgroundTasks,
    seconds: Annotated[float, Query(ge=0, le=3600)] = 1.0,
    request_key: RequestKey = None,
) -> dict[str, object]:
    task_id = background_tasks.add_task(slow_task, seconds, idempotency_key=task_key(request_key))
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


@app.post("/demo/once")
def demo_once(
    background_tasks: ManagedBackgroundTasks,
    key: Annotated[str, Query(min_length=1, max_length=200)],
) -> dict[str, object]:
    """Enqueue with an idempotency key: every instance answers the same id, and it runs once."""
    task_id = background_tasks.add_task(once_task, key, idempotency_key=key)
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
            "POST /demo/once?key=order-42",
            "GET /tasks/schedules",
        ],
    }
