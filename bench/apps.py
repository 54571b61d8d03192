"""The apps the HTTP benchmark serves, chosen by BENCH_VARIANT (plain, memory, sqlite, redis)
with BENCH_BACKEND_URL and BENCH_LIVE=0/1 for the persisted variants."""

from __future__ import annotations

import os
import uuid

from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager


async def noop() -> None:
    return None


def build() -> FastAPI:
    variant = os.environ.get("BENCH_VARIANT", "plain")
    app = FastAPI()
    if variant == "plain":

        @app.post("/enqueue")
        async def plain(background_tasks: BackgroundTasks) -> dict[str, str]:
            background_tasks.add_task(noop)
            return {"ok": "yes"}

        return app
    backend: object = None
    url = os.environ.get("BENCH_BACKEND_URL")
    if url and url.startswith("redis"):
        from taskflow.backends import RedisBackend

        backend = RedisBackend(url, prefix=f"bench-{uuid.uuid4().hex[:8]}")
    elif url:
        backend = url
    manager = TaskManager(
        snapshot_backend=backend,  # type: ignore[arg-type]
        persist_live=os.environ.get("BENCH_LIVE", "1") == "1",
        durable_accept=os.environ.get("BENCH_DURABLE", "1") == "1",
    )
    manager.task(noop)
    TaskAdmin(app, manager)

    @app.post("/enqueue")
    async def tracked(background_tasks: BackgroundTasks) -> dict[str, str | None]:
        return {"task_id": background_tasks.add_task(noop)}

    return app


app = build()
