"""A real uvicorn process with an open dashboard stream still shuts down promptly.

uvicorn waits for open connections to close before it runs the lifespan shutdown, so a stream that
only ended with the manager would hold the process up forever: on SIGTERM, and when the worker
leaves by itself after its request limit (gunicorn's ``max_requests`` reaches uvicorn as
``limit_max_requests``, the same code path as ``--limit-max-requests`` here).
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

APP = "tests.integration.apps.basic:app"

pytestmark = pytest.mark.integration


def open_streams(url: str, count: int) -> tuple[list[threading.Thread], list[str]]:
    """``count`` clients reading /tasks/stream in threads; returns once every one has opened."""
    lines: list[str] = []
    opened = threading.Semaphore(0)

    def listen() -> None:
        with (
            httpx.Client(base_url=url, timeout=httpx.Timeout(5.0, read=30.0)) as client,
            client.stream("GET", "/tasks/stream") as response,
        ):
            assert response.headers["x-accel-buffering"] == "no"
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith("event: hello"):
                    opened.release()

    readers = [threading.Thread(target=listen, daemon=True) for _ in range(count)]
    for reader in readers:
        reader.start()
    for _ in readers:
        assert opened.acquire(timeout=10), "a stream did not open"
    time.sleep(0.3)
    return readers, lines


def assert_streams_ended(readers: list[threading.Thread], lines: list[str]) -> None:
    for reader in readers:
        reader.join(5)
        assert not reader.is_alive(), "a stream stayed open after the server stopped"
    assert lines.count("event: bye") == len(readers), lines


def test_sigterm_ends_open_streams_and_the_process_exits(run_server):
    server = run_server(APP, env={"TEST_SHUTDOWN_TIMEOUT": "0.5"})
    readers, lines = open_streams(server.url, 3)

    began = time.monotonic()
    server.signal(signal.SIGTERM)
    server.wait_clean_exit(15)
    took = time.monotonic() - began
    assert_streams_ended(readers, lines)
    assert took < 5, f"shutdown took {took:.1f}s with streams open:\n{server.log()}"
    assert "taskflow shutdown" in server.log()  # the lifespan shutdown ran after the streams


def test_a_worker_at_its_request_limit_ends_open_streams_and_exits(run_server):
    limit = 40  # start-up health checks and the streams count too
    server = run_server(
        APP, env={"TEST_SHUTDOWN_TIMEOUT": "0.5"}, extra_args=["--limit-max-requests", str(limit)]
    )
    readers, lines = open_streams(server.url, 2)

    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        for _ in range(limit):  # more than enough to pass the limit
            if server.proc is not None and server.proc.poll() is not None:
                break
            try:
                client.get("/healthz")
            except httpx.HTTPError:
                break  # the server stopped accepting
    began = time.monotonic()
    code = server.wait(15)
    took = time.monotonic() - began
    assert code == 0, f"exit code {code}:\n{server.log()}"
    assert "Maximum request limit" in server.log()
    assert_streams_ended(readers, lines)
    assert took < 5, f"leaving took {took:.1f}s with streams open:\n{server.log()}"
    assert "taskflow shutdown" in server.log()  # the lifespan shutdown ran after the streams
