"""A real uvicorn process with an open dashboard stream still shuts down promptly on SIGTERM.

uvicorn waits for open connections to close before it runs the lifespan shutdown, so a stream that
only ended with the manager would hold the process up forever.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

APP = "tests.integration.apps.basic:app"

pytestmark = pytest.mark.integration


def test_sigterm_ends_open_streams_and_the_process_exits(run_server):
    server = run_server(APP, env={"TEST_SHUTDOWN_TIMEOUT": "0.5"})
    lines: list[str] = []
    opened = threading.Event()

    def listen() -> None:
        with (
            httpx.Client(base_url=server.url, timeout=httpx.Timeout(5.0, read=30.0)) as client,
            client.stream("GET", "/tasks/stream") as response,
        ):
            assert response.headers["x-accel-buffering"] == "no"
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith("event: hello"):
                    opened.set()

    readers = [threading.Thread(target=listen, daemon=True) for _ in range(3)]
    for reader in readers:
        reader.start()
    assert opened.wait(10), "the stream did not open"
    time.sleep(0.3)

    began = time.monotonic()
    server.signal(signal.SIGTERM)
    server.wait_clean_exit(15)
    took = time.monotonic() - began
    for reader in readers:
        reader.join(5)
        assert not reader.is_alive(), "a stream stayed open after the server stopped"
    assert "event: bye" in lines
    assert took < 5, f"shutdown took {took:.1f}s with streams open:\n{server.log()}"
    assert "taskflow shutdown" in server.log()  # the lifespan shutdown ran after the streams
