"""The cluster view and crash safety with real processes and real signals, on both backends."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from tests.integration.history import completions, list_all, wait_for

APP = "tests.integration.apps.basic:app"
#: Fast membership for tests: heartbeat every 0.5 s, an instance is lost after 2 s of silence.
EXPIRY = 2.0
FAST = {"TEST_HEARTBEAT": "0.5", "TEST_EXPIRY": str(EXPIRY)}


def test_a_task_running_on_one_instance_shows_on_the_others_within_a_second(
    run_server, shared_backend
):
    a, b, c = (run_server(APP, env={**shared_backend.env, **FAST}) for _ in range(3))
    task_id = httpx.post(f"{a.url}/sleep", params={"seconds": 5, "sync": False}).json()["task_id"]
    started = time.monotonic()

    def running_on_b() -> bool:
        response = httpx.get(f"{b.url}/tasks/{task_id}")
        return response.status_code == 200 and response.json()["status"] == "running"

    took = wait_for(running_on_b, 5, "the task to show as running on another instance")
    assert took < 1.0, f"took {took:.2f}s"
    listed = {i["task_id"]: i for i in list_all(c.url, status="running")}
    assert listed[task_id]["instance_id"] != httpx.get(f"{c.url}/readyz").json()["instance_id"]
    assert time.monotonic() - started < 5  # still running: it was live data, not history


def burst_with_a_kill(servers, victim, requeue: bool) -> tuple[dict[str, str], dict[str, str], str]:
    """10 rounds of 20 tasks of 200 ms per instance; ``victim`` gets SIGKILL before round 5.

    Returns accepted task id -> token, task id -> accepting instance, and the victim's id.
    """
    accepted: dict[str, str] = {}
    owner: dict[str, str] = {}
    instance_of: dict[int, str] = {}
    with httpx.Client(timeout=10) as client:
        for round_ in range(10):
            if round_ == 5:
                victim.signal(signal.SIGKILL)  # mid-burst: tasks pending and running
            for server in servers:
                if server is victim and round_ >= 5:
                    continue
                if requeue:
                    params = {"token": f"r{round_}-{server.port}", "count": 20, "seconds": 0.2}
                    body = client.post(f"{server.url}/tracked", params=params).json()
                else:
                    params = {"count": 20, "seconds": 0.2}
                    body = client.post(f"{server.url}/burst", params=params).json()
                instance_of[server.port] = body["instance_id"]
                tokens = body.get("tokens", [""] * len(body["task_ids"]))
                for task_id, token in zip(body["task_ids"], tokens, strict=True):
                    accepted[task_id] = token
                    owner[task_id] = body["instance_id"]
            time.sleep(0.05)
    return accepted, owner, instance_of[victim.port]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("requeue", [False, True], ids=["interrupt", "requeue"])
def test_sigkill_drill_loses_no_accepted_task(run_server, shared_backend, tmp_path, requeue):
    log = tmp_path / "completions.log"
    env = {**shared_backend.env, **FAST, "TEST_COMPLETIONS": str(log)}
    servers = [run_server(APP, env=env) for _ in range(3)]
    victim, survivors = servers[0], servers[1:]
    accepted, owner, killed = burst_with_a_kill(servers, victim, requeue)
    assert victim.wait(5) == -signal.SIGKILL

    def all_settled() -> bool:
        listed = {i["task_id"]: i["status"] for i in list_all(survivors[0].url)}
        return all(listed.get(i) in ("success", "failed", "interrupted") for i in accepted)

    wait_for(all_settled, EXPIRY + 5 + 10, "every accepted task to settle on the survivors")
    statuses = {i["task_id"]: i["status"] for i in list_all(survivors[1].url)}
    missing = [i for i in accepted if i not in statuses]
    assert not missing, f"{len(missing)} accepted tasks vanished"
    victims_tasks = [i for i in accepted if owner[i] == killed]
    assert len(victims_tasks) == 100
    if not requeue:
        assert "interrupted" in {statuses[i] for i in victims_tasks}
        return
    assert {statuses[i] for i in accepted} == {"success"}
    done = completions(log)
    for token in accepted.values():
        on_survivors = [i for i in done[token] if i != killed]
        assert done[token], f"{token} never completed"
        assert len(on_survivors) <= 1, f"{token} completed twice on survivors: {done[token]}"
        if killed not in done[token]:
            assert len(on_survivors) == 1


@pytest.mark.timeout(120)
def test_pending_work_of_two_instances_stopped_together_runs_once_after_restart(
    run_server, shared_backend, tmp_path
):
    log = tmp_path / "completions.log"
    env = {
        **shared_backend.env,
        **FAST,
        "TEST_COMPLETIONS": str(log),
        "TEST_REQUEUE_PENDING": "1",
        "TEST_MAX_CONCURRENCY": "2",
        "TEST_SHUTDOWN_TIMEOUT": "0.3",
    }
    first = [run_server(APP, env=env) for _ in range(2)]
    tokens: list[str] = []
    for n, server in enumerate(first):
        body = httpx.post(
            f"{server.url}/tracked", params={"token": f"s{n}", "count": 10, "seconds": 1.0}
        ).json()
        tokens += body["tokens"]
    time.sleep(0.3)
    for server in first:
        server.signal(signal.SIGTERM)  # both at the same moment
    for server in first:
        server.wait_clean_exit()
    assert not completions(log), "nothing should have finished before the restart"

    second = [run_server(APP, env=env) for _ in range(2)]

    def parked_done() -> bool:
        return len(completions(log)) >= 16

    wait_for(parked_done, 30, "the parked tasks to run after the restart")
    time.sleep(1.5)  # room for a duplicate run to show up
    done = completions(log)
    assert len(done) == 16, f"{len(done)} of 20 ran; 4 were running and interrupted"
    assert all(len(runs) == 1 for runs in done.values()), "a parked task ran twice"
    statuses = [i["status"] for i in list_all(second[0].url)]
    assert statuses.count("success") == 16 and statuses.count("interrupted") == 4


def test_one_idempotency_key_on_three_instances_yields_one_task(
    run_server, shared_backend, tmp_path
):
    log = tmp_path / "completions.log"
    env = {**shared_backend.env, **FAST, "TEST_COMPLETIONS": str(log)}
    servers = [run_server(APP, env=env) for _ in range(3)]
    barrier = threading.Barrier(len(servers))
    ids: list[str] = []

    def send(url: str) -> None:
        with httpx.Client() as client:
            barrier.wait()
            response = client.post(f"{url}/idempotent", params={"key": "order-42", "token": "o42"})
            ids.append(response.json()["task_id"])

    threads = [threading.Thread(target=send, args=(s.url,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    wait_for(lambda: "o42" in completions(log), 10, "the task to run")
    time.sleep(1.0)
    assert len(completions(log)["o42"]) == 1
    record = httpx.get(f"{servers[2].url}/tasks/{ids[0]}").json()
    assert record["status"] == "success" and record["idempotency_key"] == "order-42"
