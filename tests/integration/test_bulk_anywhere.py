"""Bulk actions across instances: two real server processes on one shared backend (each kind).

Tasks fail on instance A; a bulk retry is asked of B and of A at the same moment, twice each:
every task runs again exactly once (the retries' idempotency keys are claimed in the backend),
and the answers add up. A purge on B then removes the history from both instances' listings,
and both list every one of these actions in their audit trail.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.integration.history import list_all, wait_for

APP = "tests.integration.apps.basic:app"
TASKS = 12


def test_a_bulk_retry_from_two_instances_runs_each_failed_task_once(
    run_server, shared_backend, tmp_path: Path
):
    completions = tmp_path / "completions.log"
    completions.touch()
    env = {**shared_backend.env, "TEST_COMPLETIONS": str(completions)}
    first, second = run_server(APP, env=env), run_server(APP, env=env)

    ids = [
        httpx.post(f"{first.url}/fails-once", params={"token": f"bulk{n}"}).json()["task_id"]
        for n in range(TASKS)
    ]
    wait_for(
        lambda: len(list_all(second.url, status="failed", func_name="fails_once")) == TASKS,
        20,
        "every task failed, as seen from the other instance",
    )
    dry = httpx.post(f"{second.url}/tasks/bulk/retry", json={"dry_run": True}, timeout=30)
    assert dry.json() == {"dry_run": True, "matched": TASKS}

    def bulk_retry(url: str) -> dict:
        body = {"func_name": "fails_once", "status": "failed"}
        response = httpx.post(f"{url}/tasks/bulk/retry", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(bulk_retry, [second.url, first.url, second.url, first.url]))
    assert sum(answer["retried"] for answer in answers) == TASKS, answers
    retried_of = Counter(r["retry_of"] for answer in answers for r in answer["retries"])
    assert set(retried_of) == set(ids) and set(retried_of.values()) == {1}

    def all_done() -> bool:
        lines = completions.read_text().splitlines()
        return len(lines) >= TASKS

    wait_for(all_done, 30, "every retry ran")
    wait_for(
        lambda: len(list_all(first.url, status="success", func_name="fails_once")) == TASKS,
        20,
        "every retry succeeded, as seen from the first instance",
    )
    lines = completions.read_text().splitlines()
    tokens = Counter(line.split(" ", 1)[0] for line in lines)
    assert tokens == {f"bulk{n}": 1 for n in range(TASKS)}, lines  # each exactly once

    # Asked again anywhere: nothing runs a second time.
    again = bulk_retry(first.url)
    assert (again["retried"], again["already_retried"]) == (0, TASKS)

    # A purge on B removes the failed originals from both instances' listings.
    body = {"status": "failed", "confirm": True}
    purged = httpx.post(f"{second.url}/tasks/bulk/purge", json=body, timeout=60).json()
    assert purged["purged"] == TASKS, purged
    for url in (first.url, second.url):
        assert list_all(url, status="failed") == []
        assert len(list_all(url, status="success", func_name="fails_once")) == TASKS

    # The audit trail is shared: each instance lists the actions of both.
    for url in (first.url, second.url):
        items = httpx.get(f"{url}/tasks/audit", params={"limit": 100}).json()["items"]
        actions = [item["action"] for item in items]
        assert actions == ["purge"] + ["bulk retry"] * 5, actions
        instances = {item["instance_id"] for item in items}
        assert len(instances) == 2, instances
        assert all(item["client"] == "127.0.0.1" for item in items)
