"""Retry from any instance: two real server processes on one backend (both kinds).

A task fails on one instance; the retry is asked of the other, which runs it with exactly the
stored arguments. Arguments that cannot be stored exactly are refused elsewhere, with a reason,
and the API says the task is not retryable (so the dashboard shows no Retry button).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.history import wait_for

APP = "tests.integration.apps.basic:app"


def status(url: str, task_id: str) -> str | None:
    response = httpx.get(f"{url}/tasks/{task_id}", timeout=10)
    return response.json()["status"] if response.status_code == 200 else None


def test_a_task_that_failed_on_one_instance_is_retried_by_another(
    run_server, shared_backend, tmp_path: Path
):
    completions = tmp_path / "completions.log"
    completions.touch()
    env = {**shared_backend.env, "TEST_COMPLETIONS": str(completions)}
    first, second = run_server(APP, env=env), run_server(APP, env=env)

    exact = httpx.post(f"{first.url}/fails-once", params={"token": "exact"}).json()["task_id"]
    decimal = httpx.post(
        f"{first.url}/fails-once", params={"token": "money", "decimal": True}
    ).json()["task_id"]
    for task_id in (exact, decimal):
        wait_for(lambda t=task_id: status(second.url, t) == "failed", 15, f"{task_id} failed")

    shown = httpx.get(f"{second.url}/tasks/{exact}").json()
    assert shown["rerunnable"] is True and shown["retryable"] is True
    retried = httpx.post(f"{second.url}/tasks/{exact}/retry")
    assert retried.status_code == 202, retried.text
    again = httpx.post(f"{first.url}/tasks/{exact}/retry")  # a double click, another instance
    assert again.status_code == 202 and again.json()["task_id"] == retried.json()["task_id"]
    retry_id = retried.json()["task_id"]
    wait_for(lambda: status(first.url, retry_id) == "success", 15, "the retry succeeded")
    lines = completions.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exact int 10 ")  # exactly its arguments, once

    # A Decimal cannot be stored exactly: not retryable anywhere but where it is still held.
    assert httpx.get(f"{second.url}/tasks/{decimal}").json()["retryable"] is False
    refused = httpx.post(f"{second.url}/tasks/{decimal}/retry")
    assert refused.status_code == 409
    assert "not stored exactly" in refused.json()["detail"]
