"""Enqueue throughput over real HTTP: one uvicorn process per variant, a keep-alive load client
in this process (on a 2-core machine: one core each). What users of a deployed app see.

Each variant serves three endpoints (bench/apps.py): ``POST /enqueue`` adds one no-op async
task and does nothing else, the worst case for any overhead; ``POST /email`` and
``/email-sync`` validate a JSON body and queue an async or a sync function, what a typical
endpoint does. Plain FastAPI ``BackgroundTasks`` is the baseline, measured in the same run.

Every variant's server is started once and the measurements interleave: each round sends one
burst to every variant and endpoint in turn, so a host that speeds up or slows down during the
run (this one does, by 10-20%) affects every variant alike; the figures are medians over the
rounds. Besides requests per second it prints the server's CPU time per request (from /proc).
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

from bench.common import postgres_url, redis_url, report
from tests.conftest import free_port

CONNECTIONS = 32
REQUESTS = 3_200
ROUNDS = 7
_EMAIL = b'{"to": "ada@example.com", "subject": "Your report", "body": "It is ready."}'
_JSON = f"Content-Type: application/json\r\nContent-Length: {len(_EMAIL)}\r\n\r\n".encode()
#: The request each endpoint gets, over and over.
REQUESTS_BY_ENDPOINT = {
    "no-op async task, nothing else": (
        b"POST /enqueue HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n"
    ),
    "typical endpoint, async task": b"POST /email HTTP/1.1\r\nHost: bench\r\n" + _JSON + _EMAIL,
    "typical endpoint, sync task": b"POST /email-sync HTTP/1.1\r\nHost: bench\r\n" + _JSON + _EMAIL,
}


async def _connection(port: int, count: int, request: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:40]
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
    finally:
        writer.close()


async def load(port: int, requests: int, request: bytes) -> float:
    """Requests per second over CONNECTIONS keep-alive connections."""
    started = time.perf_counter()
    per = requests // CONNECTIONS
    await asyncio.gather(*(_connection(port, per, request) for _ in range(CONNECTIONS)))
    return per * CONNECTIONS / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def measure(proc: subprocess.Popen[bytes], port: int, request: bytes) -> tuple[float, float]:
    """Requests per second, and the server's CPU microseconds per request, of one burst."""
    before = cpu_seconds(proc.pid)
    rate = asyncio.run(load(port, REQUESTS, request))
    return rate, (cpu_seconds(proc.pid) - before) / REQUESTS * 1e6


Results = dict[tuple[str, str], list[tuple[float, float]]]


def interleaved(servers: dict[str, tuple[subprocess.Popen[bytes], int]]) -> Results:
    """ROUNDS rounds, each one burst per endpoint and variant: (endpoint, variant) -> figures."""
    for _, port in servers.values():
        for request in REQUESTS_BY_ENDPOINT.values():
            asyncio.run(load(port, 1_000, request))  # warm up
    results: Results = {}
    for _ in range(ROUNDS):
        for endpoint, request in REQUESTS_BY_ENDPOINT.items():
            for name, (proc, port) in servers.items():
                results.setdefault((endpoint, name), []).append(measure(proc, port, request))
    return results


def main() -> None:
    print(
        f"enqueue over HTTP (uvicorn, {CONNECTIONS} keep-alive connections, "
        f"{REQUESTS:,} requests x {ROUNDS} rounds)"
    )
    with tempfile.TemporaryDirectory() as tmp, redis_url() as redis, postgres_url() as postgres:

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
            "taskflow, PostgreSQL": lambda: {
                "BENCH_VARIANT": "db",
                "BENCH_BACKEND_URL": f"{postgres}?schema=bench_{uuid.uuid4().hex[:8]}",
            },
        }
        servers = {name: serve(env()) for name, env in variants.items()}
        try:
            results = interleaved(servers)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
            for proc, _ in servers.values():
                proc.wait(30)
    for endpoint in REQUESTS_BY_ENDPOINT:
        print(f" {endpoint}:")
        rate = {n: statistics.median(r for r, _ in results[(endpoint, n)]) for n in variants}
        cpu = {n: statistics.median(c for _, c in results[(endpoint, n)]) for n in variants}
        plain = rate["plain FastAPI BackgroundTasks"]
        for name in variants:
            baseline = name.startswith("plain")
            report(
                name,
                f"{rate[name]:,.0f} req/s ({rate[name] / plain:.0%} of plain), "
                f"{cpu[name]:.0f} us CPU/request",
                "(baseline)" if baseline else ">= 85% of plain",
                baseline or rate[name] / plain >= 0.85,
            )
        for kind in ("SQLite", "Redis"):
            without = rate[f"taskflow, {kind}, finished records only"]
            live = rate[f"taskflow, {kind}, live records, no durable accept"]
            report(
                f"{kind}: live records vs finished only",
                f"{live / without:.0%}",
                ">= 90%",
                live / without >= 0.90,
            )


if __name__ == "__main__":
    main()
