"""Redis goes away for 10 s during a burst: the app keeps serving, /readyz says not ready, and
every record finished meanwhile is written once Redis is back."""

from __future__ import annotations

import time

import httpx
import pytest

from taskflow.backends import RedisBackend
from tests.integration.history import BackendUnderTest, wait_for

APP = "tests.integration.apps.basic:app"


@pytest.mark.timeout(120)
def test_redis_outage_buffers_records_and_writes_them_when_it_returns(run_server, private_redis):
    url = f"{private_redis.url}/0"
    backend = BackendUnderTest("redis", {}, lambda: RedisBackend(url, prefix="outage"))
    app = run_server(
        APP,
        env={
            "TEST_BACKEND_URL": url,
            "TEST_REDIS_PREFIX": "outage",
            "TEST_SNAPSHOT_INTERVAL": "30",
        },
    )
    client = httpx.Client(base_url=app.url, timeout=10)

    def enqueue(count: int) -> list[str]:
        response = client.post("/burst", params={"count": count, "seconds": 0.01})
        assert response.status_code == 200
        return list(response.json()["task_ids"])

    before = enqueue(50)

    def all_succeeded(ids: list[str]) -> bool:
        stored = backend.stored()
        return all(i in stored and stored[i].status.value == "success" for i in ids)

    wait_for(lambda: all_succeeded(before), 10, "finished records before the outage")

    private_redis.stop()
    outage_started = time.monotonic()
    during: list[str] = []
    readiness: list[int] = []
    while time.monotonic() - outage_started < 10:
        during += enqueue(20)
        readiness.append(client.get("/readyz").status_code)
        assert client.get("/tasks", params={"limit": 5}).status_code == 200
        time.sleep(0.25)
    assert 503 in readiness, "readyz never reported the outage"
    assert readiness[-1] == 503
    unflushed = client.get("/tasks/metrics").json()["persistence"]["unflushed"]
    assert unflushed == len(during), "finished records should wait in memory"

    private_redis.resume()
    wait_for(lambda: client.get("/readyz").status_code == 200, 15, "readyz after Redis is back")
    wait_for(lambda: all_succeeded(before + during), 15, "buffered records")
    metrics = client.get("/tasks/metrics").json()["persistence"]
    assert metrics["unflushed"] == 0 and metrics["flush_failures"] > 0
    assert metrics["dropped_unflushed"] == 0
    client.close()
