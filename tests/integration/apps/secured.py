"""An app with an admin token, for the session tests across processes. Configured by:

TEST_BACKEND_URL (``sqlite:///...`` or ``redis://...``), TEST_REDIS_PREFIX, TEST_INSTANCE_ID,
TEST_ADMIN_TOKEN (required), TEST_STREAM_HEARTBEAT (seconds, default 15).
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.backends import RedisBackend, SnapshotBackend, backend_from_url

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

url = os.environ["TEST_BACKEND_URL"]
backend: SnapshotBackend = (
    RedisBackend(url, prefix=os.environ.get("TEST_REDIS_PREFIX", "taskflow"))
    if url.startswith("redis")
    else backend_from_url(url)
)
task_manager = TaskManager(
    snapshot_backend=backend,
    instance_id=os.environ.get("TEST_INSTANCE_ID") or None,
    shutdown_timeout=1.0,
)
app = FastAPI()
TaskAdmin(
    app,
    task_manager,
    admin_token=os.environ["TEST_ADMIN_TOKEN"],
    stream_heartbeat=float(os.environ.get("TEST_STREAM_HEARTBEAT", "15")),
)
