"""The apps the HTTP benchmark serves, chosen by BENCH_VARIANT (plain, memory, db) with
BENCH_BACKEND_URL, BENCH_LIVE=0/1 and BENCH_DURABLE=0/1 for the persisted variants, and
BENCH_GC_FREEZE=0 to leave the garbage collector as it is.

Three endpoints each: ``POST /enqueue`` adds one no-op async task and does nothing else (the
worst case for any overhead); ``POST /email`` and ``POST /email-sync`` are what a typical
endpoint does: validate a JSON body into a model and queue a function with its fields, an
async one or a plain (sync) one, which runs in a thread (a stand-in for an SMTP call that
builds the message and sends nothing).
"""

from __future__ import annotations

import gc
import os
import uuid
from typing import Any

from fastapi import BackgroundTasks, FastAPI
from pydantic import BaseModel

from taskflow import TaskAdmin, TaskManager


async def noop() -> None:
    return None


class Email(BaseModel):
    to: str
    subject: str
    body: str


def send_email(to: str, subject: str, body: str) -> None:
    message = f"To: {to}\r\nSubject: {subject}\r\n\r\n{body}"
    message.encode()


async def send_email_async(to: str, subject: str, body: str) -> None:
    send_email(to, subject, body)


def build() -> FastAPI:
    variant = os.environ.get("BENCH_VARIANT", "plain")
    app = FastAPI()
    if variant == "plain":

        @app.post("/enqueue")
        async def plain(background_tasks: BackgroundTasks) -> dict[str, str]:
            background_tasks.add_task(noop)
            return {"ok": "yes"}

        @app.post("/email")
        async def plain_email(email: Email, background_tasks: BackgroundTasks) -> dict[str, Any]:
            background_tasks.add_task(send_email_async, email.to, email.subject, email.body)
            return {"queued": True, "task_id": None}

        @app.post("/email-sync")
        async def plain_sync(email: Email, background_tasks: BackgroundTasks) -> dict[str, Any]:
            background_tasks.add_task(send_email, email.to, email.subject, email.body)
            return {"queued": True, "task_id": None}

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
    manager.task(send_email)
    manager.task(send_email_async)
    TaskAdmin(app, manager)

    @app.post("/enqueue")
    async def tracked(background_tasks: BackgroundTasks) -> dict[str, str | None]:
        return {"task_id": background_tasks.add_task(noop)}

    @app.post("/email")
    async def tracked_email(email: Email, background_tasks: BackgroundTasks) -> dict[str, Any]:
        task_id = background_tasks.add_task(send_email_async, email.to, email.subject, email.body)
        return {"queued": True, "task_id": task_id}

    @app.post("/email-sync")
    async def tracked_sync(email: Email, background_tasks: BackgroundTasks) -> dict[str, Any]:
        task_id = background_tasks.add_task(send_email, email.to, email.subject, email.body)
        return {"queued": True, "task_id": task_id}

    return app


app = build()

# As the reference app does once it has started (deploy/app.py), for every variant alike:
# what was built at startup stays out of the collector's full collections.
if os.environ.get("BENCH_GC_FREEZE", "1") == "1":
    gc.collect()
    gc.freeze()
