"""A task's log lines, progress and tags across real processes on every shared backend: a
task runs on instance A; instance B shows its progress and log lines while it runs, and lists
it by tag."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.history import wait_for

APP = "tests.integration.apps.basic:app"


@pytest.mark.timeout(120)
def test_progress_logs_and_tags_of_a_task_on_a_show_on_b(run_server, shared_backend) -> None:
    a, b = (run_server(APP, env=shared_backend.env) for _ in range(2))
    task_id = httpx.post(f"{a.url}/reporting", params={"tenant": "acme"}).json()["task_id"]
    other = httpx.post(f"{a.url}/reporting", params={"tenant": "bolt", "steps": 1}).json()[
        "task_id"
    ]
    seen: list[float] = []

    def progressing_on_b() -> bool:
        body = httpx.get(f"{b.url}/tasks/{task_id}").json()
        if body.get("status") == "running" and body.get("progress"):
            seen.append(body["progress"]["fraction"])
        return len(set(seen)) >= 3  # three different figures while it ran

    wait_for(progressing_on_b, 10, "B to see the task's progress move while it runs")
    assert seen == sorted(seen) and seen[-1] < 1.0
    running = httpx.get(f"{b.url}/tasks/{task_id}/logs").json()
    assert running["status"] == "running" and running["logs"][0]["message"] == "step 1"

    def finished_on_b() -> bool:
        return httpx.get(f"{b.url}/tasks/{task_id}").json()["status"] == "success"

    wait_for(finished_on_b, 15, "the task to finish")
    done = httpx.get(f"{b.url}/tasks/{task_id}").json()
    assert done["progress"] == {"fraction": 1.0, "message": "step 20 of 20"}
    assert [line["fields"]["step"] for line in done["logs"]] == list(range(1, 21))
    assert done["tags"] == {"tenant": "acme"}
    listed = httpx.get(f"{b.url}/tasks", params={"tag": "tenant:acme"}).json()["items"]
    assert [item["task_id"] for item in listed] == [task_id]
    listed = httpx.get(f"{b.url}/tasks", params={"tag": "tenant:bolt"}).json()["items"]
    assert [item["task_id"] for item in listed] == [other]
    assert httpx.get(f"{b.url}/tasks", params={"tag": "tenant"}).status_code == 422
