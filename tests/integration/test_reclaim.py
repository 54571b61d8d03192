"""Reclaim in seconds, with the library's default heartbeat and expiry, on both backends.

* A SIGKILLed instance's running task is claimed by a survivor (and marked interrupted) within
  about 5 s: real uvicorn processes of the reference app, real SIGKILL.
* An instance restarted under the same id (a container or pod restarted in place) takes back
  what its previous process left running at once, and says so truthfully.
* What a heartbeat round costs on each backend: the figures docs/multi-instance.md gives for
  choosing the defaults (``-rP`` prints them).
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from taskflow.backends import backend_from_url
from taskflow.backends.base import ClusterBackend, InstanceInfo
from taskflow.cluster import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_INSTANCE_EXPIRY, ClusterMonitor
from taskflow.models import TaskRecord, TaskStatus, utcnow
from tests.integration.conftest import drop_postgres_schema
from tests.integration.history import wait_for

APP = "deploy.app:app"
#: The promise: a killed instance's running tasks are claimed within about this many seconds.
RECLAIM_BOUND = 5.0
#: What a loaded 2-core machine adds to it (a survivor's round may start late).
SLACK = 1.5


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store of this test's own: a SQLite file, a private redis-server (deploy.app writes
    under the default key prefix, so never the shared test Redis), a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tasks.db'}"
    elif request.param == "redis":
        yield f"{request.getfixturevalue('private_redis').url}/0"
    else:
        server = request.getfixturevalue("postgres_url")
        schema = f"tfreclaim_{uuid.uuid4().hex[:8]}"
        yield f"{server}?schema={schema}"
        drop_postgres_schema(server, schema)


def app_env(backend_url: str, instance_id: str) -> dict[str, str]:
    # Only the contract's variables: heartbeat and expiry are the library's defaults.
    return {"TASKFLOW_BACKEND_URL": backend_url, "TASKFLOW_INSTANCE_ID": instance_id}


def status_on(url: str, task_id: str) -> dict[str, str]:
    response = httpx.get(f"{url}/tasks/{task_id}", timeout=5)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def test_the_defaults_promise_reclaim_within_the_bound():
    assert DEFAULT_INSTANCE_EXPIRY + DEFAULT_HEARTBEAT_INTERVAL <= RECLAIM_BOUND
    # Several heartbeats must go missing before an instance is taken for gone.
    assert DEFAULT_INSTANCE_EXPIRY >= 3 * DEFAULT_HEARTBEAT_INTERVAL


@pytest.mark.timeout(120)
def test_a_killed_instance_is_reclaimed_within_seconds(run_server, backend_url):
    survivor = run_server(APP, env=app_env(backend_url, "survivor"))
    victim = run_server(APP, env=app_env(backend_url, "victim"))
    # A survivor expires others only once its own heartbeats have gone through for
    # instance_expiry: a long-running one has.
    time.sleep(DEFAULT_INSTANCE_EXPIRY + DEFAULT_HEARTBEAT_INTERVAL)
    task_id = httpx.post(f"{victim.url}/demo/slow", params={"seconds": 60}).json()["task_id"]
    wait_for(lambda: status_on(survivor.url, task_id)["status"] == "running", 5, "running")
    victim.signal(signal.SIGKILL)
    killed = time.monotonic()
    assert victim.wait(5) == -signal.SIGKILL

    wait_for(
        lambda: status_on(survivor.url, task_id)["status"] == "interrupted",
        30,
        "the survivor to claim the killed instance's task",
    )
    took = time.monotonic() - killed
    print(f"reclaimed {took:.2f}s after SIGKILL ({backend_url.split(':')[0]})")
    record = status_on(survivor.url, task_id)
    assert record["error"] == "interrupted: instance victim was lost (no heartbeat)"
    assert took <= RECLAIM_BOUND + SLACK, f"reclaimed after {took:.1f}s"
    log = survivor.log()
    assert "sent no heartbeat" in log and "took over 1 tasks from victim" in log


@pytest.mark.timeout(120)
def test_an_instance_restarted_under_its_id_takes_back_its_tasks_and_says_so(
    run_server, backend_url
):
    first = run_server(APP, env=app_env(backend_url, "web-1"))
    task_id = httpx.post(f"{first.url}/demo/slow", params={"seconds": 60}).json()["task_id"]
    wait_for(lambda: status_on(first.url, task_id)["status"] == "running", 5, "running")
    first.signal(signal.SIGKILL)
    assert first.wait(5) == -signal.SIGKILL

    # The same container or pod, restarted: the same instance id, at once.
    again = run_server(APP, env=app_env(backend_url, "web-1"))
    took = wait_for(
        lambda: status_on(again.url, task_id)["status"] == "interrupted", 5, "the take-back"
    )
    record = status_on(again.url, task_id)
    assert record["error"] == (
        "interrupted: instance web-1 restarted: its previous process stopped while it ran"
    )
    assert "was lost" not in again.log()
    assert "instance web-1 took back 1 tasks that its previous process left unfinished" in (
        again.log()
    )
    assert took < 2.0, "taken back at registration, not after an expiry"


# -- what a heartbeat round costs --------------------------------------------------------------

#: The cluster a round sees: instances registered, and live records spread over them.
INSTANCES, LIVE_RECORDS, ROUNDS = 30, 600, 60


async def measure_rounds(backend: ClusterBackend) -> list[float]:
    """Wall seconds of each of ROUNDS rounds of one instance."""
    await backend.open()
    try:
        now = utcnow()
        for i in range(INSTANCES):
            await backend.heartbeat(InstanceInfo(f"peer-{i}", "host", i, now, now))
        records = [
            TaskRecord(
                uuid.uuid4().hex,
                "work",
                status=TaskStatus.RUNNING,
                start_time=now,
                instance_id=f"peer-{i % INSTANCES}",
            )
            for i in range(LIVE_RECORDS)
        ]
        await backend.save(records)
        monitor = ClusterMonitor(backend, lambda: "measured", lambda records, owner: None)
        # Heartbeat for instance_expiry first, as a long-running instance has: from then on
        # every round also expires (nobody, as in a healthy cluster).
        deadline = time.monotonic() + DEFAULT_INSTANCE_EXPIRY + DEFAULT_HEARTBEAT_INTERVAL
        while time.monotonic() < deadline:
            await keep_peers_alive(backend, now)
            await monitor.tick()
            await asyncio.sleep(DEFAULT_HEARTBEAT_INTERVAL / 2)
        walls = []
        for _ in range(ROUNDS):
            await keep_peers_alive(backend, now)
            started = time.perf_counter()
            assert await monitor.tick() == 0
            walls.append(time.perf_counter() - started)
        return walls
    finally:
        await backend.close()


async def keep_peers_alive(backend: ClusterBackend, started: datetime) -> None:
    await asyncio.gather(
        *(
            backend.heartbeat(InstanceInfo(f"peer-{i}", "host", i, started, utcnow()))
            for i in range(INSTANCES)
        )
    )


@pytest.mark.timeout(120)
def test_what_a_heartbeat_round_costs(backend_url):
    """One instance's round (heartbeat, expire, list instances and live owners) against a
    cluster of INSTANCES peers with LIVE_RECORDS running tasks. Printed, and bounded loosely
    so that a round that became expensive (a scan of the history, say) fails."""
    backend = backend_from_url(backend_url)
    walls = asyncio.run(measure_rounds(backend))
    median = statistics.median(walls)
    p95 = statistics.quantiles(walls, n=20)[18]
    share = median / DEFAULT_HEARTBEAT_INTERVAL
    print(
        f"{backend_url.split(':')[0]}: a round takes {median * 1000:.2f} ms median, "
        f"{p95 * 1000:.2f} ms p95 ({INSTANCES} instances, {LIVE_RECORDS} live records): "
        f"{share:.2%} of a {DEFAULT_HEARTBEAT_INTERVAL:g} s interval per instance"
    )
    assert median < 0.02, f"a heartbeat round takes {median * 1000:.1f} ms"
