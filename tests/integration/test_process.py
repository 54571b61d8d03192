"""A real uvicorn process: the event loop stays free, and SIGTERM drains then interrupts."""

from __future__ import annotations

import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

APP = "tests.integration.apps.basic:app"


def test_sleeping_sync_tasks_do_not_stop_requests_being_served(run_server):
    server = run_server(APP, env={"TEST_SHUTDOWN_TIMEOUT": "0.5"})
    # Enough sleeping sync tasks to exhaust a shared thread pool (FastAPI's has 40 threads).
    with httpx.Client(base_url=server.url) as client:
        ids = [client.post("/sleep", params={"seconds": 3}).json()["task_id"] for _ in range(50)]
        time.sleep(0.3)

        def timed_ping(i: int) -> float:
            started = time.monotonic()
            assert client.get("/ping" if i % 2 else "/aping").status_code == 200
            return time.monotonic() - started

        with ThreadPoolExecutor(8) as pool:
            latencies = list(pool.map(timed_ping, range(40)))
        running = client.get("/tasks", params={"status": "running", "limit": 100}).json()
    assert len(ids) == 50
    assert len(running["items"]) >= 30, "the sleeping tasks should be running meanwhile"
    assert max(latencies) < 1.0, f"requests waited behind sleeping tasks: {max(latencies):.2f}s"


@pytest.mark.parametrize("sync", [True, False])
def test_sigterm_drains_then_marks_running_tasks_interrupted(run_server, tmp_path, sync):
    db = tmp_path / "tasks.db"
    server = run_server(APP, env={"TEST_DB": str(db), "TEST_SHUTDOWN_TIMEOUT": "2"})
    with httpx.Client(base_url=server.url) as client:
        quick = client.post("/sleep", params={"seconds": 1.0, "sync": sync}).json()["task_id"]
        stuck = client.post("/sleep", params={"seconds": 60, "sync": sync}).json()["task_id"]
    time.sleep(0.1)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    server.wait_clean_exit(15)
    elapsed = time.monotonic() - started
    assert elapsed < 6, f"shutdown took {elapsed:.1f}s despite a 2s drain"

    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT task_id, status FROM tasks").fetchall())
    assert rows == {quick: "success", stuck: "interrupted"}
    summary = [line for line in server.log().splitlines() if "taskflow shutdown" in line]
    assert len(summary) == 1, server.log()
    assert "1 tasks finished during drain, 1 interrupted, 0 requeued, 0 unflushed" in summary[0]


def test_a_second_sigterm_cuts_the_drain_short(run_server, tmp_path):
    db = tmp_path / "tasks.db"
    server = run_server(APP, env={"TEST_DB": str(db), "TEST_SHUTDOWN_TIMEOUT": "30"})
    stuck = httpx.post(f"{server.url}/sleep", params={"seconds": 60, "sync": False}).json()
    time.sleep(0.2)
    server.signal(signal.SIGTERM)
    time.sleep(1.0)
    assert server.proc is not None and server.proc.poll() is None, "the drain should still wait"
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    server.wait_clean_exit(15)
    assert time.monotonic() - started < 5, "the second signal should end the drain at once"
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT task_id, status FROM tasks").fetchall())
    assert rows == {stuck["task_id"]: "interrupted"}
    summary = [line for line in server.log().splitlines() if "taskflow shutdown" in line]
    assert len(summary) == 1 and "(forced by a second signal)" in summary[0], server.log()
