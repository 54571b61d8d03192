"""Enqueue throughput: an endpoint that adds one background task, taskflow against plain FastAPI.

Requests go straight into the ASGI app (no sockets), so the figures show framework overhead
only, the strictest comparison. Each request's task runs to completion within the measured
time, and with a backend every record is flushed before the clock stops. ``taskflow, SQLite``
and ``taskflow, Redis`` are the defaults (live records, durable acceptance: each wave of
concurrent requests waits for its write).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastapi.dependencies.models as fastapi_models
from fastapi import BackgroundTasks, FastAPI

from bench.common import redis_url, report
from taskflow import TaskAdmin, TaskManager

REQUESTS = 5_000
CONCURRENCY = 50
ROUNDS = 3
TARGET_RATIO = 0.85
LIVE_TARGET_RATIO = 0.90


async def noop_async() -> None:
    return None


def noop_sync() -> None:
    return None


def plain_app(func: Callable[[], Any]) -> tuple[FastAPI, None]:
    app = FastAPI()

    @app.post("/enqueue")
    async def enqueue(background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(func)
        return {"ok": "yes"}

    return app, None


def taskflow_app(
    func: Callable[[], Any], backend: Any, *, live: bool = True, durable: bool = True
) -> tuple[FastAPI, TaskManager]:
    manager = TaskManager(
        snapshot_backend=backend,
        snapshot_interval=30.0,
        persist_live=live,
        durable_accept=durable,
    )
    manager.task(name=func.__name__)(func)
    app = FastAPI()
    TaskAdmin(app, manager)

    @app.post("/enqueue")
    async def enqueue(background_tasks: BackgroundTasks) -> dict[str, str | None]:
        return {"task_id": background_tasks.add_task(func)}

    return app, manager


async def call(app: FastAPI) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/enqueue",
        "raw_path": b"/enqueue",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    assert status == 200, status


async def throughput(app: FastAPI, manager: TaskManager | None) -> float:
    """Requests per second, including running every task (and flushing every record)."""
    async with app.router.lifespan_context(app):
        await asyncio.gather(*(call(app) for _ in range(CONCURRENCY)))  # warm up
        started = time.perf_counter()
        for _ in range(REQUESTS // CONCURRENCY):
            await asyncio.gather(*(call(app) for _ in range(CONCURRENCY)))
        if manager is not None:
            while manager.live_tasks() or manager.persistence_stats()["unflushed"]:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        return REQUESTS / (time.perf_counter() - started)


def forget_apps() -> None:
    """Let the apps measured so far (and their managers and records) be collected.

    FastAPI keeps its callable-classification caches (``fastapi.dependencies.models``, bounded
    LRU caches) keyed by endpoint functions, whose closures hold the app's manager: without
    this, every later variant would run with all earlier variants' records on the heap, and pay
    for them in garbage collection.
    """
    for value in vars(fastapi_models).values():
        cache_clear = getattr(value, "cache_clear", None)
        if callable(cache_clear):
            cache_clear()
    gc.collect()


async def main() -> None:
    print(f"enqueue throughput, {REQUESTS:,} requests x {ROUNDS} rounds, {CONCURRENCY} at a time")
    with tempfile.TemporaryDirectory() as tmp, redis_url() as redis:
        for func in (noop_async, noop_sync):
            variants: dict[str, Callable[[], tuple[FastAPI, TaskManager | None]]] = {
                "plain FastAPI BackgroundTasks": lambda f=func: plain_app(f),
                "taskflow, in memory": lambda f=func: taskflow_app(f, None),
                "taskflow, SQLite": lambda f=func: taskflow_app(f, _sqlite_url(tmp)),
                "taskflow, SQLite, live records, no durable accept": lambda f=func: taskflow_app(
                    f, _sqlite_url(tmp), durable=False
                ),
                "taskflow, SQLite, finished records only": lambda f=func: taskflow_app(
                    f, _sqlite_url(tmp), live=False
                ),
                "taskflow, Redis": lambda f=func: taskflow_app(f, _redis_backend(redis)),
                "taskflow, Redis, live records, no durable accept": lambda f=func: taskflow_app(
                    f, _redis_backend(redis), durable=False
                ),
                "taskflow, Redis, finished records only": lambda f=func: taskflow_app(
                    f, _redis_backend(redis), live=False
                ),
            }
            rates: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(ROUNDS):  # interleaved, so drift on a busy machine hits all alike
                for name, make in variants.items():
                    rates[name].append(await throughput(*make()))
                    forget_apps()
            print(f" {func.__name__} task:")
            report_rates({name: statistics.median(values) for name, values in rates.items()})


def report_rates(median: dict[str, float]) -> None:
    plain = median["plain FastAPI BackgroundTasks"]
    for name, rate in median.items():
        ratio = rate / plain
        target = "(baseline)" if name.startswith("plain") else ">= 85% of plain"
        ok = name.startswith("plain") or ratio >= TARGET_RATIO
        report(name, f"{rate:,.0f} req/s ({ratio:.0%} of plain)", target, ok)
    for kind in ("SQLite", "Redis"):
        ratio = (
            median[f"taskflow, {kind}, live records, no durable accept"]
            / median[f"taskflow, {kind}, finished records only"]
        )
        report(
            f"{kind}: live records vs finished only",
            f"{ratio:.0%}",
            ">= 90%",
            ratio >= LIVE_TARGET_RATIO,
        )


def _sqlite_url(folder: str) -> str:
    return f"sqlite:///{Path(folder) / uuid.uuid4().hex}.db"


def _redis_backend(url: str) -> Any:
    from taskflow.backends import RedisBackend

    return RedisBackend(url, prefix=f"bench-{uuid.uuid4().hex[:6]}")


if __name__ == "__main__":
    asyncio.run(main())
