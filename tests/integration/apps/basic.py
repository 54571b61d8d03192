"""A small app for the process tests, configured by environment variables:

TEST_BACKEND_URL: backend URL (``sqlite:///...`` or ``redis://...``); TEST_DB: SQLite file
(shorthand); in memory when neither is set. TEST_REDIS_PREFIX: key prefix for Redis.
TEST_SHUTDOWN_TIMEOUT: drain seconds. TEST_SNAPSHOT_INTERVAL: safety-net flush seconds.
Cluster: TEST_HEARTBEAT / TEST_EXPIRY (seconds), TEST_REQUEUE_PENDING=1, TEST_MAX_CONCURRENCY,
TEST_COMPLETIONS: a file the ``tracked`` task appends its token to when it completes.
TEST_DISPLAY_FUNC_ARGS=1: ``TaskAdmin(display_func_args=True)``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from decimal import Decimal

from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager, task_context, task_log
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


env = os.environ.get
task_manager = TaskManager(
    snapshot_backend=_backend(),
    snapshot_interval=float(env("TEST_SNAPSHOT_INTERVAL", "30")),
    shutdown_timeout=float(env("TEST_SHUTDOWN_TIMEOUT", "20")),
    heartbeat_interval=float(env("TEST_HEARTBEAT", "5")),
    instance_expiry=float(env("TEST_EXPIRY", "15")),
    requeue_pending=env("TEST_REQUEUE_PENDING") == "1",
    max_concurrency=int(env("TEST_MAX_CONCURRENCY", "0")) or None,
)
app = FastAPI()
TaskAdmin(app, task_manager, display_func_args=env("TEST_DISPLAY_FUNC_ARGS") == "1")


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


@task_manager.task()
def patient_sync(seconds: float) -> str:
    """A sync task that checks its cancellation flag every 10 ms, as long-running ones should."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if task_context().cancelled:
            return "stopped"
        time.sleep(0.01)
    return "done"


@app.post("/patient")
def enqueue_patient(background_tasks: BackgroundTasks, seconds: float = 30.0):
    return {"task_id": background_tasks.add_task(patient_sync, seconds)}


@task_manager.task()
async def reporting(steps: int, delay: float) -> None:
    """Logs a line and reports progress at every step."""
    for step in range(1, steps + 1):
        task_log(f"step {step}", step=step)
        task_context().progress(step / steps, f"step {step} of {steps}")
        await asyncio.sleep(delay)


@app.post("/reporting")
def enqueue_reporting(
    background_tasks: BackgroundTasks, tenant: str, steps: int = 20, delay: float = 0.2
):
    task_id = background_tasks.add_task(reporting, steps, delay, tags={"tenant": tenant})
    return {"task_id": task_id}


@app.post("/burst")
def enqueue_burst(background_tasks: BackgroundTasks, count: int = 10, seconds: float = 0.0):
    ids = [background_tasks.add_task(sleep_async, seconds) for _ in range(count)]
    return {"task_ids": ids, "instance_id": task_manager.instance_id}


@task_manager.task(requeue_on_interrupt=True)
async def tracked(token: str, seconds: float) -> None:
    """Sleeps, then records that it completed (one line per completion, from any process)."""
    await asyncio.sleep(seconds)
    with open(os.environ["TEST_COMPLETIONS"], "a") as log:  # noqa: ASYNC230 - one short line
        log.write(f"{token} {task_manager.instance_id}\n")


@app.post("/tracked")
def enqueue_tracked(
    background_tasks: BackgroundTasks, token: str, seconds: float = 0.2, count: int = 1
):
    tokens = [f"{token}-{n}" for n in range(count)] if count > 1 else [token]
    ids = [background_tasks.add_task(tracked, t, seconds) for t in tokens]
    return {"task_ids": ids, "tokens": tokens, "instance_id": task_manager.instance_id}


@app.post("/idempotent")
def enqueue_idempotent(background_tasks: BackgroundTasks, key: str, token: str):
    task_id = background_tasks.add_task(tracked, token, 0.5, idempotency_key=key)
    return {"task_id": task_id, "instance_id": task_manager.instance_id}


@task_manager.task()
def open_undecodable_file() -> None:
    # A file name that is not UTF-8, as os.fsdecode hands it over: a lone surrogate, which
    # orjson (the backends' encoder) refuses.
    raise RuntimeError("file " + os.fsdecode(b"caf\xff") + " not found")


@task_manager.task()
def count_to(number: int) -> int:
    return number  # 2**64 + 1 under display_func_args: past what orjson encodes


@app.post("/poison")
def enqueue_poison(background_tasks: BackgroundTasks, kind: str):
    """``kind=surrogate``: a task failing with a lone surrogate in its error (and traceback);
    ``kind=bigint``: a task whose argument is 2**64 + 1."""
    if kind == "surrogate":
        return {"task_id": background_tasks.add_task(open_undecodable_file)}
    return {"task_id": background_tasks.add_task(count_to, 2**64 + 1)}


@app.get("/ping")
def ping() -> dict[str, float]:
    # A sync route: it needs a free thread in FastAPI's pool as well as a free event loop.
    return {"time": time.monotonic()}


@app.get("/aping")
async def aping() -> dict[str, float]:
    return {"time": time.monotonic()}


@task_manager.task()
def fails_once(token: str, amount: object = 0) -> None:
    """Fails on its first run for a token (any process), then appends ``token instance`` to
    TEST_COMPLETIONS: a retry from any instance runs it with exactly its arguments."""
    marker = f"{os.environ['TEST_COMPLETIONS']}.{token}.failed"
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError(f"first run of {token} fails")
    with open(os.environ["TEST_COMPLETIONS"], "a") as log:
        log.write(f"{token} {type(amount).__name__} {amount} {task_manager.instance_id}\n")


@app.post("/fails-once")
def enqueue_fails_once(background_tasks: BackgroundTasks, token: str, decimal: bool = False):
    amount: object = Decimal("10.00") if decimal else 10  # a Decimal is not plain JSON
    return {"task_id": background_tasks.add_task(fails_once, token, amount=amount)}
