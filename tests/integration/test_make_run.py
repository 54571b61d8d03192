"""`make run`, the README's main command: gunicorn workers sharing one WAL SQLite file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SEEDED = {"fast_task": "success", "slow_task": "success", "flaky_task": "success"}
SEEDED["failing_task"] = "failed"

pytestmark = pytest.mark.integration


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies still count for killpg; a group of zombies only is gone for our purposes.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


@pytest.mark.timeout(120)
def test_make_run_serves_workers_that_share_one_sqlite_file(tmp_path):
    port, db, log = free_port(), tmp_path / "tasks.db", tmp_path / "make-run.log"
    env = {k: v for k, v in os.environ.items() if k != "WEB_CONCURRENCY"}  # the default: 2
    env["TASKFLOW_BACKEND_URL"] = f"sqlite:///{db}"
    with log.open("wb") as out:
        make = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        seen: list[dict[str, str]] = []
        while True:
            assert make.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"seeded tasks: {seen}\n{log.read_text()}"
            try:
                # A new connection each time, so that either worker may answer.
                items = httpx.get(f"{url}/tasks", params={"limit": 100}).json()["items"]
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            seen = [i for i in items if i["func_name"] in SEEDED]
            finished = all(i["status"] == SEEDED[i["func_name"]] for i in seen)
            # Every worker seeds, with idempotency keys: four tasks for the whole stack.
            if len(seen) == 4 and finished:
                break
            time.sleep(0.2)
        # Tasks of both workers (new connections spread requests), listed by either worker
        # from the shared file.
        fast = {}
        while len(set(fast.values())) < 2:
            assert time.monotonic() < deadline, f"one worker answered every request: {fast}"
            body = httpx.post(f"{url}/demo/fast").json()
            fast[body["task_ids"][0]] = body["instance_id"]
        for _ in range(6):
            items = httpx.get(f"{url}/tasks", params={"limit": 100}).json()["items"]
            seeded = [i for i in items if i["func_name"] in SEEDED and i["task_id"] not in fast]
            assert len(seeded) == 4
            assert set(fast) <= {i["task_id"] for i in items}
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(30)
        deadline = time.monotonic() + 40
        while group_alive(make.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if group_alive(make.pid):
            os.killpg(make.pid, signal.SIGKILL)
            pytest.fail("make run did not stop on SIGTERM")
    output = log.read_text()
    assert f"dashboard: http://127.0.0.1:{port}/tasks/dashboard" in output
    assert f"API:       http://127.0.0.1:{port}/tasks" in output
    assert output.count("Booting worker") == 2
    assert output.count("taskflow shutdown:") == 2, "each worker drained and flushed"
