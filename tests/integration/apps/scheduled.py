"""An app with scheduled tasks for the process tests, on the backend of ``TEST_BACKEND_URL``
(``TEST_REDIS_PREFIX`` for Redis; in memory when unset):

* ``every_second``: a 1-second schedule whose task appends ``<tick> <instance>`` to the file
  ``TEST_TICKS`` (the tick is the second it started in: it starts milliseconds after its tick);
* ``POST /once?token=&countdown=``: ``schedule_once`` of ``deliver``, which appends
  ``<token> <instance> <epoch seconds>`` to ``TEST_COMPLETIONS`` when it runs.

TEST_HEARTBEAT / TEST_EXPIRY: membership timings (seconds).
"""

from __future__ import annotations

import logging
import math
import os
import time
from datetime import timedelta

from fastapi import FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.backends import SnapshotBackend, backend_from_url

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")


def _backend() -> SnapshotBackend | None:
    url = os.environ.get("TEST_BACKEND_URL")
    if not url:
        return None
    if url.startswith("redis"):
        from taskflow.backends import RedisBackend

        return RedisBackend(url, prefix=os.environ.get("TEST_REDIS_PREFIX", "taskflow"))
    return backend_from_url(url)


env = os.environ.get
task_manager = TaskManager(
    snapshot_backend=_backend(),
    heartbeat_interval=float(env("TEST_HEARTBEAT", "0.5")),
    instance_expiry=float(env("TEST_EXPIRY", "2")),
)
app = FastAPI()
TaskAdmin(app, task_manager)


def _append(path: str, line: str) -> None:
    with open(path, "a") as log:  # one short line: O_APPEND keeps lines of processes whole
        log.write(line + "\n")


@task_manager.schedule(every=timedelta(seconds=1))
def every_second() -> None:
    _append(env("TEST_TICKS", os.devnull), f"{math.floor(time.time())} {task_manager.instance_id}")


@task_manager.task()
def deliver(token: str) -> None:
    _append(
        env("TEST_COMPLETIONS", os.devnull), f"{token} {task_manager.instance_id} {time.time()}"
    )


@app.post("/once")
async def once(token: str, countdown: float) -> dict[str, str]:
    task_id = await task_manager.schedule_once(deliver, token, countdown=countdown)
    return {"task_id": task_id, "instance_id": task_manager.instance_id}
