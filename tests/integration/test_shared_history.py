"""Several real uvicorn processes on one backend: shared history, restarts, SIGTERM in a burst."""

from __future__ import annotations

import signal
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.history import list_all, wait_for

APP = "tests.integration.apps.basic:app"


def burst(url: str, total: int, per_request: int = 50, seconds: float = 0.0) -> list[str]:
    ids: list[str] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(total // per_request):
            response = client.post("/burst", params={"count": per_request, "seconds": seconds})
            assert response.status_code == 200
            ids += response.json()["task_ids"]
    return ids


@pytest.mark.timeout(240)
def test_four_instances_each_see_all_2000_tasks(run_server, shared_backend):
    servers = [run_server(APP, env=shared_backend.env) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda s: burst(s.url, 500), servers))
    expected = {task_id for batch in batches for task_id in batch}
    assert len(expected) == 2000

    for server in servers:

        def all_finished(url: str = server.url) -> bool:
            done = {i["task_id"] for i in list_all(url, status="success")}
            return expected <= done

        wait_for(all_finished, timeout=60, what=f"all 2000 tasks finished on {server.url}")
        listed = list_all(server.url)
        assert {i["task_id"] for i in listed} >= expected
        assert len({i["instance_id"] for i in listed}) == 4

    stored = shared_backend.stored()
    assert expected <= stored.keys()
    logs = "\n".join(s.log() for s in servers)
    assert "database is locked" not in logs
    assert "Traceback" not in logs
    if shared_backend.name == "sqlite":
        db = shared_backend.env["TEST_BACKEND_URL"].removeprefix("sqlite:///")
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_history_survives_a_restart(run_server, shared_backend):
    first = run_server(APP, env=shared_backend.env)
    ids = burst(first.url, 100)
    wait_for(lambda: len(list_all(first.url, status="success")) >= 100, 30, "tasks to finish")
    first.signal(signal.SIGTERM)
    first.wait_clean_exit()

    second = run_server(APP, env=shared_backend.env)
    listed = {i["task_id"]: i for i in list_all(second.url)}
    assert set(ids) <= listed.keys()
    assert {listed[i]["status"] for i in ids} == {"success"}
    one = httpx.get(f"{second.url}/tasks/{ids[0]}").json()
    assert one["instance_id"] != "" and one["status"] == "success"


def test_sigterm_during_a_burst_loses_no_finished_record(run_server, shared_backend):
    env = {**shared_backend.env, "TEST_SHUTDOWN_TIMEOUT": "0.5", "TEST_SNAPSHOT_INTERVAL": "3600"}
    server = run_server(APP, env=env)
    quick = burst(server.url, 300, per_request=100, seconds=0.05)
    stuck = burst(server.url, 300, per_request=100, seconds=5.0)
    ids = quick + stuck
    server.signal(signal.SIGTERM)
    server.wait_clean_exit()

    stored = shared_backend.stored()
    missing = set(ids) - stored.keys()
    assert not missing, f"{len(missing)} accepted tasks never reached the backend"
    assert {stored[i].status.value for i in quick} == {"success"}
    assert {stored[i].status.value for i in stuck} == {"interrupted"}
    summary = [line for line in server.log().splitlines() if "taskflow shutdown" in line]
    assert len(summary) == 1 and ", 0 unflushed" in summary[0]
