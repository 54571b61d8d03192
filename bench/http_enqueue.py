"""Enqueue throughput over real HTTP: one uvicorn process per variant, a keep-alive load client
in this process (on a 2-core machine: one core each). What users of a deployed app see.

Each variant serves ``POST /enqueue``, which adds one no-op background task; plain FastAPI
``BackgroundTasks`` is the baseline, measured in the same run, interleaved.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.common import redis_url, report
from tests.conftest import free_port

CONNECTIONS = 32
REQUESTS = 6_000
ROUNDS = 3
REQUEST = b"POST /enqueue HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n"


async def _connection(port: int, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:40]
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
    finally:
        writer.close()


async def load(port: int, requests: int) -> float:
    """Requests per second over CONNECTIONS keep-alive connections."""
    started = time.perf_counter()
    per = requests // CONNECTIONS
    await asyncio.gather(*(_connection(port, per) for _ in range(CONNECTIONS)))
    return per * CONNECTIONS / (time.perf_counter() - started)


def serve(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.apps:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--http",
            "httptools",
            "--loop",
            "uvloop",
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/enqueue", timeout=0.5)
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"bench: server for {env} did not start")


def measure(env: dict[str, str]) -> float:
    proc, port = serve(env)
    try:
        asyncio.run(load(port, 1_000))  # warm up
        return asyncio.run(load(port, REQUESTS))
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    print(
        f"enqueue over HTTP (uvicorn, {CONNECTIONS} keep-alive connections, "
        f"{REQUESTS:,} requests x {ROUNDS} rounds)"
    )
    with tempfile.TemporaryDirectory() as tmp, redis_url() as redis:

        def sqlite() -> str:
            return f"sqlite:///{Path(tmp) / uuid.uuid4().hex}.db"

        variants = {
            "plain FastAPI BackgroundTasks": lambda: {"BENCH_VARIANT": "plain"},
            "taskflow, in memory": lambda: {"BENCH_VARIANT": "memory"},
            "taskflow, SQLite": lambda: {"BENCH_VARIANT": "db", "BENCH_BACKEND_URL": sqlite()},
            "taskflow, SQLite, live records, no durable accept": lambda: {
                "BENCH_VARIANT": "db",
                "BENCH_BACKEND_URL": sqlite(),
                "BENCH_DURABLE": "0",
            },
            "taskflow, SQLite, finished records only": lambda: {
                "BENCH_VARIANT": "db",
                "BENCH_BACKEND_URL": sqlite(),
                "BENCH_LIVE": "0",
            },
            "taskflow, Redis": lambda: {"BENCH_VARIANT": "db", "BENCH_BACKEND_URL": redis},
            "taskflow, Redis, live records, no durable accept": lambda: {
                "BENCH_VARIANT": "db",
                "BENCH_BACKEND_URL": redis,
                "BENCH_DURABLE": "0",
            },
            "taskflow, Redis, finished records only": lambda: {
                "BENCH_VARIANT": "db",
                "BENCH_BACKEND_URL": redis,
                "BENCH_LIVE": "0",
            },
        }
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(ROUNDS):
            for name, env in variants.items():
                rates[name].append(measure(env()))
    median = {name: statistics.median(values) for name, values in rates.items()}
    plain = median["plain FastAPI BackgroundTasks"]
    for name, rate in median.items():
        baseline = name.startswith("plain")
        target = "(baseline)" if baseline else ">= 85% of plain"
        report(
            name,
            f"{rate:,.0f} req/s ({rate / plain:.0%} of plain)",
            target,
            baseline or rate / plain >= 0.85,
        )
    for kind in ("SQLite", "Redis"):
        without = median[f"taskflow, {kind}, finished records only"]
        live = median[f"taskflow, {kind}, live records, no durable accept"]
        durable = median[f"taskflow, {kind}"]
        report(
            f"{kind}: live records vs finished only",
            f"{live / without:.0%}",
            ">= 90%",
            live / without >= 0.90,
        )
        report(
            f"{kind}: live + durable accept vs finished only",
            f"{durable / without:.0%}",
            "(measured)",
            True,
        )


if __name__ == "__main__":
    main()
